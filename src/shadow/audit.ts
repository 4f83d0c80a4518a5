/**
 * `kvm_mmu_audit`: a consistency check of the whole shadow-MMU state, in the spirit of KVM's old
 * `arch/x86/kvm/mmu_audit.c` (removed in v5.15), run between guest steps (no fault, zap or sync
 * in progress, every `invalid_list` committed; pending vCPU requests are fine). It checks the
 * internal invariants I-6 to I-13 of `kvm-shadow-mmu.md` §3 plus structural sanity and returns
 * every violation, naming the shadow page (id, gfn, role), index and SPTE value. Cost: one pass
 * over the 512 entries of every shadow page, the rmaps and the hardware TLBs (about 1 ms for a
 * dozen pages, 50 ms for 300 pages holding 19k leaves).
 *
 * Checked (the `invariant` tag of a violation):
 *
 * - **S-1 page lists**: `spOfPfn` maps each table's pfn to its page, whose `spt` is that host
 *   page; every page on `active_mmu_pages` is valid, known to `spOfPfn` and listed once; every
 *   hashed page is known to `spOfPfn` and is either active or a zapped root still held by a vCPU.
 * - **S-2 links**: every present non-leaf SPTE equals `make_nonleaf_spte(child)` for a live,
 *   valid shadow page whose `parent_ptes` holds the sptep; every `parent_ptes` entry is such a
 *   link; a zapped page has no parents.
 * - **S-3 SPTE encoding**: a non-present SPTE is `SHADOW_NONPRESENT_VALUE` or an MMIO SPTE;
 *   MMIO SPTEs sit only in level-1 pages (`kvm_mmu_hugepage_adjust` never maps MMIO huge); a
 *   present leaf has P, PS iff its level is above 1, and no host-reserved address bit; a zapped
 *   page holds nothing.
 * - **S-4 roots**: every root a vCPU references (current root, `pae_root` entries, `prev_roots`)
 *   is a shadow page, the dummy root or the vCPU's own `pae_root`, and each page's `root_count`
 *   equals the number of such references.
 * - **I-6a**: a gfn with a valid indirect page above level 1 is write-tracked (the count equals
 *   the number of such pages: the model has no other page-track user), and no 4K leaf SPTE
 *   mapping it has W or MMU-writable; a write-tracked gfn has such a page.
 * - **I-6b**: for a gfn shadowed only by level-1 pages, a 4K leaf SPTE with W or MMU-writable
 *   for it implies every one of those pages is unsync.
 * - **I-6c**: `disallow_lpage` is positive for the 2M and 1G frames of every shadowed gfn, and a
 *   huge SPTE covering a shadowed gfn has neither W nor MMU-writable. A *read-only* huge SPTE may
 *   cover it: `account_shadowed` write-protects huge SPTEs through the rmaps but does not zap
 *   them (the next write fault replaces them by a 4K table), so the doc's "no huge spte covers
 *   G" is stronger than what KVM maintains.
 * - **I-7a**: an unsync page is a valid indirect level-1 page whose gfn has no upper-level page;
 *   a zapped page is not unsync.
 * - **I-7b**: `unsync_children` equals the number of bits set in `unsync_child_bitmap`, and for
 *   every page that is unsync or has unsync children the bit of each parent SPTE in
 *   `parent_ptes` is set (stale set bits are allowed, missing ones are not).
 * - **I-8** (a leaf maps what it should): every present leaf SPTE maps the host pages backing
 *   `kvm_mmu_page_get_gfn(sp, i)` (every backed page of a huge leaf's frame, at its offset) and
 *   grants no right beyond `kvm_mmu_page_get_access(sp, i)`. In a *synced* indirect page the
 *   leaf also agrees with the current gpte, read from guest memory at the page's gfn and index
 *   (4-byte gptes: with the quadrant; a 4 MiB gpte backs two level-2 entries): present, A set
 *   (unless the table is in a read-only memslot, where the walker cannot set A), a huge SPTE
 *   only for a huge gpte, the same gfn (for a 4 MiB gpte the 2 MiB half the index selects,
 *   PSE-36 bits included), and rights within `protect_clean_gpte(role.access &
 *   gpte_access(gpte))` (D may be 0 under W in a read-only memslot), or the CR0.WP=0 form
 *   `FNAME(page_fault)` builds (W, no U, no X if `smep_andnot_wp`; only when `!role.cr0_wp`,
 *   the guest access lacked W and the gpte is dirty). An MMIO SPTE in a synced page matches its
 *   gpte's gfn and W/U. W is not judged against write tracking here: that is I-6.
 * - **I-9**: each valid page's `roleWord` is `roleWord(role)`, it is hashed in its gfn's bucket,
 *   and no two valid pages share gfn and role. Each link's child has the role
 *   `kvm_mmu_child_role(parent, index, direct, access)` (the inherited fields always); below a
 *   direct parent it is direct with the parent's access and gfn `kvm_mmu_page_get_gfn(parent,
 *   i)`; below an indirect parent the current gpte is present with A set (as for I-8) and is
 *   either a table pointer (child indirect, gfn the table's, access `role.access &
 *   gpte_access`) or a huge page (child direct, gfn the frame the entry covers, access the
 *   walker's: clean-protected, full, or the CR0.WP=0 form). Checking every link against its
 *   gpte is the doc's "role.access equals the AND along every parent path".
 * - **I-8m, I-9m**: the I-8/I-9 gpte checks whose verdict depends on guest mode bits the role
 *   does not record: reserved bits 63:52 (EFER.NX, PAE vs 4-level), CR4.PSE for 4 MiB pages, and, for
 *   4-byte gptes, whether CR4.PSE makes a PDE huge. KVM itself keeps such SPTEs after the mode
 *   changes (doc §4.1 and §4.2: the model reproduces those candidate divergences), so a harness
 *   that wants the model's own bugs only should ignore these tags. The mode is taken from the
 *   first vCPU whose `root_role` equals the page's role outside `sync_role_ign` and whose paging
 *   depth can hold the page's level; with none, reserved bits are not checked and 4-byte-gpte
 *   level-2 entries are skipped.
 * - **I-10**: every present leaf SPTE is in the rmap of `kvm_mmu_page_get_gfn(sp, i)` at the
 *   page's level, in that gfn's memslot (a huge SPTE's gfn aligned to its size); every rmap
 *   entry is a present leaf SPTE of a valid page of that level whose gfn lies in that rmap head.
 * - **I-11**: on a present leaf, W ⇒ MMU-writable ⇒ host-writable, and host-writable only in a
 *   writable memslot.
 * - **I-12**: every hardware TLB entry maps a host pfn some present leaf SPTE maps (a 4K pfn
 *   inside a huge SPTE counts), and a writable entry has a writable such SPTE; with
 *   {@link AuditOptions.strictTlbRights} also U for a user and no NX for an executable entry.
 *   A vCPU that will flush before it next runs guest code is exempt: a pending
 *   `KVM_REQ_TLB_FLUSH*`, no current root, or a pending `KVM_REQ_MMU_FREE_OBSOLETE_ROOTS` that
 *   frees the current root (`kvm_mmu_load` flushes). Zapping a root drops the root's own
 *   leaves without a remote flush; KVM relies on exactly that reload.
 * - **I-13**: in a memslot with dirty logging on, every writable 4K leaf SPTE's gfn is in
 *   `dirty_bitmap`, and no huge leaf is writable.
 *
 * Not checked, and why:
 *
 * - Event-level properties a snapshot cannot see: "after `kvm_mmu_sync_roots` no unsync page is
 *   reachable" (I-7; {@link unsync_reachable_from_root} is for the caller to assert right after a
 *   sync); "MMU-writable is never set by the lockless path" and "a lockless W 0→1 happens only
 *   on MMU-writable SPTEs" (I-11); "the flush happens before the next guest step" (I-12 checks
 *   its consequence on the TLB contents); "a harvested gfn appears in the next GET_DIRTY_LOG"
 *   (I-13 checks that a writable SPTE's gfn is already logged). Injected bugs of that kind
 *   (`invlpg_no_sync`, `cr3_flush_skips_sync`) leave no inconsistent snapshot.
 * - The gpte checks for *unsync* pages: their gptes may differ until the guest invalidates them
 *   (I-5), which needs write and invalidation history. Their leaves still get the first
 *   sentence of I-8 and I-10/I-11/I-13.
 * - U and X of TLB entries by default: `mmu_spte_update` flushes only when MMU-writable is
 *   cleared, so KVM narrows U/X without a flush. The CR0.WP=0 fix-up turns a U=1 read-only SPTE
 *   into U=0 W=1 while another vCPU keeps its (architecturally right) user entry, and
 *   `sync_spte` re-derives U/X from a gpte the guest changed and has not invalidated everywhere.
 * - Exact `disallow_lpage` counts (memslot misalignment adds to them), write-flooding counters,
 *   `indirect_shadow_pages`, MMIO generations, and the guest-visible invariants I-1..I-5, I-14,
 *   I-15 (the oracle's business).
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import { INVALID_PAGE, type KvmMmu, type KvmVcpu } from "./kvm_vcpu.ts";
import { gfn_to_index, KVM_HPAGE_GFN_SHIFT, type KvmMemorySlot } from "./kvm_memslots.ts";
import {
  kvm_page_table_hashfn,
  type KvmMmuPage,
  SPTE_ENT_PER_PAGE,
  spte_index,
  sptep_pfn,
} from "./mmu_page.ts";
import {
  ACC_ALL,
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  kvm_mmu_child_role,
  type KvmCpuRole,
  type KvmMmuPageRole,
  PT32E_ROOT_LEVEL,
  roleWord,
  roleWordIgnoringForSync,
} from "./mmu_role.ts";
import { is_obsolete_sp, kvm_mmu_page_get_access, kvm_mmu_page_get_gfn } from "./mmu.ts";
import { is_dummy_root } from "./mmu_roots.ts";
import {
  get_mmio_spte_access,
  get_mmio_spte_gfn,
  HOST_RSVD_ADDR_BITS,
  is_large_pte,
  is_last_spte,
  is_mmio_spte,
  is_shadow_present_pte,
  make_nonleaf_spte,
  PT_PAGE_SIZE_MASK,
  PT_PRESENT_MASK,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
  shadow_host_writable_mask,
  shadow_mmu_writable_mask,
  SHADOW_NONPRESENT_VALUE,
  shadow_nx_mask,
  spte_access,
  SPTE_BASE_ADDR_MASK,
  SPTE_MMU_PRESENT_MASK,
  spte_to_pfn,
} from "./spte.ts";
import {
  FNAME_is_rsvd_bits_set,
  gpte_access,
  gpte_to_gfn,
  gpte_to_gfn_lvl,
  is_last_gpte,
  is_present_gpte,
  paging32,
  paging64,
  protect_clean_gpte,
  pse36_gfn_delta,
  PT_GUEST_ACCESSED_MASK,
  PT_GUEST_DIRTY_MASK,
  type PttypeDesc,
} from "./paging_tmpl.ts";
import { get_rsvd_bits, is_cpuid_PSE36, type RsvdBitsValidate } from "./guest_metadata.ts";

/** One broken invariant. */
export interface AuditViolation {
  /**
   * `"S-1"`..`"S-4"`, `"I-6a"`..`"I-6c"`, `"I-7a"`, `"I-7b"`, `"I-8"`..`"I-13"`, and `"I-8m"`,
   * `"I-9m"` for verdicts that depend on guest mode bits outside the role (see the module).
   */
  readonly invariant: string;
  /** What is wrong, naming the shadow page (id, gfn, role), index and SPTE value. */
  readonly detail: string;
}

/** Switches for {@link kvm_mmu_audit}. */
export interface AuditOptions {
  /**
   * Also require a user (executable) hardware TLB entry to be backed by a U (non-NX) leaf SPTE
   * for its pfn. Off by default: KVM narrows U/X without a flush (see the module comment), so
   * this holds only for programs without CR0.WP=0 writes, unsync gpte edits and other vCPUs.
   */
  readonly strictTlbRights?: boolean;
}

/** SPTE bits as numbers on the two 32-bit halves (see spte.ts for the layout). */
const P_LO = Number(PT_PRESENT_MASK);
const W_LO = Number(PT_WRITABLE_MASK);
const U_LO = Number(PT_USER_MASK);
const PS_LO = Number(PT_PAGE_SIZE_MASK);
const HOST_W_LO = Number(shadow_host_writable_mask);
const MMU_W_LO = Number(shadow_mmu_writable_mask);
const MMU_PRESENT_LO = Number(SPTE_MMU_PRESENT_MASK);
const NX_HI = Number(shadow_nx_mask >> 32n);
const ADDR_RSVD_HI = Number(HOST_RSVD_ADDR_BITS >> 32n);
const NONPRESENT_LO = Number(SHADOW_NONPRESENT_VALUE & 0xffff_ffffn);
const NONPRESENT_HI = Number(SHADOW_NONPRESENT_VALUE >> 32n);
/** Index of the low 32-bit half of a u64 in a `Uint32Array` view (host byte order). */
const LO = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0 : 1;
const HI = 1 - LO;

const W = ACC_WRITE_MASK;
const U = ACC_USER_MASK;
const X = ACC_EXEC_MASK;

/** A present leaf SPTE found by the scan. */
interface Leaf {
  readonly sp: KvmMmuPage;
  readonly index: number;
  readonly sptep: number;
  readonly spte: bigint;
  /** Bits 31:0 of the SPTE (the flags the checks test). */
  readonly lo: number;
  readonly level: number;
  /** `kvm_mmu_page_get_gfn(sp, index)`: the first gfn it maps. */
  readonly gfn: number;
  /** Number of 4K frames it maps. */
  readonly span: number;
  readonly pfn: number;
  /** `spte_access`. */
  readonly rights: number;
}

/** A present non-leaf SPTE and the page it points at. */
interface Link {
  readonly sp: KvmMmuPage;
  readonly index: number;
  readonly spte: bigint;
  readonly child: KvmMmuPage;
}

/** The guest mode a page's gptes are read in. */
interface GuestContext {
  readonly cpu_role: KvmCpuRole;
  readonly rsvd: { guest_rsvd_check: RsvdBitsValidate };
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

function hex64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, "0")}`;
}

function rightsName(a: number): string {
  return `${a & U ? "u" : "-"}${a & W ? "w" : "-"}${a & X ? "x" : "-"}`;
}

function roleName(r: KvmMmuPageRole): string {
  return `L${r.level} q${r.quadrant} ${r.direct ? "direct" : "indirect"} acc=${
    rightsName(r.access)
  }${r.has_4_byte_gpte ? " 4-byte" : ""}${r.cr0_wp ? "" : " !wp"}${
    r.smep_andnot_wp ? " smep&!wp" : ""
  }${r.invalid ? " invalid" : ""}`;
}

/** `sp#3 gfn=0x103 L1 q0 indirect acc=uwx unsync`. */
function spName(sp: KvmMmuPage): string {
  return `sp#${sp.id} gfn=${hex(sp.gfn)} ${roleName(sp.role)}${sp.unsync ? " unsync" : ""}`;
}

/** `sp#3 gfn=0x103 L1 q0 indirect acc=uwx [16] spte=0x...`. */
function entryName(sp: KvmMmuPage, index: number, spte: bigint): string {
  return `${spName(sp)} [${index}] spte=${hex64(spte)}`;
}

function leafName(l: Leaf): string {
  return entryName(l.sp, l.index, l.spte);
}

function frames(level: number): number {
  return 2 ** KVM_HPAGE_GFN_SHIFT(level);
}

/** The gpa of the gpte entry `index` of `sp` was built from (4-byte gptes: with the quadrant). */
function gpte_gpa(sp: KvmMmuPage, index: number): number {
  if (!sp.role.has_4_byte_gpte) return sp.gfn * 4096 + index * 8;
  // A 4-byte-gpte PD (1024 × 4 MiB) is shadowed by four level-2 pages (256 gptes each, two
  // shadow entries per gpte); a PT (1024 × 4K) by two level-1 pages (512 gptes each).
  const gpte = sp.role.level === 1
    ? sp.role.quadrant * 512 + index
    : sp.role.quadrant * 256 + (index >> 1);
  return sp.gfn * 4096 + gpte * 4;
}

/**
 * The first gfn entry `index` of `sp` maps when its gpte is a leaf: the 4K frame, the 2M/1G
 * frame, or for a 4 MiB 32-bit gpte (PSE-36 bits included) the 2 MiB half the index selects.
 */
function leaf_gfn(desc: PttypeDesc, index: number, gpte: bigint, level: number): number {
  if (level === 1) return gpte_to_gfn(desc, gpte);
  let gfn = gpte_to_gfn_lvl(desc, gpte, level);
  if (desc.PTTYPE === 32) {
    if (is_cpuid_PSE36()) gfn += pse36_gfn_delta(gpte);
    gfn += (index & 1) * frames(level);
  }
  return gfn;
}

/** Effective access of the CR0.WP=0 fix-up in `FNAME(page_fault)` applied to `access`. */
function wp0_access(role: KvmMmuPageRole, access: number): number {
  return ((access | W) & ~U) & (role.smep_andnot_wp ? ~X : ACC_ALL);
}

function popcount(bitmap: Uint8Array): number {
  if (bitmap.indexOf(1) < 0) return 0;
  let n = 0;
  for (const b of bitmap) if (b) n++;
  return n;
}

/** The vCPU mode to read `sp`'s gptes in, or null (see the module comment). */
function guest_context(kvm: Kvm, sp: KvmMmuPage): GuestContext | null {
  const word = roleWordIgnoringForSync(sp.role);
  for (const vcpu of kvm.vcpus) {
    const mmu = vcpu.mmu as KvmMmu | undefined;
    if (!mmu || mmu.root_role.direct) continue;
    const level = mmu.cpu_role.base.level;
    const top = level === PT32E_ROOT_LEVEL || mmu.cpu_role.base.has_4_byte_gpte ? 2 : level;
    if (sp.role.level > top) continue;
    if (roleWordIgnoringForSync(mmu.root_role) !== word) continue;
    return { cpu_role: mmu.cpu_role, rsvd: mmu };
  }
  return null;
}

/**
 * True when `vcpu` will flush its whole TLB before it next runs guest code
 * (`vcpu_enter_guest`): a pending `KVM_REQ_TLB_FLUSH*`, no current root (`kvm_mmu_reload` →
 * `kvm_mmu_load` flushes), or a pending `KVM_REQ_MMU_FREE_OBSOLETE_ROOTS` that will free the
 * current root (obsolete, or not backed by a shadow page: `pae_root`, the dummy root). Zapping a
 * root drops its own leaves without a remote flush; KVM relies on exactly this reload.
 */
function flush_pending(kvm: Kvm, vcpu: KvmVcpu): boolean {
  const mmu = vcpu.mmu as KvmMmu | undefined;
  if (!mmu) return false;
  const r = vcpu.requests;
  if (
    r.has("KVM_REQ_TLB_FLUSH") || r.has("KVM_REQ_TLB_FLUSH_CURRENT") ||
    r.has("KVM_REQ_TLB_FLUSH_GUEST") || mmu.root.hpa === INVALID_PAGE
  ) return true;
  if (!r.has("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS")) return false;
  const root = kvm.spOfPfn.get(Math.floor(mmu.root.hpa / 4096));
  return !root || is_obsolete_sp(kvm, root);
}

/** The state of one audit run. */
class Audit {
  readonly kvm: Kvm;
  readonly out: AuditViolation[] = [];
  /** Every page known to `spOfPfn`, by id. */
  readonly pages: KvmMmuPage[];
  /** The valid (not obsolete) ones. */
  readonly valid: KvmMmuPage[];
  readonly leaves: Leaf[] = [];
  readonly links: Link[] = [];
  /** MMIO SPTEs of valid level-1 pages. */
  readonly mmios: { sp: KvmMmuPage; index: number; spte: bigint }[] = [];
  /** 4K leaves by gfn. */
  readonly leaf4kByGfn = new Map<number, Leaf[]>();
  /** Valid indirect pages by gfn. */
  readonly shadowers = new Map<number, KvmMmuPage[]>();

  constructor(kvm: Kvm) {
    this.kvm = kvm;
    this.pages = [...new Set(kvm.spOfPfn.values())].sort((a, b) => a.id - b.id);
    this.valid = this.pages.filter((sp) => !is_obsolete_sp(kvm, sp));
    for (const sp of this.valid) {
      if (!sp.has_gptes) continue;
      const list = this.shadowers.get(sp.gfn);
      if (list) list.push(sp);
      else this.shadowers.set(sp.gfn, [sp]);
    }
  }

  report(invariant: string, detail: string): void {
    this.out.push({ invariant, detail });
  }

  /** S-1 and the hash part of I-9. */
  pageLists(): void {
    const kvm = this.kvm;
    for (const [pfn, sp] of kvm.spOfPfn) {
      if (sp.pfn !== pfn) {
        this.report("S-1", `spOfPfn[${hex(pfn)}] is ${spName(sp)} at ${hex(sp.pfn)}`);
      }
      if (!kvm.host.has(sp.pfn) || kvm.host.page(sp.pfn) !== sp.spt) {
        this.report("S-1", `${spName(sp)}: spt is not host page ${hex(sp.pfn)}`);
      }
    }
    const active = new Set<KvmMmuPage>();
    for (const sp of kvm.active_mmu_pages) {
      if (active.has(sp)) this.report("S-1", `${spName(sp)} is on active_mmu_pages twice`);
      active.add(sp);
      if (kvm.spOfPfn.get(sp.pfn) !== sp) {
        this.report("S-1", `${spName(sp)} is on active_mmu_pages but not in spOfPfn (freed?)`);
      }
      if (is_obsolete_sp(kvm, sp)) {
        this.report("S-1", `${spName(sp)} is zapped or obsolete but still on active_mmu_pages`);
      }
    }
    const hashed = new Set<KvmMmuPage>();
    for (const [bucket, list] of kvm.mmu_page_hash) {
      for (const sp of list) {
        hashed.add(sp);
        if (kvm_page_table_hashfn(sp.gfn) !== bucket) {
          this.report("I-9", `${spName(sp)} is hashed in bucket ${bucket}, not its gfn's`);
        }
        if (kvm.spOfPfn.get(sp.pfn) !== sp) {
          this.report("S-1", `${spName(sp)} is in mmu_page_hash but not in spOfPfn (freed?)`);
        }
        if (!active.has(sp) && !(sp.role.invalid && sp.root_count > 0)) {
          this.report(
            "S-1",
            `${spName(sp)} (root_count ${sp.root_count}) is hashed but neither on ` +
              `active_mmu_pages nor a zapped root still in use`,
          );
        }
      }
    }
    const identity = new Map<string, KvmMmuPage>();
    for (const sp of this.pages) {
      const bucket = kvm.mmu_page_hash.get(kvm_page_table_hashfn(sp.gfn));
      if (!bucket?.includes(sp)) {
        this.report("I-9", `${spName(sp)} is not in mmu_page_hash under its gfn`);
      }
      if (!active.has(sp) && !hashed.has(sp)) {
        this.report("S-1", `${spName(sp)} is in spOfPfn but neither active nor hashed`);
      }
      if (is_obsolete_sp(kvm, sp)) continue;
      if (roleWord(sp.role) !== sp.roleWord) {
        this.report(
          "I-9",
          `${spName(sp)}: roleWord ${hex(sp.roleWord)} != role.word ${hex(roleWord(sp.role))}`,
        );
      }
      const key = `${sp.gfn}:${sp.roleWord}`;
      const other = identity.get(key);
      if (other) {
        this.report("I-9", `${spName(sp)} and ${spName(other)} have the same gfn and role`);
      } else identity.set(key, sp);
    }
  }

  /** One pass over every SPTE: S-2 (forward), S-3, I-8 (recorded gfn/access), I-10, I-11, I-13. */
  scan(): void {
    const kvm = this.kvm;
    for (const sp of this.pages) {
      // The table as 32-bit halves: no BigInt for the common empty entry.
      const words = new Uint32Array(sp.spt.buffer, sp.spt.byteOffset, 2 * SPTE_ENT_PER_PAGE);
      const obsolete = is_obsolete_sp(kvm, sp);
      const level = sp.role.level;
      for (let i = 0; i < SPTE_ENT_PER_PAGE; i++) {
        const lo = words[2 * i + LO]!, hi = words[2 * i + HI]!;
        if (lo === NONPRESENT_LO && hi === NONPRESENT_HI) continue;
        const spte = sp.spt[i]!;
        if (obsolete) {
          this.report(
            "S-3",
            `${entryName(sp, i, spte)}: a zapped or obsolete page still holds an SPTE`,
          );
        } else if ((lo & MMU_PRESENT_LO) === 0) {
          if (!is_mmio_spte(spte)) {
            this.report("S-3", `${entryName(sp, i, spte)}: neither non-present value nor MMIO`);
          } else if (level !== 1) {
            this.report("S-3", `${entryName(sp, i, spte)}: MMIO SPTE above level 1`);
          } else {
            this.mmios.push({ sp, index: i, spte });
          }
        } else if (level === 1 || (lo & PS_LO) !== 0) {
          this.leaf(sp, i, spte, lo, hi);
        } else {
          this.link(sp, i, spte);
        }
      }
    }
  }

  link(sp: KvmMmuPage, index: number, spte: bigint): void {
    const sptep = sp.sptep(index);
    const child = this.kvm.spOfPfn.get(spte_to_pfn(spte));
    const at = (): string => entryName(sp, index, spte);
    if (!child) {
      this.report("S-2", `${at()}: non-leaf SPTE points at no shadow page`);
      return;
    }
    if (spte !== make_nonleaf_spte(child.pfn)) {
      this.report("S-2", `${at()}: not make_nonleaf_spte(${spName(child)})`);
    }
    if (is_obsolete_sp(this.kvm, child)) {
      this.report("S-2", `${at()}: links the zapped page ${spName(child)}`);
      return;
    }
    if (!child.parent_ptes.has(sptep)) {
      this.report("S-2", `${at()}: missing from parent_ptes of ${spName(child)}`);
    }
    this.links.push({ sp, index, spte, child });
  }

  leaf(sp: KvmMmuPage, index: number, spte: bigint, lo: number, hi: number): void {
    const kvm = this.kvm;
    const level = sp.role.level;
    const sptep = sp.sptep(index);
    const gfn = kvm_mmu_page_get_gfn(sp, index);
    const span = frames(level);
    const pfn = (hi & 0xf_ffff) * 2 ** 20 + (lo >>> 12);
    const rights = (lo & W_LO ? W : 0) | (lo & U_LO ? U : 0) | (hi & NX_HI ? 0 : X);
    const l: Leaf = { sp, index, sptep, spte, lo, level, gfn, span, pfn, rights };
    const at = (): string => leafName(l);
    this.leaves.push(l);
    if (level === 1) {
      const list = this.leaf4kByGfn.get(gfn);
      if (list) list.push(l);
      else this.leaf4kByGfn.set(gfn, [l]);
    }

    if ((lo & P_LO) === 0) this.report("S-3", `${at()}: present leaf without P`);
    if (level > 1 && (lo & PS_LO) === 0) {
      this.report("S-3", `${at()}: level-${level} leaf without PS`);
    }
    if (level === 1 && (lo & PS_LO) !== 0) this.report("S-3", `${at()}: PS set in a 4K leaf`);
    if ((hi & ADDR_RSVD_HI) !== 0) this.report("S-3", `${at()}: host-reserved address bits set`);

    const slot = kvm.gfn_to_memslot(gfn);
    // I-11
    if ((lo & W_LO) !== 0 && (lo & MMU_W_LO) === 0) {
      this.report("I-11", `${at()}: W without MMU-writable`);
    }
    if ((lo & MMU_W_LO) !== 0 && (lo & HOST_W_LO) === 0) {
      this.report("I-11", `${at()}: MMU-writable without host-writable`);
    }
    if ((lo & HOST_W_LO) !== 0 && slot?.readOnly) {
      this.report(
        "I-11",
        `${at()}: host-writable SPTE for gfn ${hex(gfn)} of read-only slot ${slot.id}`,
      );
    }
    // I-10 (forward)
    if (gfn % span !== 0) this.report("I-10", `${at()}: huge leaf for unaligned gfn ${hex(gfn)}`);
    if (!slot) {
      this.report("I-10", `${at()}: gfn ${hex(gfn)} is in no memslot, so in no rmap`);
    } else {
      const head = slot.rmap[level - 1]?.get(gfn_to_index(gfn, slot.base_gfn, level));
      if (!head?.has(sptep)) {
        this.report("I-10", `${at()}: missing from the level-${level} rmap of gfn ${hex(gfn)}`);
      }
    }
    // I-8 (the frame and the recorded access)
    this.backing(l, at);
    const recorded = kvm_mmu_page_get_access(sp, index);
    if ((rights & ~recorded) !== 0) {
      this.report(
        "I-8",
        `${at()}: grants ${rightsName(rights)} beyond the recorded access ${rightsName(recorded)}`,
      );
    }
    // I-13
    if ((lo & W_LO) !== 0 && slot?.dirty_bitmap) {
      if (level > 1) {
        this.report("I-13", `${at()}: writable huge SPTE in dirty-logged slot ${slot.id}`);
      } else if (!slot.dirty_bitmap.has(gfn)) {
        this.report(
          "I-13",
          `${at()}: writable, but gfn ${hex(gfn)} is not in slot ${slot.id}'s dirty bitmap`,
        );
      }
    }
  }

  /**
   * I-8: the leaf maps the host pages backing its gfns. Only pages the host has backed are
   * compared (`pfnOf` would allocate), so a huge leaf is checked page by page: every backed
   * page of its frame must sit at the same offset from the SPTE's pfn (a page migrated by an
   * mmu-notifier invalidation must have zapped the huge SPTE).
   */
  backing(l: Leaf, at: () => string): void {
    const ram = this.kvm.ram;
    let backed = false;
    for (let k = 0; k < l.span; k++) {
      const gfn = l.gfn + k;
      if (!ram.isBacked(gfn)) continue;
      backed = true;
      const pfn = ram.pfnOf(gfn);
      if (pfn !== l.pfn + k) {
        this.report(
          "I-8",
          `${at()}: maps gfn ${hex(gfn)} to host pfn ${hex(l.pfn + k)}, but it is backed by ${
            hex(pfn)
          }`,
        );
        return;
      }
    }
    if (!backed) {
      this.report("I-8", `${at()}: no page of gfn ${hex(l.gfn)} (+${l.span}) has a host page`);
    }
  }

  /** S-2 (reverse) and I-7. */
  parents(): void {
    const kvm = this.kvm;
    for (const sp of this.pages) {
      if (is_obsolete_sp(kvm, sp)) {
        if (sp.parent_ptes.size > 0) {
          this.report(
            "S-2",
            `${spName(sp)}: zapped, but still has ${sp.parent_ptes.size} parent(s)`,
          );
        }
        if (sp.unsync) this.report("I-7a", `${spName(sp)}: zapped but unsync`);
        continue;
      }
      const count = popcount(sp.unsync_child_bitmap);
      if (count !== sp.unsync_children) {
        this.report(
          "I-7b",
          `${spName(sp)}: unsync_children ${sp.unsync_children}, bitmap has ${count}`,
        );
      }
      if (sp.unsync) {
        if (sp.role.level !== 1 || !sp.has_gptes) {
          this.report("I-7a", `${spName(sp)}: unsync, but not an indirect level-1 page`);
        }
        const upper = (this.shadowers.get(sp.gfn) ?? []).filter((p) => p.role.level > 1);
        if (upper.length > 0) {
          this.report("I-7a", `${spName(sp)}: unsync, but ${spName(upper[0]!)} shadows its gfn`);
        }
      }
      const needBit = sp.unsync || sp.unsync_children > 0;
      for (const sptep of sp.parent_ptes) {
        const parent = kvm.spOfPfn.get(sptep_pfn(sptep));
        const i = spte_index(sptep);
        if (!parent) {
          this.report(
            "S-2",
            `${spName(sp)}: parent_ptes entry ${hex(sptep)} lies in no shadow page`,
          );
          continue;
        }
        const spte = parent.spt[i]!;
        if (is_obsolete_sp(kvm, parent)) {
          this.report("S-2", `${spName(sp)}: parent entry ${entryName(parent, i, spte)} is zapped`);
          continue;
        }
        const linked = is_shadow_present_pte(spte) && !is_last_spte(spte, parent.role.level) &&
          spte_to_pfn(spte) === sp.pfn;
        if (!linked) {
          this.report(
            "S-2",
            `${spName(sp)}: parent entry ${entryName(parent, i, spte)} does not link it`,
          );
        } else if (needBit && !parent.unsync_child_bitmap[i]) {
          this.report(
            "I-7b",
            `${entryName(parent, i, spte)}: unsync_child_bitmap bit clear, but the child ` +
              `${spName(sp)} is unsync or has unsync children (${sp.unsync_children})`,
          );
        }
      }
    }
  }

  /** I-10 (reverse): every rmap entry is a present leaf of the right gfn and level. */
  rmaps(): void {
    const kvm = this.kvm;
    for (const slot of kvm.memslots.slots) {
      for (let level = 1; level <= slot.rmap.length; level++) {
        const span = frames(level);
        for (const [index, head] of slot.rmap[level - 1]!) {
          const frameGfn = (Math.floor(slot.base_gfn / span) + index) * span;
          const where = (): string => `rmap[slot ${slot.id}, L${level}, gfn ${hex(frameGfn)}]`;
          for (const sptep of head) {
            const sp = kvm.spOfPfn.get(sptep_pfn(sptep));
            if (!sp) {
              this.report("I-10", `${where()} holds ${hex(sptep)}, which lies in no shadow page`);
              continue;
            }
            const i = spte_index(sptep);
            const spte = sp.spt[i]!;
            const at = (): string => entryName(sp, i, spte);
            if (is_obsolete_sp(kvm, sp)) {
              this.report("I-10", `${where()} holds ${at()} of a zapped page`);
            } else if (!is_shadow_present_pte(spte) || !is_last_spte(spte, sp.role.level)) {
              this.report("I-10", `${where()} holds ${at()}, which is not a present leaf`);
            } else if (sp.role.level !== level) {
              this.report("I-10", `${where()} holds ${at()} of another level`);
            } else {
              const gfn = kvm_mmu_page_get_gfn(sp, i);
              if (
                kvm.gfn_to_memslot(gfn) !== slot ||
                gfn_to_index(gfn, slot.base_gfn, level) !== index
              ) {
                this.report("I-10", `${where()} holds ${at()}, whose gfn is ${hex(gfn)}`);
              }
            }
          }
        }
      }
    }
  }

  /** S-4: root references and `root_count`. */
  roots(): void {
    const kvm = this.kvm;
    const refs = new Map<KvmMmuPage, number>();
    for (const vcpu of kvm.vcpus) {
      const mmu = vcpu.mmu as KvmMmu | undefined;
      if (!mmu) continue;
      const paeRoot = mmu.pae_root * 4096;
      const ref = (hpa: number, what: string): void => {
        if (hpa === INVALID_PAGE || is_dummy_root(kvm, hpa)) return;
        const sp = kvm.spOfPfn.get(Math.floor(hpa / 4096));
        if (!sp || hpa % 4096 !== 0) {
          this.report("S-4", `vcpu ${vcpu.vcpu_id} ${what} ${hex(hpa)} is not a shadow page`);
          return;
        }
        refs.set(sp, (refs.get(sp) ?? 0) + 1);
      };
      if (mmu.root.hpa === paeRoot) {
        for (let i = 0; i < 4; i++) {
          const e = kvm.host.read64(paeRoot + i * 8);
          if ((e & PT_PRESENT_MASK) !== 0n) ref(Number(e & SPTE_BASE_ADDR_MASK), `pae_root[${i}]`);
        }
      } else {
        ref(mmu.root.hpa, "root");
      }
      mmu.prev_roots.forEach((prev, i) => {
        if (prev.hpa !== INVALID_PAGE && prev.hpa === paeRoot) {
          this.report("S-4", `vcpu ${vcpu.vcpu_id} prev_roots[${i}] is its pae_root`);
        } else ref(prev.hpa, `prev_roots[${i}]`);
      });
    }
    for (const sp of this.pages) {
      const n = refs.get(sp) ?? 0;
      if (sp.root_count !== n) {
        this.report(
          "S-4",
          `${spName(sp)}: root_count ${sp.root_count}, but ${n} vCPU reference(s)`,
        );
      }
    }
  }

  /** I-6. */
  shadowed(): void {
    const kvm = this.kvm;
    const huge = this.leaves.filter((l) => l.level > 1);
    const blocked = (l: Leaf): boolean => (l.lo & (W_LO | MMU_W_LO)) !== 0;
    for (const [gfn, sps] of this.shadowers) {
      const slot = kvm.gfn_to_memslot(gfn);
      if (!slot) continue; // account_shadowed does nothing without a memslot
      const upper = sps.filter((sp) => sp.role.level > 1);
      const leaves = this.leaf4kByGfn.get(gfn) ?? [];
      if (upper.length > 0) {
        const tracked = kvm.gfn_write_track.get(gfn) ?? 0;
        if (tracked !== upper.length) {
          this.report(
            "I-6a",
            `gfn ${hex(gfn)}: gfn_write_track ${tracked}, but ${upper.length} upper-level ` +
              `page(s) shadow it (${spName(upper[0]!)})`,
          );
        }
        for (const l of leaves.filter(blocked)) {
          this.report(
            "I-6a",
            `${leafName(l)}: W or MMU-writable, but ${spName(upper[0]!)} shadows gfn ${hex(gfn)}`,
          );
        }
      } else {
        const writable = leaves.filter(blocked);
        const synced = sps.filter((sp) => !sp.unsync);
        if (writable.length > 0 && synced.length > 0) {
          this.report(
            "I-6b",
            `${leafName(writable[0]!)}: W or MMU-writable, but ${spName(synced[0]!)} shadowing ` +
              `gfn ${hex(gfn)} is not unsync`,
          );
        }
      }
      for (let level = 2; level <= 3; level++) {
        if (slot.disallowLpage(gfn, level) <= 0) {
          this.report(
            "I-6c",
            `gfn ${hex(gfn)} is shadowed by ${spName(sps[0]!)}, but disallow_lpage of its ` +
              `level-${level} frame is 0`,
          );
        }
      }
      for (const l of huge) {
        if (gfn >= l.gfn && gfn < l.gfn + l.span && blocked(l)) {
          this.report(
            "I-6c",
            `${leafName(l)}: huge SPTE with W or MMU-writable covers gfn ${hex(gfn)}, ` +
              `shadowed by ${spName(sps[0]!)}`,
          );
        }
      }
    }
    for (const [gfn, count] of kvm.gfn_write_track) {
      if (count <= 0) continue;
      const upper = (this.shadowers.get(gfn) ?? []).filter((sp) => sp.role.level > 1);
      if (upper.length === 0 && kvm.gfn_to_memslot(gfn)) {
        this.report(
          "I-6a",
          `gfn ${hex(gfn)}: gfn_write_track ${count}, but no upper-level page shadows it`,
        );
      }
    }
  }

  /** I-9 for direct parents and the inherited role fields; I-8/I-9 against the gptes. */
  guest(): void {
    const kvm = this.kvm;
    for (const { sp, index, spte, child } of this.links) {
      const at = (): string => entryName(sp, index, spte);
      const inherited = kvm_mmu_child_role(sp.role, index, child.role.direct, child.role.access);
      if (roleWord(inherited) !== child.roleWord) {
        this.report("I-9", `${at()}: links ${spName(child)}, expected role ${roleName(inherited)}`);
        continue;
      }
      if (!sp.role.direct) continue;
      const role = kvm_mmu_child_role(sp.role, index, true, sp.role.access);
      const gfn = kvm_mmu_page_get_gfn(sp, index);
      if (roleWord(role) !== child.roleWord || child.gfn !== gfn) {
        this.report(
          "I-9",
          `${at()}: links ${spName(child)}, expected gfn ${hex(gfn)} ${roleName(role)}`,
        );
      }
    }
    // The guest mode and memslot of each indirect page, looked up once.
    const env = new Map<KvmMmuPage, { slot: KvmMemorySlot; ctx: GuestContext | null } | null>();
    const envOf = (sp: KvmMmuPage) => {
      let e = env.get(sp);
      if (e === undefined) {
        const slot = kvm.gfn_to_memslot(sp.gfn);
        e = slot ? { slot, ctx: guest_context(kvm, sp) } : null;
        env.set(sp, e);
      }
      return e;
    };
    for (const link of this.links) {
      if (!link.sp.has_gptes) continue;
      const e = envOf(link.sp);
      if (e) this.gpteLink(link.sp, e.slot, e.ctx, link);
    }
    for (const l of this.leaves) {
      if (!l.sp.has_gptes || l.sp.unsync) continue;
      const e = envOf(l.sp);
      if (e) this.gpteLeaf(l.sp, e.slot, e.ctx, l.index, l.spte);
    }
    for (const m of this.mmios) {
      if (!m.sp.has_gptes || m.sp.unsync) continue;
      const e = envOf(m.sp);
      if (e) this.gpteMmio(m.sp, e.slot, e.ctx, m.index, m.spte);
    }
  }

  /** The gpte of entry `index`, whether it is a leaf (null: unknown), and a problem, if any. */
  gpte(
    sp: KvmMmuPage,
    slot: KvmMemorySlot,
    ctx: GuestContext | null,
    index: number,
  ): {
    desc: PttypeDesc;
    gpte: bigint;
    last: boolean | null;
    problem: string | null;
    /** The problem is a reserved bit under the vCPU mode (not recorded in the role). */
    mode: boolean;
  } {
    const desc = sp.role.has_4_byte_gpte ? paging32 : paging64;
    const gpa = gpte_gpa(sp, index);
    const gpte = this.kvm.readGuestPhys(gpa, desc.PTE_SIZE);
    const level = sp.role.level;
    const what = (): string => `gpte ${hex(gpte)} at gpa ${hex(gpa)}`;
    let last: boolean | null;
    if (level === 1) last = true;
    else if (ctx) last = is_last_gpte(desc, ctx.cpu_role, level, gpte);
    else last = desc.PTTYPE === 64 ? is_large_pte(gpte) : null;
    let problem: string | null = null;
    let mode = false;
    if (!is_present_gpte(gpte)) problem = `${what()} is not present`;
    else if (ctx && FNAME_is_rsvd_bits_set(ctx.rsvd, gpte, level)) {
      problem = `${what()} has reserved bits set for level ${level} in the current guest mode`;
      // Only bits whose reservedness the role does not record make it a mode problem: bit 63
      // (EFER.NX) and bits 62:52 (reserved with PAE, ignored in 4-level paging) of 8-byte
      // gptes, and every reserved bit of a 4-byte PDE (CR4.PSE). An address bit above
      // MAXPHYADDR, or a misaligned large frame, is reserved in every mode.
      const bad = gpte & get_rsvd_bits(ctx.rsvd.guest_rsvd_check, gpte, level);
      mode = desc.PTTYPE === 32 || (bad & ((1n << 52n) - 1n)) === 0n;
    } else if ((gpte & PT_GUEST_ACCESSED_MASK) === 0n && !slot.readOnly) {
      // The walker sets A before KVM maps through a gpte (except in a read-only memslot);
      // prefetch and sync_spte refuse A=0; clearing A is a write KVM zaps on.
      problem = `${what()} has A=0 in a writable memslot`;
    }
    return { desc, gpte, last, problem, mode };
  }

  gpteLink(sp: KvmMmuPage, slot: KvmMemorySlot, ctx: GuestContext | null, link: Link): void {
    const { index, spte, child } = link;
    const at = (): string => entryName(sp, index, spte);
    const g = this.gpte(sp, slot, ctx, index);
    if (g.problem) {
      this.report(g.mode ? "I-9m" : "I-9", `${at()}: links ${spName(child)}, but the ${g.problem}`);
      return;
    }
    if (g.last === null) return;
    const what = (): string => `gpte ${hex(g.gpte)}`;
    if (g.last !== child.role.direct) {
      // For 4-byte gptes CR4.PSE, which is not in the role, decides whether a PDE is huge.
      this.report(
        g.desc.PTTYPE === 32 ? "I-9m" : "I-9",
        `${at()}: ${what()} is ${
          g.last ? "a huge page" : "a table pointer"
        } in the current guest ` +
          `mode, but links ${spName(child)}`,
      );
      return;
    }
    const a0 = sp.role.access & gpte_access(g.desc, g.gpte);
    if (g.last) {
      // A guest huge page split into a direct table (FNAME(fetch)'s direct part): the walker's
      // access, clean-protected for a read, full for a write (D then set), or the CR0.WP=0 form;
      // a read-only child may outlive D being set through another path.
      const gfn = leaf_gfn(g.desc, index, g.gpte, sp.role.level);
      const dirtyOk = (g.gpte & PT_GUEST_DIRTY_MASK) !== 0n || slot.readOnly;
      const allowed = new Set([a0 & ~W]);
      if (dirtyOk) allowed.add(a0);
      if (dirtyOk && !sp.role.cr0_wp && (a0 & W) === 0) allowed.add(wp0_access(sp.role, a0));
      if (child.gfn !== gfn || !allowed.has(child.role.access)) {
        this.report(
          "I-9",
          `${at()}: huge ${what()} maps gfn ${hex(gfn)} with access ${rightsName(a0)}, but links ` +
            `${spName(child)}`,
        );
      }
      return;
    }
    const gfn = gpte_to_gfn(g.desc, g.gpte);
    if (child.gfn !== gfn || child.role.access !== a0) {
      this.report(
        "I-9",
        `${at()}: ${what()} points at table gfn ${hex(gfn)} with access ${rightsName(a0)}, but ` +
          `links ${spName(child)}`,
      );
    }
  }

  gpteLeaf(
    sp: KvmMmuPage,
    slot: KvmMemorySlot,
    ctx: GuestContext | null,
    index: number,
    spte: bigint,
  ): void {
    const at = (): string => entryName(sp, index, spte);
    const g = this.gpte(sp, slot, ctx, index);
    if (g.problem) {
      this.report(g.mode ? "I-8m" : "I-8", `${at()}: leaf of a synced page, but the ${g.problem}`);
      return;
    }
    if (g.last === null) return;
    const what = (): string => `gpte ${hex(g.gpte)}`;
    if (!g.last) {
      this.report(
        g.desc.PTTYPE === 32 ? "I-8m" : "I-8",
        `${at()}: huge leaf, but ${what()} is a table pointer in the current guest mode`,
      );
      return;
    }
    const gfn = leaf_gfn(g.desc, index, g.gpte, sp.role.level);
    const recorded = kvm_mmu_page_get_gfn(sp, index);
    if (gfn !== recorded) {
      this.report(
        "I-8",
        `${at()}: ${what()} maps gfn ${hex(gfn)}, the SPTE was built for ${hex(recorded)}`,
      );
    }
    const a0 = sp.role.access & gpte_access(g.desc, g.gpte);
    const dirtyOk = (g.gpte & PT_GUEST_DIRTY_MASK) !== 0n || slot.readOnly;
    const allowed = dirtyOk ? a0 : protect_clean_gpte(a0, g.gpte);
    const rights = spte_access(spte);
    if ((rights & ~allowed) === 0) return;
    const wp0 = !sp.role.cr0_wp && dirtyOk && (a0 & W) === 0 &&
      (rights & ~wp0_access(sp.role, a0)) === 0;
    if (wp0) return;
    this.report(
      "I-8",
      `${at()}: grants ${rightsName(rights)}, but ${what()} allows ${rightsName(allowed)}` +
        `${sp.role.cr0_wp ? "" : ` (or the CR0.WP=0 form ${rightsName(wp0_access(sp.role, a0))})`}`,
    );
  }

  gpteMmio(
    sp: KvmMmuPage,
    slot: KvmMemorySlot,
    ctx: GuestContext | null,
    index: number,
    spte: bigint,
  ): void {
    const at = (): string => entryName(sp, index, spte);
    const g = this.gpte(sp, slot, ctx, index);
    if (g.problem) {
      this.report(
        g.mode ? "I-8m" : "I-8",
        `${at()}: MMIO SPTE of a synced page, but the ${g.problem}`,
      );
      return;
    }
    const gfn = gpte_to_gfn(g.desc, g.gpte);
    const a0 = sp.role.access & gpte_access(g.desc, g.gpte) & (W | U);
    const mmioGfn = get_mmio_spte_gfn(spte);
    const access = get_mmio_spte_access(spte);
    if (gfn !== mmioGfn || (access & ~a0) !== 0) {
      this.report(
        "I-8",
        `${at()}: MMIO gfn ${hex(mmioGfn)} access ${rightsName(access)}, but gpte ${hex(g.gpte)} ` +
          `maps gfn ${hex(gfn)} with ${rightsName(a0)}`,
      );
    }
  }

  /** I-12. */
  tlbs(strict: boolean): void {
    if (this.kvm.vcpus.every((v) => v.tlb.size === 0)) return;
    const small = new Map<number, Leaf[]>();
    const huge: Leaf[] = [];
    for (const l of this.leaves) {
      if (l.level > 1) huge.push(l);
      else {
        const list = small.get(l.pfn);
        if (list) list.push(l);
        else small.set(l.pfn, [l]);
      }
    }
    const mapping = (pfn: number): Leaf[] => [
      ...(small.get(pfn) ?? []),
      ...huge.filter((l) => pfn >= l.pfn && pfn < l.pfn + l.span),
    ];
    for (const vcpu of this.kvm.vcpus) {
      if (flush_pending(this.kvm, vcpu)) continue;
      for (const [pcid, laPage, e] of vcpu.tlb.entries()) {
        const what = (): string =>
          `vcpu ${vcpu.vcpu_id} TLB entry pcid ${pcid} la ${hex(laPage * 4096)} → ` +
          `pfn ${hex(e.pfn)} ${e.user ? "u" : "-"}${e.writable ? "w" : "-"}${
            e.executable ? "x" : "-"
          }`;
        const leaves = mapping(e.pfn);
        if (leaves.length === 0) {
          this.report("I-12", `${what()}: no present leaf SPTE maps that pfn (zap without flush?)`);
          continue;
        }
        const need = (e.writable ? W : 0) | (strict && e.user ? U : 0) |
          (strict && e.executable ? X : 0);
        if (leaves.some((l) => (l.rights & need) === need)) continue;
        this.report(
          "I-12",
          `${what()}: no leaf SPTE for that pfn grants ${rightsName(need)}` +
            `${need & W ? " (a write-protect without a flush?)" : ""}; e.g. ${
              leafName(leaves[0]!)
            }`,
        );
      }
    }
  }
}

/**
 * `kvm_mmu_audit`: checks the shadow-MMU invariants (S-1..S-4, I-6a..I-13; the module comment
 * lists exactly what each covers) on the current state of `kvm` and returns the violations, in
 * a deterministic order; an empty array means the state is consistent. Call it between guest
 * steps: in the middle of a fault or zap the invariants do not hold. It does not change the
 * state (no host page is allocated, no rmap head created).
 *
 * @param kvm the VM
 * @param options {@link AuditOptions}
 * @returns every violation found
 */
export function kvm_mmu_audit(kvm: Kvm, options: AuditOptions = {}): AuditViolation[] {
  const audit = new Audit(kvm);
  audit.pageLists();
  audit.scan();
  audit.parents();
  audit.rmaps();
  audit.roots();
  audit.shadowed();
  audit.guest();
  audit.tlbs(options.strictTlbRights ?? false);
  return audit.out;
}

/**
 * The unsync shadow pages reachable from `vcpu`'s current root (through the `pae_root` entries
 * for PAE-format roots), in walk order. Right after `kvm_mmu_sync_roots(vcpu)` this must be
 * empty (the event-level half of I-7, which {@link kvm_mmu_audit} cannot check from a snapshot).
 *
 * @param vcpu the vCPU whose root is walked
 * @returns the unsync pages found
 */
export function unsync_reachable_from_root(vcpu: KvmVcpu): KvmMmuPage[] {
  const kvm = vcpu.kvm;
  const mmu = vcpu.mmu as KvmMmu | undefined;
  if (!mmu || mmu.root.hpa === INVALID_PAGE || is_dummy_root(kvm, mmu.root.hpa)) return [];
  const roots: KvmMmuPage[] = [];
  if (mmu.root.hpa === mmu.pae_root * 4096) {
    for (let i = 0; i < 4; i++) {
      const e = kvm.host.read64(mmu.root.hpa + i * 8);
      if ((e & PT_PRESENT_MASK) === 0n) continue;
      const sp = kvm.spOfPfn.get(spte_to_pfn(e));
      if (sp) roots.push(sp);
    }
  } else {
    const sp = kvm.spOfPfn.get(Math.floor(mmu.root.hpa / 4096));
    if (sp) roots.push(sp);
  }
  const seen = new Set<KvmMmuPage>();
  const found: KvmMmuPage[] = [];
  const stack = roots.reverse();
  while (stack.length > 0) {
    const sp = stack.pop()!;
    if (seen.has(sp)) continue;
    seen.add(sp);
    if (sp.unsync) found.push(sp);
    if (sp.role.level === 1) continue;
    for (let i = SPTE_ENT_PER_PAGE - 1; i >= 0; i--) {
      const spte = sp.spt[i]!;
      if (!is_shadow_present_pte(spte) || is_last_spte(spte, sp.role.level)) continue;
      const child = kvm.spOfPfn.get(spte_to_pfn(spte));
      if (child && !seen.has(child)) stack.push(child);
    }
  }
  return found;
}
