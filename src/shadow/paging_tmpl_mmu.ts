/**
 * The shadow-building half of `paging_tmpl.h`: `FNAME(page_fault)`, `FNAME(fetch)`,
 * `FNAME(gpte_changed)`, `FNAME(pte_prefetch)`/`FNAME(prefetch_gpte)` and `FNAME(sync_spte)`.
 * The guest walker itself is `paging_tmpl.ts`; the template parameter is the `PttypeDesc`.
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { PG_LEVEL_4K } from "./kvm_memslots.ts";
import type { KvmMmuPage } from "./mmu_page.ts";
import { spte_index } from "./mmu_page.ts";
import {
  ACC_ALL,
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  PT32_ROOT_LEVEL,
  PT32E_ROOT_LEVEL,
} from "./mmu_role.ts";
import {
  drop_spte,
  EEXIST,
  get_spte,
  kvm_mmu_page_get_access,
  kvm_mmu_page_get_gfn,
  kvm_mmu_page_set_access,
  link_shadow_page,
  mmu_spte_clear_no_track,
  mmu_spte_update,
  mmu_sync_children,
  sptep_to_sp,
  validate_direct_spte,
} from "./mmu.ts";
import {
  FNAME_is_rsvd_bits_set,
  gpte_access,
  gpte_to_gfn,
  type GuestWalker,
  is_present_gpte,
  paging_tmpl_for,
  prefetch_invalid_gpte,
  protect_clean_gpte,
  PT_GUEST_ACCESSED_MASK,
  PTE_PREFETCH_NUM,
  type PttypeDesc,
  walk_addr,
} from "./paging_tmpl.ts";
import { kvm_vcpu_read_guest_atomic, walkerGuestAccess, walkerVcpu } from "./guest_access.ts";
import {
  is_page_fault_stale,
  kvm_mmu_faultin_pfn,
  kvm_mmu_get_child_sp,
  kvm_mmu_hugepage_adjust,
  type KvmPageFault,
  make_spte,
  mmu_set_spte,
  page_fault_handle_page_track,
  type RetPf,
} from "./page_fault.ts";
import { is_dummy_root, ShadowWalkIterator } from "./mmu_roots.ts";
import {
  get_mmio_spte_gfn,
  is_mmio_spte,
  is_shadow_present_pte,
  shadow_host_writable_mask,
  spte_to_pfn,
} from "./spte.ts";
import { mark_mmio_spte } from "./mmio.ts";
import { kvm_inject_emulated_page_fault } from "./exceptions.ts";
import { PFERR_RSVD_MASK } from "./guest_metadata.ts";

/** The template of the vCPU's current MMU (paging32 or paging64). */
function desc_of(vcpu: KvmVcpu): PttypeDesc {
  const desc = paging_tmpl_for(vcpu.mmu.cpu_role);
  if (!desc) throw new Error("a paging template was used with CR0.PG=0");
  return desc;
}

/**
 * `FNAME(prefetch_invalid_gpte)` with its side effect: an invalid gpte (not present, A=0,
 * reserved bits) drops the SPTE.
 */
function prefetch_invalid_gpte_drop(
  vcpu: KvmVcpu,
  desc: PttypeDesc,
  sptep: number,
  gpte: bigint,
): boolean {
  let invalid = prefetch_invalid_gpte(desc, vcpu.mmu, gpte);
  if (invalid && vcpu.kvm.bug("prefetch_ignores_accessed")) {
    invalid = !is_present_gpte(gpte) || FNAME_is_rsvd_bits_set(vcpu.mmu, gpte, PG_LEVEL_4K);
  }
  if (invalid && vcpu.kvm.bug("prefetch_ignores_reserved")) {
    invalid = !is_present_gpte(gpte) || (gpte & PT_GUEST_ACCESSED_MASK) === 0n;
  }
  if (!invalid) return false;
  drop_spte(vcpu.kvm, sptep);
  return true;
}

/** `FNAME(get_level1_sp_gpa)`. */
function get_level1_sp_gpa(desc: PttypeDesc, sp: KvmMmuPage): number {
  const offset = desc.PTTYPE === 32 ? sp.role.quadrant * 512 : 0;
  return sp.gfn * 4096 + offset * desc.PTE_SIZE;
}

/**
 * `FNAME(gpte_changed)`: re-reads the gpte the walk used at `level` (at level 1 the aligned
 * 8-gpte prefetch window, into `gw.prefetch_ptes`).
 */
function gpte_changed(vcpu: KvmVcpu, desc: PttypeDesc, gw: GuestWalker, level: number): boolean {
  const kvm = vcpu.kvm;
  const pte_gpa = gw.pte_gpa[level - 1]!;
  let curr: bigint | null;
  if (level === PG_LEVEL_4K) {
    const size = desc.PTE_SIZE;
    const base_gpa = pte_gpa - (pte_gpa % (PTE_PREFETCH_NUM * size));
    const index = (pte_gpa - base_gpa) / size;
    let failed = false;
    for (let i = 0; i < PTE_PREFETCH_NUM; i++) {
      const v = kvm_vcpu_read_guest_atomic(kvm, base_gpa + i * size, size);
      if (v === null) failed = true;
      gw.prefetch_ptes[i] = v ?? 0n;
    }
    curr = failed ? null : gw.prefetch_ptes[index]!;
  } else {
    curr = kvm_vcpu_read_guest_atomic(kvm, pte_gpa, desc.PTE_SIZE);
  }
  if (kvm.bug("fetch_skips_gpte_changed")) return false;
  return curr === null || curr !== gw.ptes[level - 1];
}

/** `FNAME(prefetch_gpte)`. */
function prefetch_gpte(
  vcpu: KvmVcpu,
  desc: PttypeDesc,
  sp: KvmMmuPage,
  sptep: number,
  gpte: bigint,
  no_dirty_log: boolean,
): boolean {
  if (prefetch_invalid_gpte_drop(vcpu, desc, sptep, gpte)) return false;
  const gfn = gpte_to_gfn(desc, gpte);
  const upper = vcpu.kvm.bug("prefetch_ignores_upper_access") ? ACC_ALL : sp.role.access;
  const pte_access = protect_clean_gpte(upper & gpte_access(desc, gpte), gpte);
  // gfn_to_memslot_dirty_bitmap: no writable prefetch into a dirty-logged slot.
  const slot = vcpu.kvm.gfn_to_memslot(gfn);
  // gfn_to_pfn_memslot_atomic asks for a writable mapping: a read-only slot is never prefetched.
  if (!slot || slot.readOnly) return false;
  if (no_dirty_log && (pte_access & ACC_WRITE_MASK) && slot.dirtyTrackEnabled) return false;
  const pfn = vcpu.kvm.ram.pfnOf(gfn);
  mmu_set_spte(vcpu, slot, sptep, pte_access, gfn, pfn, null);
  vcpu.kvm.count("prefetched_sptes");
  return true;
}

/** `FNAME(pte_prefetch)`: the aligned 8-entry window around the faulting SPTE. */
function pte_prefetch(vcpu: KvmVcpu, desc: PttypeDesc, gw: GuestWalker, sptep: number): void {
  const kvm = vcpu.kvm;
  if (!kvm.features.prefetch) return;
  const sp = sptep_to_sp(kvm, sptep);
  if (sp.role.level > PG_LEVEL_4K) return;
  if (kvm.mmu_invalidate_in_progress > 0) return;
  if (sp.role.direct) {
    __direct_pte_prefetch(vcpu, sp, sptep);
    return;
  }
  const first = spte_index(sptep) & ~(PTE_PREFETCH_NUM - 1);
  for (let i = 0; i < PTE_PREFETCH_NUM; i++) {
    const spte = sp.sptep(first + i);
    if (spte === sptep) continue;
    if (is_shadow_present_pte(get_spte(kvm, spte))) continue;
    const gpte = kvm.bug("prefetch_window_off_by_one")
      ? gw.prefetch_ptes[(i + 1) % PTE_PREFETCH_NUM]!
      : gw.prefetch_ptes[i]!;
    if (!prefetch_gpte(vcpu, desc, sp, spte, gpte, true)) break;
  }
}

/**
 * `__direct_pte_prefetch`: maps runs of non-present entries of a direct level-1 page, with
 * the page's access; skipped when they would be writable in a dirty-logged slot.
 */
export function __direct_pte_prefetch(vcpu: KvmVcpu, sp: KvmMmuPage, sptep: number): void {
  const kvm = vcpu.kvm;
  const first = spte_index(sptep) & ~(PTE_PREFETCH_NUM - 1);
  for (let i = first; i < first + PTE_PREFETCH_NUM; i++) {
    const spte = sp.sptep(i);
    if (spte === sptep || is_shadow_present_pte(get_spte(kvm, spte))) continue;
    const gfn = kvm_mmu_page_get_gfn(sp, i);
    const slot = kvm.gfn_to_memslot(gfn);
    // gfn_to_page_many_atomic (kvm_prefetch_pages) wants a writable hva: not in a ROM slot.
    if (!slot || slot.readOnly) break;
    if ((sp.role.access & ACC_WRITE_MASK) && slot.dirtyTrackEnabled) break;
    mmu_set_spte(vcpu, slot, spte, sp.role.access, gfn, kvm.ram.pfnOf(gfn), null);
    kvm.count("prefetched_sptes");
  }
}

/** `FNAME(fetch)`: builds the shadow path for the walked translation and sets the leaf. */
function fetch(vcpu: KvmVcpu, desc: PttypeDesc, fault: KvmPageFault, gw: GuestWalker): RetPf {
  const kvm = vcpu.kvm;
  // 5fd5387c89ec: the direct sp under a large gpte takes the large gpte's own rights too.
  const direct_access = kvm.bug("direct_sp_access_ignores_leaf_w")
    ? gw.pt_access[gw.level - 1]!
    : gw.pte_access;
  // d28c6cfbbc5e: the access is part of the direct sp's role (its lookup key).
  const direct_role_access = kvm.bug("direct_sp_role_ignores_access") ? ACC_ALL : direct_access;
  let top_level = vcpu.mmu.cpu_role.base.level;
  if (top_level === PT32E_ROOT_LEVEL) top_level = PT32_ROOT_LEVEL;
  if (gpte_changed(vcpu, desc, gw, top_level)) return "RET_PF_RETRY";
  // The guest root became visible (a memslot was created) after the dummy root was loaded:
  // load a new root and retry.
  if (is_dummy_root(kvm, vcpu.mmu.root.hpa)) {
    vcpu.kvm_make_request("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS");
    return "RET_PF_RETRY";
  }
  const it = new ShadowWalkIterator(vcpu, vcpu.mmu.root.hpa, fault.addr);
  for (; it.okay(); it.next()) {
    const sp_here = sptep_to_sp(kvm, it.sptep);
    sp_here.write_flooding_count = 0; // clear_sp_write_flooding_count
    if (it.level === gw.level) break;
    const table_gfn = gw.table_gfn[it.level - 2]!;
    const access = gw.pt_access[it.level - 2]!;
    const sp = kvm_mmu_get_child_sp(vcpu, it.sptep, table_gfn, false, access);
    if (sp !== EEXIST) {
      // Sync before linking: the guest need not flush when a gpte goes non-present → present.
      if (sp.unsync_children > 0 && mmu_sync_children(vcpu, sp, false) !== 0) return "RET_PF_RETRY";
    }
    if (gpte_changed(vcpu, desc, gw, it.level - 1)) return "RET_PF_RETRY";
    if (sp !== EEXIST) link_shadow_page(kvm, it.sptep, sp);
    if (fault.write && table_gfn === fault.gfn) fault.write_fault_to_shadow_pgtable = true;
  }
  // Adjust the huge-page size only after the indirect pages exist (their disallow_lpage).
  kvm_mmu_hugepage_adjust(vcpu, fault);
  let base_gfn = fault.gfn;
  for (; it.okay(); it.next()) {
    base_gfn = fault.gfn - (fault.gfn % 2 ** ((it.level - 1) * 9));
    if (it.level === fault.goal_level) break;
    validate_direct_spte(kvm, it.sptep, direct_role_access);
    const sp = kvm_mmu_get_child_sp(vcpu, it.sptep, base_gfn, true, direct_role_access);
    if (sp === EEXIST) continue;
    link_shadow_page(kvm, it.sptep, sp);
  }
  if (it.level !== fault.goal_level) throw new Error(`fetch stopped at level ${it.level}`);
  const ret = mmu_set_spte(vcpu, fault.slot, it.sptep, gw.pte_access, base_gfn, fault.pfn, fault);
  if (ret === "RET_PF_SPURIOUS") return ret;
  pte_prefetch(vcpu, desc, gw, it.sptep);
  return ret;
}

/** `FNAME(page_fault)`. */
export function FNAME_page_fault(vcpu: KvmVcpu, fault: KvmPageFault): RetPf {
  const desc = desc_of(vcpu);
  const kvm = vcpu.kvm;
  const walker = walk_addr(
    desc,
    walkerVcpu(vcpu, fault.user ? 3 : 0),
    walkerGuestAccess(kvm),
    fault.addr,
    fault.error_code & ~PFERR_RSVD_MASK,
  );
  kvm.count("walker_retries", walker.retries);
  if (walker.fault) {
    if (!fault.prefetch) kvm_inject_emulated_page_fault(vcpu, walker.fault);
    return "RET_PF_RETRY";
  }
  fault.gfn = walker.gfn;
  fault.slot = kvm.gfn_to_memslot(fault.gfn);
  if (page_fault_handle_page_track(vcpu, fault)) return "RET_PF_WRITE_PROTECTED";
  fault.max_level = walker.level;
  const r = kvm_mmu_faultin_pfn(vcpu, fault, walker.pte_access);
  if (r !== "RET_PF_CONTINUE") return r;
  // CR0.WP=0: turn the user page into a kernel page so the supervisor write can proceed.
  if (
    fault.write && !(walker.pte_access & ACC_WRITE_MASK) && !vcpu.mmu.cpu_role.base.cr0_wp &&
    !fault.user && fault.slot
  ) {
    walker.pte_access |= ACC_WRITE_MASK;
    walker.pte_access &= ~ACC_USER_MASK;
    if (vcpu.mmu.cpu_role.ext.cr4_smep && !kvm.bug("wp0_spte_keeps_exec_under_smep")) {
      walker.pte_access &= ~ACC_EXEC_MASK;
    }
  }
  return kvm.locked(() => {
    if (is_page_fault_stale(vcpu, fault)) return "RET_PF_RETRY";
    return fetch(vcpu, desc, fault, walker);
  });
}

/**
 * `FNAME(sync_spte)` (6.4+): re-derives SPTE `i` of an unsync/synced level-1 page from its
 * gpte. Returns <0 to zap the page, >0 when a flush is needed, 0 otherwise.
 */
export function FNAME_sync_spte(vcpu: KvmVcpu, sp: KvmMmuPage, i: number): number {
  const kvm = vcpu.kvm;
  const desc = desc_of(vcpu);
  const sptep = sp.sptep(i);
  const pte_gpa = get_level1_sp_gpa(desc, sp) + i * desc.PTE_SIZE;
  const gpte = kvm_vcpu_read_guest_atomic(kvm, pte_gpa, desc.PTE_SIZE);
  if (gpte === null) return -1;
  if (prefetch_invalid_gpte_drop(vcpu, desc, sptep, gpte)) {
    kvm.count("sync_spte_dropped");
    return 1;
  }
  const gfn = gpte_to_gfn(desc, gpte);
  const pte_access = protect_clean_gpte(sp.role.access & gpte_access(desc, gpte), gpte);
  const old = get_spte(kvm, sptep);
  if (is_mmio_spte(old)) {
    // sync_mmio_spte
    if (gfn !== get_mmio_spte_gfn(old)) mmu_spte_clear_no_track(kvm, sptep);
    else mark_mmio_spte(vcpu, sptep, gfn, pte_access);
    return 0;
  }
  if (gfn !== kvm_mmu_page_get_gfn(sp, i)) {
    drop_spte(kvm, sptep);
    kvm.count("sync_spte_dropped");
    return 1;
  }
  if (kvm_mmu_page_get_access(sp, i) === pte_access || kvm.bug("sync_spte_keeps_access")) return 0;
  kvm_mmu_page_set_access(sp, i, pte_access);
  const host_writable = (old & shadow_host_writable_mask) !== 0n;
  const slot = kvm.gfn_to_memslot(gfn);
  const made = make_spte(
    vcpu,
    sp,
    slot,
    pte_access,
    gfn,
    spte_to_pfn(old),
    old,
    true,
    true,
    host_writable,
  );
  kvm.count("sync_spte_updated");
  return mmu_spte_update(kvm, sptep, made.spte) ? 1 : 0;
}
