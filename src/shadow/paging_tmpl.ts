/**
 * The guest page-table walker of arch/x86/kvm/mmu/paging_tmpl.h, `FNAME(walk_addr_generic)`
 * and the small `FNAME(...)` helpers the shadow code calls. KVM compiles the template once per
 * guest PTE type; here the template parameters are a {@link PttypeDesc} value and there is one
 * implementation, instantiated as {@link paging64} (8-byte gptes: PAE from the cached PDPTEs,
 * 4-level, 5-level) and {@link paging32} (4-byte gptes, 2 levels, PSE). EPT is not modelled.
 *
 * Addresses: the linear address is a `bigint` (u64). Outside long mode the caller passes the
 * 32-bit effective address (KVM receives CR2 or a linearized emulator address, both 32-bit
 * there). Guest frame numbers and guest-physical addresses are JS numbers (< 2^52, exact).
 *
 * @module
 */

import {
  type GuestPagingMetadata,
  is_cpuid_PSE36,
  is_rsvd_bits_set,
  permission_fault,
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "./guest_metadata.ts";
import {
  ACC_WRITE_MASK,
  type KvmCpuRole,
  PG_LEVEL_4K,
  PT32_ROOT_LEVEL,
  PT32E_ROOT_LEVEL,
} from "./mmu_role.ts";
import type { BugName } from "./bugs.ts";

/** `PAGE_SHIFT`. */
export const PAGE_SHIFT = 12;
/** `PT_PRESENT_MASK` (bit 0). */
export const PT_PRESENT_MASK = 1n << 0n;
/** `PT_WRITABLE_SHIFT`. */
export const PT_WRITABLE_SHIFT = 1;
/** `PT_WRITABLE_MASK` (bit 1). */
export const PT_WRITABLE_MASK = 1n << 1n;
/** `PT_USER_MASK` (bit 2). */
export const PT_USER_MASK = 1n << 2n;
/** `PT_GUEST_ACCESSED_SHIFT` (`PT_ACCESSED_SHIFT` for non-EPT). */
export const PT_GUEST_ACCESSED_SHIFT = 5;
/** `PT_GUEST_ACCESSED_MASK` (bit 5). */
export const PT_GUEST_ACCESSED_MASK = 1n << 5n;
/** `PT_GUEST_DIRTY_SHIFT` (`PT_DIRTY_SHIFT` for non-EPT). */
export const PT_GUEST_DIRTY_SHIFT = 6;
/** `PT_GUEST_DIRTY_MASK` (bit 6). */
export const PT_GUEST_DIRTY_MASK = 1n << 6n;
/** `PT_PAGE_SIZE_MASK` (bit 7). */
export const PT_PAGE_SIZE_MASK = 1n << 7n;
/** `PT64_NX_SHIFT`. */
export const PT64_NX_SHIFT = 63n;
/** `PT32_DIR_PSE36_SHIFT`: PDE bits 16:13 hold PA bits 35:32 of a 4 MiB page. */
export const PT32_DIR_PSE36_SHIFT = 13;
/** `PT32_DIR_PSE36_MASK`: PDE bits 16:13. */
export const PT32_DIR_PSE36_MASK = 0xfn << 13n;
/** `PTE_PREFETCH_NUM`. */
export const PTE_PREFETCH_NUM = 8;

const U64_MAX = (1n << 64n) - 1n;
const PAGE_MASK = U64_MAX & ~0xfffn; // unsigned long on a 64-bit host
const GUEST_PT64_BASE_ADDR_MASK = ((1n << 52n) - 1n) & ~0xfffn;

/**
 * The template parameters of one `paging_tmpl.h` instantiation (`PTTYPE` 64 or 32), with the
 * address macros as methods.
 */
export interface PttypeDesc {
  /** `FNAME` prefix. */
  readonly name: "paging64" | "paging32";
  /** `PTTYPE`. */
  readonly PTTYPE: 64 | 32;
  /** `sizeof(pt_element_t)`. */
  readonly PTE_SIZE: 8 | 4;
  /** `PT_LEVEL_BITS`: index bits per level. */
  readonly PT_LEVEL_BITS: 9 | 10;
  /** `PT_MAX_FULL_LEVELS`: length of the walker arrays. */
  readonly PT_MAX_FULL_LEVELS: 5 | 2;
  /** All ones of `pt_element_t` (u64 or u32): values stored in a gpte are truncated to it. */
  readonly PT_ELEMENT_MASK: bigint;
  /** `PT_BASE_ADDR_MASK`. */
  readonly PT_BASE_ADDR_MASK: bigint;
  /** `walk_nx_mask`: bit 63 for 64-bit gptes, 0 for 32-bit ones. */
  readonly walk_nx_mask: bigint;
  /** `PT_LVL_ADDR_MASK(lvl)`: frame-address bits of a gpte that maps at `lvl`. */
  PT_LVL_ADDR_MASK(lvl: number): bigint;
  /** `PT_LVL_OFFSET_MASK(lvl)`: address bits 12 and up that index inside a `lvl` page. */
  PT_LVL_OFFSET_MASK(lvl: number): bigint;
  /** `PT_INDEX(addr, level)`: the table index `addr` selects at `level`. */
  PT_INDEX(addr: bigint, level: number): number;
}

function make_pttype(
  name: PttypeDesc["name"],
  PTTYPE: PttypeDesc["PTTYPE"],
  base: bigint,
  bits: PttypeDesc["PT_LEVEL_BITS"],
): PttypeDesc {
  const shift = (level: number): bigint => BigInt(PAGE_SHIFT + (level - 1) * bits);
  return {
    name,
    PTTYPE,
    PTE_SIZE: PTTYPE === 64 ? 8 : 4,
    PT_LEVEL_BITS: bits,
    PT_MAX_FULL_LEVELS: PTTYPE === 64 ? 5 : 2,
    PT_ELEMENT_MASK: PTTYPE === 64 ? U64_MAX : 0xffff_ffffn,
    PT_BASE_ADDR_MASK: base,
    walk_nx_mask: PTTYPE === 64 ? 1n << PT64_NX_SHIFT : 0n,
    PT_LVL_ADDR_MASK: (lvl) => base & ~((1n << shift(lvl)) - 1n),
    PT_LVL_OFFSET_MASK: (lvl) => base & ((1n << shift(lvl)) - 1n),
    PT_INDEX: (addr, level) => Number((addr >> shift(level)) & ((1n << BigInt(bits)) - 1n)),
  };
}

/** `PTTYPE == 64`: `paging64_*` (PAE, 4-level and 5-level guests). */
export const paging64: PttypeDesc = make_pttype("paging64", 64, GUEST_PT64_BASE_ADDR_MASK, 9);
/** `PTTYPE == 32`: `paging32_*` (2-level non-PAE guests). */
export const paging32: PttypeDesc = make_pttype("paging32", 32, PAGE_MASK, 10);

/**
 * The instantiation `shadow_mmu_init_context()` picks: `null` for CR0.PG=0 (nonpaging),
 * {@link paging64} when CR4.PAE (`!has_4_byte_gpte`), else {@link paging32}.
 */
export function paging_tmpl_for(cpu_role: KvmCpuRole): PttypeDesc | null {
  if (cpu_role.base.level === 0) return null;
  return cpu_role.base.has_4_byte_gpte ? paging32 : paging64;
}

/** `FNAME(gpte_to_gfn_lvl)`: `(gpte & PT_LVL_ADDR_MASK(lvl)) >> PAGE_SHIFT`. */
export function gpte_to_gfn_lvl(desc: PttypeDesc, gpte: bigint, lvl: number): number {
  return Number((gpte & desc.PT_ELEMENT_MASK & desc.PT_LVL_ADDR_MASK(lvl)) >> 12n);
}

/** `gpte_to_gfn(pte)`: {@link gpte_to_gfn_lvl} at `PG_LEVEL_4K` (also used for table pointers). */
export function gpte_to_gfn(desc: PttypeDesc, gpte: bigint): number {
  return gpte_to_gfn_lvl(desc, gpte, PG_LEVEL_4K);
}

/**
 * `pse36_gfn_delta()`: PDE bits 16:13 moved to gfn bits 23:20 (PA bits 35:32). KVM assumes this
 * fixed PSE-36 layout whatever MAXPHYADDR is (doc §4 item 5).
 */
export function pse36_gfn_delta(gpte: bigint): number {
  const shift = BigInt(32 - PT32_DIR_PSE36_SHIFT - PAGE_SHIFT);
  return Number((gpte & PT32_DIR_PSE36_MASK) << shift);
}

/** `FNAME(is_present_gpte)`: bit 0. */
export function is_present_gpte(gpte: bigint): boolean {
  return (gpte & PT_PRESENT_MASK) !== 0n;
}

/**
 * `FNAME(protect_clean_gpte)`: removes `ACC_WRITE_MASK` from `access` unless the gpte is dirty,
 * so the first write to a clean page faults and KVM can set D. Returns the new access.
 */
export function protect_clean_gpte(access: number, gpte: bigint): number {
  let mask = ~ACC_WRITE_MASK;
  // Allow write access to dirty gptes: D (bit 6) lands on W (bit 1).
  mask |= Number((gpte >> BigInt(PT_GUEST_DIRTY_SHIFT - PT_WRITABLE_SHIFT)) & PT_WRITABLE_MASK);
  return access & mask;
}

/**
 * `FNAME(gpte_access)`: `ACC_*` bits of a gpte (or of an AND of gptes). P becomes X, then NX
 * (bit 63 of the u64 argument) is XORed into it. The argument is a u64 for both
 * instantiations, so the walker's initial all-ones `pt_access` gives 6 (no X) for 32-bit
 * gptes, exactly as in KVM.
 */
export function gpte_access(_desc: PttypeDesc, gpte: bigint): number {
  const access = Number(gpte & (PT_WRITABLE_MASK | PT_USER_MASK | PT_PRESENT_MASK));
  return access ^ Number((gpte >> PT64_NX_SHIFT) & 1n);
}

/** `FNAME(gpte_pkeys)`: protection key, bits 62:59 of a 64-bit gpte; 0 for 32-bit gptes. */
export function gpte_pkeys(desc: PttypeDesc, gpte: bigint): number {
  return desc.PTTYPE === 64 ? Number((gpte >> 59n) & 0xfn) : 0;
}

/**
 * `FNAME(is_last_gpte)`: level 1 always ends the walk; otherwise bit 7. For 32-bit paging bit 7
 * counts only at level 2 with CR4.PSE=1; elsewhere it is ignored (neither a page size nor a
 * reserved bit). For PAE/64-bit an illegal bit 7 was already rejected as reserved.
 */
export function is_last_gpte(
  desc: PttypeDesc,
  cpu_role: KvmCpuRole,
  level: number,
  gpte: bigint,
): boolean {
  if (level === PG_LEVEL_4K) return true;
  if (desc.PTTYPE === 32 && level >= PT32_ROOT_LEVEL + (cpu_role.ext.cr4_pse ? 1 : 0)) {
    return false;
  }
  return (gpte & PT_PAGE_SIZE_MASK) !== 0n;
}

/** `FNAME(is_rsvd_bits_set)`: `__is_rsvd_bits_set` on `guest_rsvd_check` (no EPT memtype check). */
export function FNAME_is_rsvd_bits_set(
  mmu: Pick<GuestPagingMetadata, "guest_rsvd_check">,
  gpte: bigint,
  level: number,
): boolean {
  return is_rsvd_bits_set(mmu.guest_rsvd_check, gpte, level);
}

/**
 * `FNAME(prefetch_invalid_gpte)`: true when a gpte must not be prefetched/synced into a level-1
 * spte: not present, A=0 (`PT_GUEST_ACCESSED_MASK`), or reserved bits for level 1. KVM also
 * drops the spte in that case; the caller does that.
 */
export function prefetch_invalid_gpte(
  _desc: PttypeDesc,
  mmu: Pick<GuestPagingMetadata, "guest_rsvd_check">,
  gpte: bigint,
): boolean {
  if (!is_present_gpte(gpte)) return true;
  // Prefetch only accessed entries (A/D bits are always available outside EPT).
  if ((gpte & PT_GUEST_ACCESSED_MASK) === 0n) return true;
  return FNAME_is_rsvd_bits_set(mmu, gpte, PG_LEVEL_4K);
}

/** A visible memslot as the walker sees it. */
export interface WalkerMemslot {
  /** `KVM_MEM_READONLY`: `pte_writable` is false and A/D updates are skipped (ROM). */
  readOnly: boolean;
}

/** Guest-memory access for the walker (`kvm_vcpu_gfn_to_hva_prot`, `__get_user`, cmpxchg). */
export interface WalkerGuestAccess {
  /**
   * `kvm_vcpu_gfn_to_memslot` + usability: `undefined` when no usable memslot holds `gfn` (the
   * walker then fails with P=0, doc §4 item 6).
   */
  memslot(gfn: number): WalkerMemslot | undefined;
  /** Reads `bytes` (4 or 8) little-endian at `gpa`, which lies in a slot `memslot` returned. */
  read(gpa: number, bytes: 4 | 8): bigint;
  /**
   * `__try_cmpxchg_user` on the gpte at `gpa`: `"ok"` when memory held `old` and now holds
   * `val`, `"changed"` when it did not hold `old` (nothing written), `"fault"` on failure. This
   * is a raw user-memory write: KVM does not send it through `kvm_mmu_track_write`.
   */
  cmpxchg(gpa: number, bytes: 4 | 8, old: bigint, val: bigint): "ok" | "changed" | "fault";
  /** `kvm_vcpu_mark_page_dirty` for the table gfn after a successful A/D cmpxchg. */
  markPageDirty(gfn: number): void;
}

/** The vCPU and `struct kvm_mmu` state the walker reads. */
export interface WalkerVcpu extends GuestPagingMetadata {
  /** `mmu->cpu_role`. */
  cpu_role: KvmCpuRole;
  /** `get_guest_pgd()`: CR3 (PCID/NOFLUSH bits are ignored by the address mask). */
  cr3: bigint;
  /** `mmu->pdptrs[4]` (`kvm_pdptr_read`): the PDPTEs cached at the last PDPTE load (PAE). */
  pdptrs: readonly bigint[];
  /** CPL (only the pre-2022 SMAP rule used it; kept for `permission_fault`). */
  cpl: number;
  /** EFLAGS.AC. */
  rflags_ac: boolean;
  /** PKRU. */
  pkru: number;
  /** `kvm.bug(name)`: an injected bug of the zoo is on (absent: none). */
  bug?: (name: BugName) => boolean;
}

/** `struct x86_exception` for a #PF the walker reports (the caller injects it). */
export interface WalkerFault {
  /** The #PF error code (P, W, U, RSVD, I/D, PK bits). */
  error_code: number;
  /** CR2: the linear address that was walked. */
  address: bigint;
}

/** `struct guest_walker`. Arrays are indexed by `level - 1`. */
export interface GuestWalker {
  /** Level of the leaf (1 = 4K, 2 = 2M/4M, 3 = 1G); on failure, where the walk stopped. */
  level: number;
  /** First level read from memory (2 for PAE: the PDPTE comes from the cache). */
  max_level: number;
  /** Guest frame of the table read at each level. */
  table_gfn: number[];
  /** Each gpte read (updated after a successful A/D cmpxchg). */
  ptes: bigint[];
  /** `prefetch_ptes[PTE_PREFETCH_NUM]`: filled by `FNAME(gpte_changed)`, not by the walk. */
  prefetch_ptes: bigint[];
  /** Guest-physical address of the gpte read at each level. */
  pte_gpa: number[];
  /** The table's memslot is writable (false: ROM, A/D bits are not written). */
  pte_writable: boolean[];
  /** `ACC_*` of all entries above each level. */
  pt_access: number[];
  /** Effective `ACC_*` of the translation (after `protect_clean_gpte` for non-writes). */
  pte_access: number;
  /** Target guest frame. */
  gfn: number;
  /** The #PF to inject, or `null` when the walk succeeded. */
  fault: WalkerFault | null;
  /** Model extension: how many times `retry_walk` restarted the walk after a lost cmpxchg. */
  retries: number;
}

/** Model safety net: a walk that keeps losing its cmpxchg is a test-double bug, not KVM. */
const MAX_RETRY_WALK = 1000;
const EFAULT = -14;

function new_walker(desc: PttypeDesc): GuestWalker {
  const n = desc.PT_MAX_FULL_LEVELS;
  return {
    level: 0,
    max_level: 0,
    table_gfn: new Array<number>(n).fill(0),
    ptes: new Array<bigint>(n).fill(0n),
    prefetch_ptes: new Array<bigint>(PTE_PREFETCH_NUM).fill(0n),
    pte_gpa: new Array<number>(n).fill(0),
    pte_writable: new Array<boolean>(n).fill(false),
    pt_access: new Array<number>(n).fill(0),
    pte_access: 0,
    gfn: 0,
    fault: null,
    retries: 0,
  };
}

const at = <T>(array: readonly T[], index: number): T => {
  const value = array[index];
  if (value === undefined) throw new RangeError(`walker index ${index} out of range`);
  return value;
};

/**
 * `FNAME(update_accessed_dirty_bits)`: from `max_level` down to the leaf, set A where missing
 * and D on the leaf for a write. Unchanged entries and entries in read-only memslots are
 * skipped (ba6a35415455). Returns 0 when done, 1 when a cmpxchg lost (retry the walk),
 * `-EFAULT` when it faulted.
 */
export function update_accessed_dirty_bits(
  desc: PttypeDesc,
  walker: GuestWalker,
  mem: WalkerGuestAccess,
  write_fault: boolean,
): number {
  for (let level = walker.max_level; level >= walker.level; --level) {
    const orig_pte = at(walker.ptes, level - 1);
    let pte = orig_pte;
    const table_gfn = at(walker.table_gfn, level - 1);
    if ((pte & PT_GUEST_ACCESSED_MASK) === 0n) pte |= PT_GUEST_ACCESSED_MASK;
    if (level === walker.level && write_fault && (pte & PT_GUEST_DIRTY_MASK) === 0n) {
      pte |= PT_GUEST_DIRTY_MASK;
    }
    if (pte === orig_pte) continue;
    // Read-only slot (ROM): do not process A/D; such tables only work with A/D already set.
    if (!at(walker.pte_writable, level - 1)) continue;
    const ret = mem.cmpxchg(at(walker.pte_gpa, level - 1), desc.PTE_SIZE, orig_pte, pte);
    if (ret === "fault") return EFAULT;
    if (ret === "changed") return 1;
    mem.markPageDirty(table_gfn);
    walker.ptes[level - 1] = pte;
  }
  return 0;
}

/**
 * `FNAME(walk_addr_generic)` for the vCPU's own MMU (no nested translation): walks `addr` for an
 * access described by `access` (PFEC subset: W/U/F, optionally P and
 * `PFERR_IMPLICIT_ACCESS`; the fault path strips RSVD before calling). Returns the walker; its
 * `fault` is `null` on success (KVM returns 1) and holds the #PF otherwise (KVM returns 0).
 *
 * Order of checks: PAE starts from the cached PDPTE (not present: error code 0, no reserved-bit
 * re-check); per level the table gfn must be in a memslot (else P=0), the gpte present (else
 * P=0) and free of reserved bits (else RSVD|P); then `permission_fault`; the target gfn (with
 * `pse36_gfn_delta` for 32-bit large pages); `protect_clean_gpte` for non-writes; and only then
 * the A/D update, which may restart the walk. Error path: `|= W|U` from the access, `|= I/D`
 * for a fetch when guest EFER.NX or CR4.SMEP; `fault.address = addr`.
 *
 * @throws {Error} on a mode KVM asserts away (LMA without PAE, level beyond the template) or
 *   when the walk restarts more than 1000 times (a livelocked test double)
 */
export function walk_addr_generic(
  desc: PttypeDesc,
  vcpu: WalkerVcpu,
  mem: WalkerGuestAccess,
  addr: bigint,
  access: number,
): GuestWalker {
  const walker = new_walker(desc);
  const role = vcpu.cpu_role;
  const write_fault = access & PFERR_WRITE_MASK;
  const user_fault = access & PFERR_USER_MASK;
  const fetch_fault = access & PFERR_FETCH_MASK;
  const walk_nx_mask = desc.walk_nx_mask;
  const bug = (name: BugName): boolean => vcpu.bug?.(name) ?? false;
  let errcode = 0;

  const error = (): GuestWalker => {
    errcode |= write_fault | (bug("walker_error_drops_user_bit") ? 0 : user_fault);
    if (fetch_fault && (role.base.efer_nx || role.ext.cr4_smep)) errcode |= PFERR_FETCH_MASK;
    walker.fault = { error_code: errcode, address: addr };
    return walker;
  };

  if (role.ext.efer_lma && role.base.has_4_byte_gpte) {
    throw new Error("walk_addr_generic: long mode without PAE (KVM asserts this away)");
  }
  if (role.base.level < 1 || role.base.level > desc.PT_MAX_FULL_LEVELS) {
    throw new Error(`walk_addr_generic: ${desc.name} cannot walk a level-${role.base.level} mode`);
  }

  retry_walk: for (;;) {
    walker.level = role.base.level;
    let pte = vcpu.cr3 & desc.PT_ELEMENT_MASK;

    if (desc.PTTYPE === 64 && walker.level === PT32E_ROOT_LEVEL) {
      pte = vcpu.pdptrs[Number((addr >> 30n) & 3n)] ?? 0n;
      if (!is_present_gpte(pte)) return error();
      --walker.level;
    }
    walker.max_level = walker.level;

    let pte_access = U64_MAX;
    let pt_access = U64_MAX;
    ++walker.level;
    do {
      pt_access = pte_access;
      --walker.level;
      const index = desc.PT_INDEX(addr, walker.level);
      const table_gfn = gpte_to_gfn(desc, pte);
      const offset = index * desc.PTE_SIZE;
      const pte_gpa = table_gfn * 2 ** PAGE_SHIFT + offset;
      walker.table_gfn[walker.level - 1] = table_gfn;
      walker.pte_gpa[walker.level - 1] = pte_gpa;

      const slot = mem.memslot(table_gfn);
      if (slot === undefined) return error();
      // Before ba6a35415455 the table was mapped for writing (for A/D), which ROM refuses.
      if (slot.readOnly && bug("walker_readonly_slot_faults")) return error();
      walker.pte_writable[walker.level - 1] = !slot.readOnly;
      pte = mem.read(pte_gpa, desc.PTE_SIZE) & desc.PT_ELEMENT_MASK;

      // Inverting NX lets it be ANDed like the other permission bits.
      pte_access = pt_access & (pte ^ walk_nx_mask);

      if (!is_present_gpte(pte)) return error();
      const rsvd_level = desc.PTTYPE === 64 && walker.level === 2 && bug("rsvd_check_2m_as_1g")
        ? 3
        : walker.level;
      if (FNAME_is_rsvd_bits_set(vcpu, pte, rsvd_level)) {
        errcode = PFERR_RSVD_MASK | PFERR_PRESENT_MASK;
        return error();
      }
      walker.ptes[walker.level - 1] = pte;
      walker.pt_access[walker.level - 1] = gpte_access(desc, pt_access ^ walk_nx_mask);
    } while (!is_last_gpte(desc, role, walker.level, pte));

    const pte_pkey = gpte_pkeys(desc, pte);
    let accessed_dirty = pte_access & PT_GUEST_ACCESSED_MASK;

    walker.pte_access = gpte_access(desc, pte_access ^ walk_nx_mask);
    errcode = permission_fault(
      vcpu,
      vcpu.cpl,
      vcpu.rflags_ac,
      walker.pte_access,
      pte_pkey,
      access,
      vcpu.pkru,
    );
    if (errcode) return error();

    let gfn = gpte_to_gfn_lvl(desc, pte, walker.level);
    gfn += Number((addr & desc.PT_LVL_OFFSET_MASK(walker.level)) >> 12n);
    if (
      desc.PTTYPE === 32 && walker.level > PG_LEVEL_4K && is_cpuid_PSE36() &&
      !bug("pse36_gfn_delta_ignored")
    ) {
      gfn += pse36_gfn_delta(pte);
    }
    walker.gfn = gfn;

    if (!write_fault) {
      walker.pte_access = protect_clean_gpte(walker.pte_access, pte);
    } else {
      // Fold the leaf's D into accessed_dirty (D is bit 6, A bit 5).
      accessed_dirty &= pte >> BigInt(PT_GUEST_DIRTY_SHIFT - PT_GUEST_ACCESSED_SHIFT);
    }

    if (accessed_dirty === 0n) {
      const ret = update_accessed_dirty_bits(desc, walker, mem, write_fault !== 0);
      if (ret < 0) return error();
      if (ret > 0) {
        if (++walker.retries > MAX_RETRY_WALK) {
          throw new Error(`walk_addr_generic: retry_walk looped ${MAX_RETRY_WALK} times`);
        }
        continue retry_walk;
      }
    }
    return walker;
  }
}

/** `FNAME(walk_addr)`: {@link walk_addr_generic} on the vCPU's MMU. */
export function walk_addr(
  desc: PttypeDesc,
  vcpu: WalkerVcpu,
  mem: WalkerGuestAccess,
  addr: bigint,
  access: number,
): GuestWalker {
  return walk_addr_generic(desc, vcpu, mem, addr, access);
}

/**
 * `FNAME(gva_to_gpa)`: the guest-physical address of `addr` (`gfn << 12 | addr & 0xfff`), or
 * `null` (`UNMAPPED_GVA`) with the walker's fault as the exception.
 */
export function gva_to_gpa(
  desc: PttypeDesc,
  vcpu: WalkerVcpu,
  mem: WalkerGuestAccess,
  addr: bigint,
  access: number,
): { gpa: number | null; exception: WalkerFault | null } {
  const walker = walk_addr_generic(desc, vcpu, mem, addr, access);
  if (walker.fault !== null) return { gpa: null, exception: walker.fault };
  return { gpa: walker.gfn * 2 ** PAGE_SHIFT + Number(addr & 0xfffn), exception: null };
}
