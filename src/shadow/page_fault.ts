/**
 * The page-fault path shared by the shadow and direct MMUs (`mmu.c`): `struct kvm_page_fault`,
 * `RET_PF_*`, `kvm_mmu_get_child_sp`, `make_spte` (spte.c), `mmu_set_spte`,
 * `kvm_mmu_faultin_pfn`, `kvm_mmu_hugepage_adjust`, `page_fault_handle_page_track`,
 * `is_page_fault_stale`.
 *
 * Not modelled: the NX-huge-page mitigation (`nx_huge_pages` off), async page faults, private
 * memory, `make_mmu_pages_available` (the page budget is unlimited; "random zap" exercises
 * zapping instead).
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { KVM_MAX_HUGEPAGE_LEVEL, type KvmMemorySlot, PG_LEVEL_4K } from "./kvm_memslots.ts";
import {
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  kvm_mmu_child_role,
  roleWord,
} from "./mmu_role.ts";
import type { KvmMmuPage } from "./mmu_page.ts";
import { spte_index } from "./mmu_page.ts";
import {
  drop_parent_pte,
  drop_spte,
  EEXIST,
  get_spte,
  kvm_flush_remote_tlbs,
  kvm_mmu_get_shadow_page,
  kvm_mmu_page_set_access,
  mmu_spte_update,
  mmu_try_to_unsync_pages,
  rmap_add,
  sptep_to_sp,
} from "./mmu.ts";
import {
  is_large_pte,
  is_mmio_spte,
  is_shadow_present_pte,
  is_writable_pte,
  PT_PAGE_SIZE_MASK,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
  shadow_accessed_mask,
  shadow_dirty_mask,
  shadow_host_writable_mask,
  shadow_mmu_writable_mask,
  shadow_nx_mask,
  shadow_present_mask,
  SPTE_MMU_PRESENT_MASK,
  spte_to_pfn,
} from "./spte.ts";
import { mark_mmio_spte, vcpu_cache_mmio_info } from "./mmio.ts";
import { shadow_mmio_access_mask } from "./spte.ts";

/** `RET_PF_*`. */
export type RetPf =
  | "RET_PF_CONTINUE"
  | "RET_PF_RETRY"
  | "RET_PF_EMULATE"
  | "RET_PF_WRITE_PROTECTED"
  | "RET_PF_INVALID"
  | "RET_PF_FIXED"
  | "RET_PF_SPURIOUS";

/** `KVM_PFN_NOSLOT`: no memslot (MMIO). */
export const KVM_PFN_NOSLOT = -1;
/** `KVM_PFN_ERR_RO_FAULT`: a write fault on a read-only memslot. */
export const KVM_PFN_ERR_RO_FAULT = -2;

/** `struct kvm_page_fault`. */
export interface KvmPageFault {
  readonly addr: bigint;
  readonly error_code: number;
  readonly exec: boolean;
  readonly write: boolean;
  readonly present: boolean;
  readonly rsvd: boolean;
  readonly user: boolean;
  readonly prefetch: boolean;
  max_level: number;
  req_level: number;
  goal_level: number;
  gfn: number;
  slot: KvmMemorySlot | undefined;
  pfn: number;
  map_writable: boolean;
  write_fault_to_shadow_pgtable: boolean;
  /** `mmu_invalidate_seq` sampled when the pfn was faulted in. */
  mmu_seq: number;
}

/** Builds a fault (`kvm_mmu_do_page_fault`). */
export function new_page_fault(addr: bigint, error_code: number, prefetch = false): KvmPageFault {
  return {
    addr,
    error_code,
    exec: (error_code & 16) !== 0,
    write: (error_code & 2) !== 0,
    present: (error_code & 1) !== 0,
    rsvd: (error_code & 8) !== 0,
    user: (error_code & 4) !== 0,
    prefetch,
    max_level: KVM_MAX_HUGEPAGE_LEVEL,
    req_level: PG_LEVEL_4K,
    goal_level: PG_LEVEL_4K,
    gfn: 0,
    slot: undefined,
    pfn: 0,
    map_writable: false,
    write_fault_to_shadow_pgtable: false,
    mmu_seq: 0,
  };
}

/**
 * `kvm_mmu_get_child_sp` (2026 semantics, 0cb2af2ea66a): reuse the existing link only when it
 * points at a child with the same gfn and role; otherwise find or create the child (linking it
 * zaps what was there). Returns `EEXIST` when the link is reused.
 */
export function kvm_mmu_get_child_sp(
  vcpu: KvmVcpu,
  sptep: number,
  gfn: number,
  direct: boolean,
  access: number,
): KvmMmuPage | typeof EEXIST {
  const kvm = vcpu.kvm;
  const parent = sptep_to_sp(kvm, sptep);
  const role = kvm_mmu_child_role(parent.role, spte_index(sptep), direct, access);
  // A wrong quadrant: both halves of a 1024-entry guest table get the first half's shadow page.
  if (role.has_4_byte_gpte && kvm.bug("child_quadrant_ignored")) role.quadrant = 0;
  const spte = get_spte(kvm, sptep);
  if (is_shadow_present_pte(spte) && !is_large_pte(spte)) {
    const child = kvm.spOfPfn.get(spte_to_pfn(spte));
    if (child && child.gfn === gfn && child.roleWord === roleWord(role)) return EEXIST;
  }
  return kvm_mmu_get_shadow_page(vcpu, gfn, role);
}

/**
 * `make_spte` (spte.c, 2026 text): builds a leaf SPTE. Returns `wrprot` (W was wanted but the
 * gfn could not be unsynced) and the new SPTE. A prefetched SPTE (not synchronizing) starts
 * with A clear; a writable SPTE always gets D (6.13+); a writable SPTE in a dirty-logged slot
 * marks the gfn dirty.
 */
export function make_spte(
  vcpu: KvmVcpu,
  sp: KvmMmuPage,
  slot: KvmMemorySlot | undefined,
  pte_access: number,
  gfn: number,
  pfn: number,
  old_spte: bigint,
  prefetch: boolean,
  synchronizing: boolean,
  host_writable: boolean,
): { wrprot: boolean; spte: bigint } {
  const level = sp.role.level;
  let spte = SPTE_MMU_PRESENT_MASK | shadow_present_mask;
  let wrprot = false;
  if (!prefetch || synchronizing) spte |= shadow_accessed_mask;
  if ((pte_access & ACC_EXEC_MASK) === 0) spte |= shadow_nx_mask;
  if (pte_access & ACC_USER_MASK) spte |= PT_USER_MASK;
  if (level > PG_LEVEL_4K) spte |= PT_PAGE_SIZE_MASK;
  if (host_writable) spte |= shadow_host_writable_mask;
  else pte_access &= ~ACC_WRITE_MASK;
  spte |= BigInt(pfn) << 12n;
  // Instrumentation: a stale MMIO SPTE turned into a RAM mapping. Its access bits include
  // PT_WRITABLE_MASK for a writable gpte, so the check below skips mmu_try_to_unsync_pages.
  if (is_mmio_spte(old_spte)) {
    vcpu.kvm.count("mmio_spte_replaced");
    vcpu.kvm.event(vcpu.vcpu_id, () => `mmio spte replaced gfn=0x${gfn.toString(16)}`);
  }
  if (pte_access & ACC_WRITE_MASK) {
    spte |= PT_WRITABLE_MASK | shadow_mmu_writable_mask;
    if (!is_writable_pte(old_spte) && slot) {
      if (mmu_try_to_unsync_pages(vcpu.kvm, slot, gfn, synchronizing, prefetch) !== 0) {
        wrprot = true;
        pte_access &= ~ACC_WRITE_MASK;
        spte &= ~(PT_WRITABLE_MASK | shadow_mmu_writable_mask);
      }
    }
  }
  if (pte_access & ACC_WRITE_MASK) spte |= shadow_dirty_mask;
  // mark_spte_for_access_track: with A/D enabled, "not accessed yet".
  if (prefetch && !synchronizing) spte &= ~shadow_accessed_mask;
  if ((spte & PT_WRITABLE_MASK) !== 0n && slot?.dirtyTrackEnabled) {
    if (level > PG_LEVEL_4K) throw new Error("make_spte: huge writable spte in a logged slot");
    vcpu.kvm.mark_page_dirty_in_slot(slot, gfn);
  }
  return { wrprot, spte };
}

/**
 * `mmu_set_spte`: installs a leaf (or MMIO) SPTE at `sptep`. `fault` null means prefetch or
 * sync (host-writable, prefetch). Returns `RET_PF_FIXED`, `RET_PF_SPURIOUS`, `RET_PF_EMULATE`
 * (MMIO) or `RET_PF_WRITE_PROTECTED` (a write fault on a gfn that could not be unsynced).
 */
export function mmu_set_spte(
  vcpu: KvmVcpu,
  slot: KvmMemorySlot | undefined,
  sptep: number,
  pte_access: number,
  gfn: number,
  pfn: number,
  fault: KvmPageFault | null,
): RetPf {
  const kvm = vcpu.kvm;
  const sp = sptep_to_sp(kvm, sptep);
  const level = sp.role.level;
  let was_rmapped = false;
  let ret: RetPf = "RET_PF_FIXED";
  let flush = false;
  const host_writable = !fault || fault.map_writable;
  const prefetch = !fault || fault.prefetch;
  const write_fault = !!fault && fault.write;
  const old = get_spte(kvm, sptep);
  if (pfn === KVM_PFN_NOSLOT && kvm.bug("mmio_spte_over_present_spte")) {
    // Before aad885e77496: the MMIO SPTE simply overwrites whatever was there.
    mark_mmio_spte(vcpu, sptep, gfn, pte_access);
    return "RET_PF_EMULATE";
  }
  if (is_shadow_present_pte(old)) {
    if (level > PG_LEVEL_4K && !is_large_pte(old)) {
      const child = kvm.spOfPfn.get(spte_to_pfn(old));
      if (child) drop_parent_pte(kvm, child, sptep);
      flush = true;
    } else if (pfn !== spte_to_pfn(old)) {
      drop_spte(kvm, sptep);
      flush = true;
    } else {
      was_rmapped = true;
    }
  }
  if (pfn === KVM_PFN_NOSLOT) {
    // aad885e77496 (2026): the present SPTE was zapped above before the MMIO SPTE is written.
    mark_mmio_spte(vcpu, sptep, gfn, pte_access);
    if (flush) kvm_flush_remote_tlbs(kvm);
    return "RET_PF_EMULATE";
  }
  const made = make_spte(
    vcpu,
    sp,
    slot,
    pte_access,
    gfn,
    pfn,
    get_spte(kvm, sptep),
    prefetch,
    false,
    host_writable,
  );
  if (get_spte(kvm, sptep) === made.spte) ret = "RET_PF_SPURIOUS";
  else flush = mmu_spte_update(kvm, sptep, made.spte) || flush;
  if (made.wrprot && write_fault) ret = "RET_PF_WRITE_PROTECTED";
  if (flush) kvm_flush_remote_tlbs(kvm);
  if (!was_rmapped) {
    if (!slot) throw new Error("mmu_set_spte: a RAM pfn without a memslot");
    rmap_add(vcpu, slot, sptep, gfn, pte_access);
  } else {
    kvm_mmu_page_set_access(sp, spte_index(sptep), pte_access);
  }
  return ret;
}

/**
 * `kvm_mmu_faultin_pfn` (with `kvm_handle_noslot_fault` and the RO-fault handling of
 * `kvm_handle_error_pfn`): fills `fault.pfn` and `fault.map_writable`.
 */
export function kvm_mmu_faultin_pfn(vcpu: KvmVcpu, fault: KvmPageFault, access: number): RetPf {
  const kvm = vcpu.kvm;
  fault.mmu_seq = kvm.mmu_invalidate_seq;
  const slot = fault.slot;
  if (!slot) {
    // kvm_handle_noslot_fault: cache the MMIO info; an MMIO SPTE is created by mmu_set_spte.
    fault.pfn = KVM_PFN_NOSLOT;
    fault.map_writable = false;
    vcpu_cache_mmio_info(vcpu, fault.addr, fault.gfn, access & Number(shadow_mmio_access_mask));
    if (fault.gfn >= 2 ** 39) return "RET_PF_EMULATE"; // above the host's MMIO SPTE gpa range
    return "RET_PF_CONTINUE";
  }
  if (fault.write && slot.readOnly) {
    fault.pfn = KVM_PFN_ERR_RO_FAULT;
    return "RET_PF_EMULATE";
  }
  fault.pfn = kvm.ram.pfnOf(fault.gfn);
  fault.map_writable = !slot.readOnly;
  return "RET_PF_CONTINUE";
}

/** `kvm_mmu_max_mapping_level`: the largest level the memslot and the host allow for `gfn`. */
function kvm_mmu_max_mapping_level(
  vcpu: KvmVcpu,
  slot: KvmMemorySlot,
  gfn: number,
  max_level: number,
): number {
  let level = Math.min(max_level, vcpu.kvm.ram.hostMappingLevel(gfn));
  if (vcpu.kvm.bug("hugepage_ignores_disallow_lpage")) return level;
  for (; level > PG_LEVEL_4K; level--) {
    if (slot.disallowLpage(gfn, level) === 0) break;
  }
  return level;
}

/** `kvm_mmu_hugepage_adjust`: picks `goal_level` (and aligns the pfn). */
export function kvm_mmu_hugepage_adjust(vcpu: KvmVcpu, fault: KvmPageFault): void {
  fault.goal_level = PG_LEVEL_4K;
  fault.req_level = PG_LEVEL_4K;
  if (fault.max_level === PG_LEVEL_4K) return;
  if (fault.pfn < 0 || !fault.slot) return;
  if (fault.slot.dirtyTrackEnabled) return;
  fault.req_level = kvm_mmu_max_mapping_level(vcpu, fault.slot, fault.gfn, fault.max_level);
  if (fault.req_level === PG_LEVEL_4K) return;
  fault.goal_level = fault.req_level;
  const pages = 2 ** ((fault.goal_level - 1) * 9);
  fault.pfn -= fault.pfn % pages;
}

/**
 * `page_fault_handle_page_track`: a present write fault on a write-tracked gfn (an upper-level
 * table KVM shadows) cannot be fixed by mapping it writable.
 */
export function page_fault_handle_page_track(vcpu: KvmVcpu, fault: KvmPageFault): boolean {
  if (fault.rsvd || !fault.present || !fault.write) return false;
  return vcpu.kvm.kvm_gfn_is_write_tracked(fault.gfn);
}

/**
 * `is_page_fault_stale`: an obsolete root; a root without a shadow page (`pae_root`, the dummy
 * root) while a request to free obsolete roots is pending; or an mmu-notifier invalidation
 * that raced with the fault.
 */
export function is_page_fault_stale(vcpu: KvmVcpu, fault: KvmPageFault): boolean {
  const kvm = vcpu.kvm;
  const sp = kvm.spOfPfn.get(Math.floor(vcpu.mmu.root.hpa / 4096));
  if (sp && (sp.role.invalid || sp.mmu_valid_gen !== kvm.mmu_valid_gen)) return true;
  if (!sp && vcpu.requests.has("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS")) return true;
  return kvm.mmu_invalidate_in_progress > 0 || fault.mmu_seq !== kvm.mmu_invalidate_seq;
}
