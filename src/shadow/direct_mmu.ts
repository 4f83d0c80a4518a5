/**
 * The direct MMU of a shadow-paging vCPU with CR0.PG=0 (`mmu.c`: `nonpaging_page_fault`,
 * `direct_page_fault`, `direct_map`, `direct_pte_prefetch`, and the lockless
 * `fast_page_fault`).
 *
 * With TDP off, a nonpaging guest is the only user of a direct root (`root_role.direct`): the
 * guest's linear address is its physical address, and KVM maps it through four PAE-format
 * roots of direct shadow pages (`mmu_alloc_direct_roots`). Because the gfn of a direct SPTE is
 * fixed by its position, a write fault on an SPTE that was write-protected only for dirty
 * logging (MMU-writable still set) can be fixed without `mmu_lock` by a compare-and-exchange
 * (`fast_page_fault`). A paging guest never takes that path: "fast page fault only works for
 * direct mapping since the gfn is not stable for indirect shadow page".
 *
 * The lockless path is written as separately named steps (`walk_shadow_page_lockless_begin`,
 * `mmu_spte_get_lockless`, `try_cmpxchg64`, `mark_page_dirty_in_slot`,
 * `walk_shadow_page_lockless_end`); the SPTE reads and the cmpxchg are atomic steps where the
 * scheduler (`scheduler.ts`) may run other threads, and the compare-and-exchange fails exactly
 * when the SPTE changed since it was read.
 *
 * Version: mmu.c ~v6.10 (`fast_page_fault` retry loop, `page_fault_can_be_fast`), with the
 * v6.12 return code for write-tracked gfns (`RET_PF_WRITE_PROTECTED` instead of
 * `RET_PF_EMULATE`). Not modelled: the NX-huge-page workaround (`disallowed_hugepage_adjust`),
 * private memory, A/D-disabled SPTEs (access tracking), async page faults.
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { KVM_HPAGE_GFN_SHIFT, PG_LEVEL_2M, PG_LEVEL_4K } from "./kvm_memslots.ts";
import { spte_index } from "./mmu_page.ts";
import { ACC_ALL } from "./mmu_role.ts";
import {
  EEXIST,
  kvm_mmu_page_get_gfn,
  link_shadow_page,
  mmu_spte_get_lockless,
  sptep_to_sp,
} from "./mmu.ts";
import {
  is_page_fault_stale,
  kvm_mmu_faultin_pfn,
  kvm_mmu_get_child_sp,
  kvm_mmu_hugepage_adjust,
  type KvmPageFault,
  mmu_set_spte,
  page_fault_handle_page_track,
  type RetPf,
} from "./page_fault.ts";
import { is_dummy_root, ShadowWalkIterator } from "./mmu_roots.ts";
import { __direct_pte_prefetch } from "./paging_tmpl_mmu.ts";
import {
  is_last_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  is_writable_pte,
  PT_PRESENT_MASK,
  PT_WRITABLE_MASK,
  shadow_nx_mask,
} from "./spte.ts";

// ---------------------------------------------------------------------------------------------
// Lockless shadow walks
// ---------------------------------------------------------------------------------------------

/**
 * `walk_shadow_page_lockless_begin` (IRQs off, `vcpu->mode = READING_SHADOW_PAGE_TABLES`, full
 * barrier): until the end, no shadow page is freed (`Kvm.free_shadow_pages` waits, as KVM's
 * remote flush waits for the vCPU's IPI).
 */
export function walk_shadow_page_lockless_begin(vcpu: KvmVcpu): void {
  if (vcpu.reading_shadow_page_tables) {
    throw new Error(`vcpu ${vcpu.vcpu_id}: nested walk_shadow_page_lockless_begin`);
  }
  vcpu.reading_shadow_page_tables = true;
}

/**
 * `walk_shadow_page_lockless_end` (`vcpu->mode = OUTSIDE_GUEST_MODE`): shadow pages whose free
 * waited for this walk go now.
 */
export function walk_shadow_page_lockless_end(vcpu: KvmVcpu): void {
  if (!vcpu.reading_shadow_page_tables) {
    throw new Error(`vcpu ${vcpu.vcpu_id}: walk_shadow_page_lockless_end without begin`);
  }
  vcpu.reading_shadow_page_tables = false;
  vcpu.kvm.free_shadow_pages();
}

/** True while `vcpu` is between `walk_shadow_page_lockless_begin` and `_end`. */
export function is_reading_shadow_page_tables(vcpu: KvmVcpu): boolean {
  return vcpu.reading_shadow_page_tables;
}

/** One entry visited by {@link for_each_shadow_entry_lockless}. */
export interface LocklessShadowEntry {
  readonly sptep: number;
  readonly level: number;
  readonly spte: bigint;
}

/**
 * `for_each_shadow_entry_lockless(vcpu, addr, it, spte)`: the SPTEs on the current root's path
 * for `addr`, top down, each read once. The walk stops after a leaf or a non-present SPTE
 * (`__shadow_walk_next`), and yields nothing when the root or its PAE entry is invalid. Must
 * run between `walk_shadow_page_lockless_begin/end`.
 */
export function* for_each_shadow_entry_lockless(
  vcpu: KvmVcpu,
  addr: bigint,
): Generator<LocklessShadowEntry, void, void> {
  const kvm = vcpu.kvm;
  for (const it = new ShadowWalkIterator(vcpu, vcpu.mmu.root.hpa, addr); it.okay();) {
    const spte = mmu_spte_get_lockless(kvm, it.sptep);
    yield { sptep: it.sptep, level: it.level, spte };
    // __shadow_walk_next: a non-present SPTE ends the walk like a leaf does.
    if (!is_shadow_present_pte(spte)) break;
    it.next(spte);
  }
}

// ---------------------------------------------------------------------------------------------
// fast_page_fault
// ---------------------------------------------------------------------------------------------

/**
 * `page_fault_can_be_fast`: not a reserved-bit fault (an MMIO SPTE with a stale generation
 * needs the slow path) and a write to a present SPTE. The other case KVM allows, a non-present
 * SPTE with A/D bits disabled by KVM (access tracking), never applies: legacy shadow paging
 * always has A/D bits.
 */
export function page_fault_can_be_fast(fault: KvmPageFault): boolean {
  if (fault.rsvd) return false;
  if (!fault.present) return false; // !kvm_ad_enabled() is false
  return fault.write; // fetches and writes are exclusive, so exec need not be checked
}

/** `is_executable_pte` for legacy shadow paging (`shadow_x_mask` = 0): NX clear. */
function is_executable_pte(spte: bigint): boolean {
  return (spte & shadow_nx_mask) === 0n;
}

/**
 * `is_access_allowed`: the SPTE already permits the faulting access (fetch → executable,
 * write → writable, read → present).
 */
export function is_access_allowed(fault: KvmPageFault, spte: bigint): boolean {
  if (fault.exec) return is_executable_pte(spte);
  if (fault.write) return is_writable_pte(spte);
  return (spte & PT_PRESENT_MASK) !== 0n;
}

/**
 * `fast_pf_get_last_sptep`: the last SPTE on the lockless walk for `addr` (possibly
 * non-present), or null when no walk could be done.
 */
function fast_pf_get_last_sptep(
  vcpu: KvmVcpu,
  addr: bigint,
): { sptep: number; spte: bigint } | null {
  let last: { sptep: number; spte: bigint } | null = null;
  for (const e of for_each_shadow_entry_lockless(vcpu, addr)) {
    last = { sptep: e.sptep, spte: e.spte };
  }
  return last;
}

/**
 * Atomic step "cmpxchg SPTE": `try_cmpxchg64(sptep, &old, new)`. Stores `new_spte` only if the
 * SPTE still holds `old_spte` (re-read here, so a change made between the lockless read and
 * this step makes it fail).
 */
function try_cmpxchg64(kvm: Kvm, sptep: number, old_spte: bigint, new_spte: bigint): boolean {
  kvm.atomicStep("fast_page_fault:cmpxchg", sptep);
  if (kvm.host.read64(sptep) !== old_spte) return false;
  kvm.host.write64(sptep, new_spte);
  return true;
}

/**
 * `fast_pf_fix_direct_spte`: the cmpxchg, then, when W went 0 → 1, atomic step "mark dirty":
 * the gfn goes to the slot's dirty bitmap. Returns false when the SPTE changed under us.
 *
 * The gfn is `kvm_mmu_page_get_gfn(sp, spte_index(sptep))` (the pre-6.x form); 6.x uses
 * `fault->gfn`. Both name the same gfn for a 4K SPTE, and W is only added to a huge SPTE when
 * the slot is not dirty-logged, where marking does nothing.
 */
function fast_pf_fix_direct_spte(
  vcpu: KvmVcpu,
  fault: KvmPageFault,
  sptep: number,
  old_spte: bigint,
  new_spte: bigint,
): boolean {
  const kvm = vcpu.kvm;
  if (!try_cmpxchg64(kvm, sptep, old_spte, new_spte)) return false;
  if (is_writable_pte(new_spte) && !is_writable_pte(old_spte)) {
    const sp = sptep_to_sp(kvm, sptep);
    kvm.mark_page_dirty_in_slot(fault.slot, kvm_mmu_page_get_gfn(sp, spte_index(sptep)));
  }
  return true;
}

/**
 * `fast_page_fault`: fixes a write fault on an SPTE that was write-protected only for dirty
 * logging (MMU-writable set, W clear) by setting W with a cmpxchg, without `mmu_lock`.
 * Returns `RET_PF_SPURIOUS` when the SPTE already allows the access, `RET_PF_FIXED` when it was
 * fixed, and `RET_PF_INVALID` to take the slow path. A non-MMU-writable SPTE (the gfn is
 * shadowed, or the memslot/host page is read-only) is never made writable here. At most five
 * attempts (`++retry_count > 4`).
 */
export function fast_page_fault(vcpu: KvmVcpu, fault: KvmPageFault): RetPf {
  const kvm = vcpu.kvm;
  if (!kvm.features.fastPageFault) return "RET_PF_INVALID";
  if (!page_fault_can_be_fast(fault)) return "RET_PF_INVALID";
  let ret: RetPf = "RET_PF_INVALID";
  let retry_count = 0;
  walk_shadow_page_lockless_begin(vcpu);
  try {
    for (;;) {
      const last = fast_pf_get_last_sptep(vcpu, fault.addr);
      // No walk at all (invalid root): KVM WARNs and treats the SPTE as removed.
      if (!last || !is_shadow_present_pte(last.spte)) break;
      const { sptep, spte } = last;
      const sp = sptep_to_sp(kvm, sptep);
      if (!is_last_spte(spte, sp.role.level)) break;
      // A TLB flushed lazily, or another vCPU fixed the SPTE after this one faulted. The upper
      // levels of a direct walk are ACC_ALL, so only the leaf needs checking.
      if (is_access_allowed(fault, spte)) {
        ret = "RET_PF_SPURIOUS";
        break;
      }
      let new_spte = spte;
      if (fault.write && (is_mmu_writable_spte(spte) || kvm.bug("fast_pf_ignores_mmu_writable"))) {
        new_spte |= PT_WRITABLE_MASK;
        // Only the first 4K of a huge SPTE would be logged: let the slow path map 4K pages.
        if (sp.role.level > PG_LEVEL_4K && fault.slot?.dirtyTrackEnabled) break;
      }
      if (new_spte === spte || !is_access_allowed(fault, new_spte)) break;
      if (fast_pf_fix_direct_spte(vcpu, fault, sptep, spte, new_spte)) {
        ret = "RET_PF_FIXED";
        break;
      }
      kvm.count("fast_pf_retries");
      if (++retry_count > 4) break;
    }
  } finally {
    walk_shadow_page_lockless_end(vcpu);
  }
  if (ret === "RET_PF_FIXED") {
    kvm.count("fast_pf_fixed");
    kvm.event(vcpu.vcpu_id, () => `fast pf fixed addr=0x${fault.addr.toString(16)}`);
  } else if (ret === "RET_PF_SPURIOUS") {
    kvm.count("fast_pf_spurious");
    kvm.event(vcpu.vcpu_id, () => `fast pf spurious addr=0x${fault.addr.toString(16)}`);
  }
  return ret;
}

// ---------------------------------------------------------------------------------------------
// The slow path
// ---------------------------------------------------------------------------------------------

/** `gfn_round_for_level`. */
function gfn_round_for_level(gfn: number, level: number): number {
  const pages = 2 ** KVM_HPAGE_GFN_SHIFT(level);
  return gfn - (gfn % pages);
}

/**
 * `direct_pte_prefetch`: maps the non-present neighbours of a new 4K SPTE in its aligned
 * 8-entry window (not for huge SPTEs, nor during an mmu-notifier invalidation).
 */
function direct_pte_prefetch(vcpu: KvmVcpu, sptep: number): void {
  const kvm = vcpu.kvm;
  if (!kvm.features.prefetch) return;
  const sp = sptep_to_sp(kvm, sptep);
  if (sp.role.level > PG_LEVEL_4K) return;
  if (kvm.mmu_invalidate_in_progress > 0) return;
  __direct_pte_prefetch(vcpu, sp, sptep);
}

/**
 * `direct_map`: builds the direct shadow path for `fault.addr` down to `goal_level` (direct
 * children with `ACC_ALL`, reusing a link only when it points at the right child) and installs
 * the leaf with `ACC_ALL`; then prefetches unless the fault was spurious.
 */
export function direct_map(vcpu: KvmVcpu, fault: KvmPageFault): RetPf {
  const kvm = vcpu.kvm;
  let base_gfn = fault.gfn;
  kvm_mmu_hugepage_adjust(vcpu, fault);
  const it = new ShadowWalkIterator(vcpu, vcpu.mmu.root.hpa, fault.addr);
  for (; it.okay(); it.next()) {
    base_gfn = gfn_round_for_level(fault.gfn, it.level);
    if (it.level === fault.goal_level) break;
    const sp = kvm_mmu_get_child_sp(vcpu, it.sptep, base_gfn, true, ACC_ALL);
    if (sp === EEXIST) continue;
    link_shadow_page(kvm, it.sptep, sp);
  }
  // WARN_ON_ONCE(it.level != fault->goal_level) → -EFAULT in KVM.
  if (it.level !== fault.goal_level) {
    throw new Error(`direct_map stopped at level ${it.level}, goal ${fault.goal_level}`);
  }
  const ret = mmu_set_spte(vcpu, fault.slot, it.sptep, ACC_ALL, base_gfn, fault.pfn, fault);
  if (ret === "RET_PF_SPURIOUS") return ret;
  direct_pte_prefetch(vcpu, it.sptep);
  return ret;
}

/**
 * `direct_page_fault` for the nonpaging MMU: gva == gpa (the caller passes the 32-bit
 * effective address). A present write to a write-tracked gfn (a guest page table that still
 * has upper-level shadow pages from an earlier paging phase) cannot be fixed here; otherwise
 * the fast path, then the pfn, a staleness check under `mmu_lock`, and `direct_map`.
 */
export function direct_page_fault(vcpu: KvmVcpu, fault: KvmPageFault): RetPf {
  const kvm = vcpu.kvm;
  // Dummy roots only shadow bad guest roots; a direct MMU never has one (WARN in KVM).
  if (is_dummy_root(kvm, vcpu.mmu.root.hpa)) return "RET_PF_RETRY";
  fault.gfn = Number(fault.addr >> 12n);
  fault.slot = kvm.gfn_to_memslot(fault.gfn);
  if (page_fault_handle_page_track(vcpu, fault)) return "RET_PF_WRITE_PROTECTED";
  let r = fast_page_fault(vcpu, fault);
  if (r !== "RET_PF_INVALID") return r;
  r = kvm_mmu_faultin_pfn(vcpu, fault, ACC_ALL);
  if (r !== "RET_PF_CONTINUE") return r;
  return kvm.locked(() => {
    if (is_page_fault_stale(vcpu, fault)) return "RET_PF_RETRY";
    return direct_map(vcpu, fault);
  });
}

/**
 * `nonpaging_page_fault` (`mmu->page_fault` when CR0.PG=0): the direct tables are PAE-format,
 * so at most 2 MiB pages.
 */
export function nonpaging_page_fault(vcpu: KvmVcpu, fault: KvmPageFault): RetPf {
  fault.max_level = PG_LEVEL_2M;
  return direct_page_fault(vcpu, fault);
}
