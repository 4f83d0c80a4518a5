/**
 * Roots of the shadow MMU (`mmu.c`): the shadow walk iterator, `mmu_alloc_shadow_roots` and
 * `mmu_alloc_direct_roots` (4/5-level roots, the per-vCPU `pae_root` for PAE, 2-level and
 * nonpaging guests, quadrants, the dummy root), `kvm_mmu_load`/`unload`/`free_roots`, the
 * `prev_roots` cache (`fast_pgd_switch`), `kvm_mmu_sync_roots`/`sync_prev_roots`, and
 * `kvm_mmu_invalidate_addr` (INVLPG).
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import {
  INVALID_PAGE,
  KVM_MMU_NUM_PREV_ROOTS,
  type KvmMmu,
  type KvmMmuRootInfo,
  type KvmVcpu,
} from "./kvm_vcpu.ts";
import type { KvmMmuPage } from "./mmu_page.ts";
import {
  type KvmMmuPageRole,
  PT32_ROOT_LEVEL,
  PT32E_ROOT_LEVEL,
  PT64_ROOT_4LEVEL,
  roleWord,
} from "./mmu_role.ts";
import {
  free_invalid_root,
  get_spte,
  is_obsolete_sp,
  is_unsync_root,
  kvm_flush_remote_tlbs,
  kvm_mmu_commit_zap_page,
  kvm_mmu_get_shadow_page,
  kvm_sync_spte,
  mmu_page_zap_pte,
  mmu_sync_children,
  root_to_sp,
  sptep_to_sp,
} from "./mmu.ts";
import {
  is_last_spte,
  is_shadow_present_pte,
  PT_PRESENT_MASK,
  SPTE_BASE_ADDR_MASK,
  spte_to_pfn,
} from "./spte.ts";
import { vcpu_clear_mmio_info } from "./mmio.ts";

/** `INVALID_PAE_ROOT`. */
export const INVALID_PAE_ROOT = 0n;
/** `PT_BASE_ADDR_MASK` of a guest CR3 / PDPTE: bits 51:12. */
const PT_BASE_ADDR_MASK = ((1n << 52n) - 1n) & ~0xfffn;

// ---------------------------------------------------------------------------------------------
// The shadow walk iterator
// ---------------------------------------------------------------------------------------------

/** `struct kvm_shadow_walk_iterator`. */
export class ShadowWalkIterator {
  readonly addr: bigint;
  /** Host physical address of the current table. */
  shadow_addr: number;
  sptep = 0;
  level: number;
  index = 0;
  readonly #kvm: Kvm;

  /** `shadow_walk_init_using_root`. */
  constructor(vcpu: KvmVcpu, root: number, addr: bigint) {
    this.#kvm = vcpu.kvm;
    this.addr = addr;
    this.shadow_addr = root;
    this.level = vcpu.mmu.root_role.level;
    if (root === INVALID_PAGE) {
      this.level = 0;
      return;
    }
    if (this.level === PT32E_ROOT_LEVEL) {
      const pae = vcpu.kvm.host.read64(root + Number((addr >> 30n) & 3n) * 8);
      this.shadow_addr = Number((pae & SPTE_BASE_ADDR_MASK) >> 12n) * 4096;
      this.level--;
      if ((pae & PT_PRESENT_MASK) === 0n) this.level = 0;
    }
  }

  /** `shadow_walk_okay`: computes `index` and `sptep` of the current level. */
  okay(): boolean {
    if (this.level < 1) return false;
    this.index = Number((this.addr >> BigInt(12 + 9 * (this.level - 1))) & 511n);
    this.sptep = this.shadow_addr + this.index * 8;
    return true;
  }

  /** `__shadow_walk_next`. */
  next(spte: bigint = get_spte(this.#kvm, this.sptep)): void {
    if (!is_shadow_present_pte(spte) || is_last_spte(spte, this.level)) {
      this.level = 0;
      return;
    }
    this.shadow_addr = spte_to_pfn(spte) * 4096;
    this.level--;
  }
}

// ---------------------------------------------------------------------------------------------
// Allocation
// ---------------------------------------------------------------------------------------------

/** `mmu_alloc_root`: a shadow page used as a root (`root_count` held). */
function mmu_alloc_root(vcpu: KvmVcpu, gfn: number, quadrant: number, level: number): number {
  const role: KvmMmuPageRole = { ...vcpu.mmu.root_role, level, quadrant };
  const sp = kvm_mmu_get_shadow_page(vcpu, gfn, role);
  sp.root_count++;
  vcpu.kvm.count("root_allocs");
  return sp.pfn * 4096;
}

/** The per-vCPU `pae_root` page's words. */
function pae_root(vcpu: KvmVcpu): BigUint64Array {
  return vcpu.kvm.host.page(vcpu.mmu.pae_root);
}

/** `kvm_mmu_get_dummy_root`: the zero page; every walk through it finds nothing present. */
function kvm_mmu_get_dummy_root(kvm: Kvm): number {
  return dummyRootPfn(kvm) * 4096;
}

const DUMMY_ROOTS = new WeakMap<Kvm, number>();
function dummyRootPfn(kvm: Kvm): number {
  let pfn = DUMMY_ROOTS.get(kvm);
  if (pfn === undefined) {
    pfn = kvm.host.allocKernelPage();
    DUMMY_ROOTS.set(kvm, pfn);
  }
  return pfn;
}

/** True if `hpa` is the dummy root. */
export function is_dummy_root(kvm: Kvm, hpa: number): boolean {
  return hpa >= 0 && DUMMY_ROOTS.get(kvm) === Math.floor(hpa / 4096);
}

/** `kvm_vcpu_is_visible_gfn`. */
function kvm_vcpu_is_visible_gfn(vcpu: KvmVcpu, gfn: number): boolean {
  return vcpu.kvm.gfn_to_memslot(gfn) !== undefined;
}

/** `kvm_mmu_get_guest_pgd`: guest CR3. */
function kvm_mmu_get_guest_pgd(vcpu: KvmVcpu): bigint {
  return vcpu.arch.cr3;
}

/** `mmu_alloc_direct_roots` (nonpaging guests under shadow paging: 4 PAE-format roots). */
function mmu_alloc_direct_roots(vcpu: KvmVcpu): void {
  const mmu = vcpu.mmu;
  const level = mmu.root_role.level;
  if (level >= PT64_ROOT_4LEVEL) {
    mmu.root.hpa = mmu_alloc_root(vcpu, 0, 0, level);
  } else {
    const pae = pae_root(vcpu);
    for (let i = 0; i < 4; i++) {
      const root = mmu_alloc_root(vcpu, i * 2 ** 18, 0, PT32_ROOT_LEVEL);
      pae[i] = BigInt(root) | PT_PRESENT_MASK;
    }
    mmu.root.hpa = mmu.pae_root * 4096;
  }
  mmu.root.pgd = 0n;
}

/** `mmu_alloc_shadow_roots`. */
function mmu_alloc_shadow_roots(vcpu: KvmVcpu): void {
  const mmu = vcpu.mmu;
  const root_pgd = kvm_mmu_get_guest_pgd(vcpu);
  let root_gfn = Number((root_pgd & PT_BASE_ADDR_MASK) >> 12n);
  if (!kvm_vcpu_is_visible_gfn(vcpu, root_gfn)) {
    mmu.root.hpa = kvm_mmu_get_dummy_root(vcpu.kvm);
    mmu.root.pgd = root_pgd;
    return;
  }
  const pdptrs = [0n, 0n, 0n, 0n];
  if (mmu.cpu_role.base.level === PT32E_ROOT_LEVEL) {
    for (let i = 0; i < 4; i++) {
      pdptrs[i] = mmu.pdptrs[i]!;
      if ((pdptrs[i]! & PT_PRESENT_MASK) === 0n) continue;
      if (!kvm_vcpu_is_visible_gfn(vcpu, Number(pdptrs[i]! >> 12n))) pdptrs[i] = 0n;
    }
  }
  if (mmu.root_role.level >= PT64_ROOT_4LEVEL) {
    mmu.root.hpa = mmu_alloc_root(vcpu, root_gfn, 0, mmu.root_role.level);
    mmu.root.pgd = root_pgd;
    return;
  }
  const pae = pae_root(vcpu);
  for (let i = 0; i < 4; i++) {
    if (mmu.cpu_role.base.level === PT32E_ROOT_LEVEL) {
      const pdptr = pdptrs[i]!;
      if ((pdptr & PT_PRESENT_MASK) === 0n) {
        pae[i] = INVALID_PAE_ROOT;
        continue;
      }
      root_gfn = Number((pdptr & PT_BASE_ADDR_MASK) >> 12n);
    }
    const quadrant = mmu.cpu_role.base.level === PT32_ROOT_LEVEL ? i : 0;
    const root = mmu_alloc_root(vcpu, root_gfn, quadrant, PT32_ROOT_LEVEL);
    pae[i] = BigInt(root) | PT_PRESENT_MASK;
  }
  mmu.root.hpa = mmu.pae_root * 4096;
  mmu.root.pgd = root_pgd;
}

/**
 * `kvm_mmu_load`: allocates the roots, syncs them, loads the hardware CR3 and flushes the
 * current TLB context.
 */
export function kvm_mmu_load(vcpu: KvmVcpu): void {
  if (vcpu.mmu.root_role.direct) mmu_alloc_direct_roots(vcpu);
  else mmu_alloc_shadow_roots(vcpu);
  kvm_mmu_sync_roots(vcpu);
  vcpu.kvm.event(vcpu.vcpu_id, () => `load root 0x${vcpu.mmu.root.hpa.toString(16)}`);
  kvm_vcpu_flush_tlb_current(vcpu);
}

/** `kvm_mmu_reload`: loads the roots if the current one is invalid. */
export function kvm_mmu_reload(vcpu: KvmVcpu): void {
  if (vcpu.mmu.root.hpa === INVALID_PAGE) kvm_mmu_load(vcpu);
}

// ---------------------------------------------------------------------------------------------
// Freeing
// ---------------------------------------------------------------------------------------------

/** `mmu_free_root_page`: drops one root reference; an invalid root with no users is freed. */
function mmu_free_root_page(kvm: Kvm, hpa: number): void {
  if (hpa === INVALID_PAGE || is_dummy_root(kvm, hpa)) return;
  const sp = root_to_sp(kvm, hpa);
  if (!sp) return;
  if (--sp.root_count === 0 && sp.role.invalid) free_invalid_root(kvm, sp);
}

/** Which roots `kvm_mmu_free_roots` frees. */
export interface RootsToFree {
  readonly current: boolean;
  readonly previous: readonly number[];
}

/** `KVM_MMU_ROOTS_ALL`. */
export const KVM_MMU_ROOTS_ALL: RootsToFree = { current: true, previous: [0, 1, 2] };

/** `kvm_mmu_free_roots`. */
export function kvm_mmu_free_roots(kvm: Kvm, mmu: KvmMmu, roots: RootsToFree): void {
  for (const i of roots.previous) {
    const prev = mmu.prev_roots[i]!;
    mmu_free_root_page(kvm, prev.hpa);
    mmu.prev_roots[i] = { hpa: INVALID_PAGE, pgd: 0n };
  }
  if (!roots.current || mmu.root.hpa === INVALID_PAGE) return;
  if (mmu.root.hpa === mmu.pae_root * 4096) {
    const pae = kvm.host.page(mmu.pae_root);
    for (let i = 0; i < 4; i++) {
      if ((pae[i]! & PT_PRESENT_MASK) !== 0n) {
        mmu_free_root_page(kvm, Number(pae[i]! & SPTE_BASE_ADDR_MASK));
      }
      pae[i] = INVALID_PAE_ROOT;
    }
  } else {
    mmu_free_root_page(kvm, mmu.root.hpa);
  }
  mmu.root = { hpa: INVALID_PAGE, pgd: 0n };
}

/** `kvm_mmu_unload`: frees every root of the vCPU. */
export function kvm_mmu_unload(vcpu: KvmVcpu): void {
  kvm_mmu_free_roots(vcpu.kvm, vcpu.mmu, KVM_MMU_ROOTS_ALL);
}

/**
 * `is_obsolete_root`: a root without a shadow page (the dummy root, a `pae_root`) counts as
 * obsolete, since its freshness cannot be told (KVM reloads such roots, a false positive).
 */
function is_obsolete_root(kvm: Kvm, hpa: number): boolean {
  if (hpa === INVALID_PAGE) return false;
  const sp = root_to_sp(kvm, hpa);
  return !sp || is_obsolete_sp(kvm, sp);
}

/** `kvm_mmu_free_obsolete_roots` (`__kvm_mmu_free_obsolete_roots`). */
export function kvm_mmu_free_obsolete_roots(vcpu: KvmVcpu): void {
  const kvm = vcpu.kvm;
  const mmu = vcpu.mmu;
  const current = is_obsolete_root(kvm, mmu.root.hpa);
  const previous = [0, 1, 2].filter((i) => is_obsolete_root(kvm, mmu.prev_roots[i]!.hpa));
  if (current || previous.length > 0) kvm_mmu_free_roots(kvm, mmu, { current, previous });
}

// ---------------------------------------------------------------------------------------------
// prev_roots and MOV CR3
// ---------------------------------------------------------------------------------------------

/** `is_root_usable`. */
function is_root_usable(
  kvm: Kvm,
  root: KvmMmuRootInfo,
  pgd: bigint,
  role: KvmMmuPageRole,
): boolean {
  if (!role.direct && pgd !== root.pgd) return false;
  if (root.hpa === INVALID_PAGE) return false;
  const sp = root_to_sp(kvm, root.hpa);
  return !!sp && roleWord(role) === sp.roleWord;
}

/** `cached_root_find_and_keep_current`: rotates the LRU cache looking for a usable root. */
function cached_root_find_and_keep_current(
  kvm: Kvm,
  mmu: KvmMmu,
  new_pgd: bigint,
  new_role: KvmMmuPageRole,
): boolean {
  if (is_root_usable(kvm, mmu.root, new_pgd, new_role)) return true;
  for (let i = 0; i < KVM_MMU_NUM_PREV_ROOTS; i++) {
    const t = mmu.root;
    mmu.root = mmu.prev_roots[i]!;
    mmu.prev_roots[i] = t;
    if (is_root_usable(kvm, mmu.root, new_pgd, new_role)) return true;
  }
  kvm_mmu_free_roots(kvm, mmu, { current: true, previous: [] });
  return false;
}

/** `cached_root_find_without_current`. */
function cached_root_find_without_current(
  kvm: Kvm,
  mmu: KvmMmu,
  new_pgd: bigint,
  new_role: KvmMmuPageRole,
): boolean {
  let i = 0;
  for (; i < KVM_MMU_NUM_PREV_ROOTS; i++) {
    if (is_root_usable(kvm, mmu.prev_roots[i]!, new_pgd, new_role)) break;
  }
  if (i === KVM_MMU_NUM_PREV_ROOTS) return false;
  const t = mmu.root;
  mmu.root = mmu.prev_roots[i]!;
  mmu.prev_roots[i] = t;
  // Bubble the freed slot (the old, invalid current root) to the end of the LRU list.
  for (; i < KVM_MMU_NUM_PREV_ROOTS - 1; i++) {
    const u = mmu.prev_roots[i]!;
    mmu.prev_roots[i] = mmu.prev_roots[i + 1]!;
    mmu.prev_roots[i + 1] = u;
  }
  return true;
}

/** `fast_pgd_switch`: only roots backed by a shadow page (4/5-level guests) are cached. */
function fast_pgd_switch(
  kvm: Kvm,
  mmu: KvmMmu,
  new_pgd: bigint,
  new_role: KvmMmuPageRole,
): boolean {
  if (mmu.root.hpa !== INVALID_PAGE && !root_to_sp(kvm, mmu.root.hpa)) {
    kvm_mmu_free_roots(kvm, mmu, { current: true, previous: [] });
  }
  if (mmu.root.hpa !== INVALID_PAGE) {
    return cached_root_find_and_keep_current(kvm, mmu, new_pgd, new_role);
  }
  return cached_root_find_without_current(kvm, mmu, new_pgd, new_role);
}

/**
 * `kvm_mmu_new_pgd`: switches to a cached root for `new_pgd` if one is usable (and asks for a
 * hardware CR3 load); otherwise the current root is freed and `kvm_mmu_reload` builds a new one
 * before the next entry.
 */
export function kvm_mmu_new_pgd(vcpu: KvmVcpu, new_pgd: bigint): void {
  const mmu = vcpu.mmu;
  if (!fast_pgd_switch(vcpu.kvm, mmu, new_pgd, mmu.root_role)) return;
  vcpu.kvm.count("root_reuses");
  vcpu.kvm_make_request("KVM_REQ_LOAD_MMU_PGD");
  vcpu_clear_mmio_info(vcpu, null);
  if (!mmu.root_role.direct) {
    const sp = root_to_sp(vcpu.kvm, mmu.root.hpa);
    if (sp) sp.write_flooding_count = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Sync and TLB flushes
// ---------------------------------------------------------------------------------------------

/** The child shadow page of a `pae_root` entry. */
function pae_root_sp(kvm: Kvm, entry: bigint): KvmMmuPage | undefined {
  if ((entry & PT_PRESENT_MASK) === 0n) return undefined;
  return root_to_sp(kvm, Number(entry & SPTE_BASE_ADDR_MASK));
}

/**
 * `kvm_mmu_sync_roots`: forgets the cached MMIO gva (the guest's mappings may have changed),
 * then syncs the unsync pages reachable from the current root.
 */
export function kvm_mmu_sync_roots(vcpu: KvmVcpu): void {
  const kvm = vcpu.kvm;
  const mmu = vcpu.mmu;
  if (mmu.root_role.direct || mmu.root.hpa === INVALID_PAGE) return;
  vcpu_clear_mmio_info(vcpu, null);
  if (is_dummy_root(kvm, mmu.root.hpa)) return;
  if (mmu.cpu_role.base.level >= PT64_ROOT_4LEVEL) {
    if (!is_unsync_root(kvm, mmu.root.hpa)) return;
    mmu_sync_children(vcpu, root_to_sp(kvm, mmu.root.hpa)!, true);
    return;
  }
  const pae = kvm.host.page(mmu.pae_root);
  for (let i = 0; i < 4; i++) {
    const sp = pae_root_sp(kvm, pae[i]!);
    if (sp) mmu_sync_children(vcpu, sp, true);
  }
}

/** `kvm_mmu_sync_prev_roots`: frees the previous roots that have unsync pages. */
export function kvm_mmu_sync_prev_roots(vcpu: KvmVcpu): void {
  const previous = [0, 1, 2].filter((i) => is_unsync_root(vcpu.kvm, vcpu.mmu.prev_roots[i]!.hpa));
  if (previous.length > 0) kvm_mmu_free_roots(vcpu.kvm, vcpu.mmu, { current: false, previous });
}

/**
 * `kvm_vcpu_flush_tlb_current` (VMX without EPT: `vpid_sync_context`, which flushes every
 * linear translation of the vCPU's VPID).
 */
export function kvm_vcpu_flush_tlb_current(vcpu: KvmVcpu): void {
  vcpu.kvm.count("local_tlb_flushes");
  vcpu.tlb.flushAll();
}

/** `kvm_vcpu_flush_tlb_guest`: with shadow paging, sync current and previous roots, then flush. */
export function kvm_vcpu_flush_tlb_guest(vcpu: KvmVcpu): void {
  kvm_mmu_sync_roots(vcpu);
  kvm_mmu_sync_prev_roots(vcpu);
  vcpu.kvm.count("local_tlb_flushes");
  vcpu.tlb.flushAll();
}

/** `__kvm_mmu_invalidate_addr`: syncs the unsync leaf SPTE for `addr` under one root. */
function __kvm_mmu_invalidate_addr(vcpu: KvmVcpu, addr: bigint, root_hpa: number): void {
  vcpu_clear_mmio_info(vcpu, addr);
  if (root_hpa === INVALID_PAGE || is_dummy_root(vcpu.kvm, root_hpa)) return;
  vcpu.kvm.locked(() => sync_addr(vcpu, addr, root_hpa));
}

/** The per-address sync of {@link __kvm_mmu_invalidate_addr}, under `mmu_lock`. */
function sync_addr(vcpu: KvmVcpu, addr: bigint, root_hpa: number): void {
  const kvm = vcpu.kvm;
  for (const it = new ShadowWalkIterator(vcpu, root_hpa, addr); it.okay(); it.next()) {
    const sp = sptep_to_sp(kvm, it.sptep);
    if (sp.unsync && !kvm.bug("invlpg_no_sync")) {
      const ret = kvm_sync_spte(vcpu, sp, it.index);
      if (ret < 0) {
        const invalid_list: KvmMmuPage[] = [];
        mmu_page_zap_pte(kvm, sp, it.sptep, invalid_list);
        kvm_mmu_commit_zap_page(kvm, invalid_list);
      }
      if (ret !== 0) kvm_flush_remote_tlbs(kvm);
    }
    if (sp.unsync_children === 0) break;
  }
}

/**
 * `kvm_mmu_invalidate_addr`: the hardware flush of `addr` first (`flush_tlb_gva`), then the
 * per-address sync on the selected roots. A direct MMU has no `sync_spte`.
 */
export function kvm_mmu_invalidate_addr(vcpu: KvmVcpu, addr: bigint, roots: RootsToFree): void {
  if (roots.current) vcpu.tlb.flushGva(Number(addr >> 12n));
  if (vcpu.mmu.root_role.direct) return;
  if (roots.current) __kvm_mmu_invalidate_addr(vcpu, addr, vcpu.mmu.root.hpa);
  for (const i of roots.previous) {
    __kvm_mmu_invalidate_addr(vcpu, addr, vcpu.mmu.prev_roots[i]!.hpa);
  }
}

/** `kvm_mmu_invlpg`. */
export function kvm_mmu_invlpg(vcpu: KvmVcpu, gva: bigint): void {
  vcpu.kvm.count("invlpg");
  kvm_mmu_invalidate_addr(vcpu, gva, KVM_MMU_ROOTS_ALL);
}
