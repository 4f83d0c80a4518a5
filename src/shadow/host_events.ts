/**
 * Host-side events (the VMM's ioctls and the host kernel's mm): dirty logging on a memslot
 * (`kvm_mmu_slot_apply_flags`, `kvm_get_dirty_log_protect`), memslot creation and deletion
 * (`kvm_set_memslot`: the generation bump that retires MMIO SPTEs, `kvm_mmu_zap_all_fast` on
 * deletion), an mmu-notifier invalidation (`kvm_mmu_notifier_invalidate_range_start/end` around
 * `kvm_unmap_gfn_range`, after which the host migrates the pages), and the harness's random
 * zap of one shadow page.
 *
 * Each returns what the VMM sees; none of them is visible to the guest unless the MMU is wrong.
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import { KvmMemorySlot } from "./kvm_memslots.ts";
import {
  kvm_flush_remote_tlbs,
  kvm_mmu_commit_zap_page,
  kvm_mmu_prepare_zap_page,
  kvm_mmu_slot_remove_write_access,
  kvm_mmu_write_protect_gfns_for_log,
  kvm_mmu_zap_all_fast,
  kvm_unmap_gfn_range,
} from "./mmu.ts";
import type { KvmMmuPage } from "./mmu_page.ts";

/**
 * `KVM_SET_USER_MEMORY_REGION` changing only `KVM_MEM_LOG_DIRTY_PAGES`: a flags-only update
 * (generation bump), then `kvm_mmu_slot_apply_flags`. Turning logging on write-protects the
 * slot's SPTEs and flushes; turning it off frees the bitmap (KVM would also rebuild huge pages
 * lazily, `kvm_mmu_recover_huge_pages`, which is not modelled: 4K SPTEs simply stay). Returns
 * false when the slot does not exist.
 */
export function kvm_mmu_slot_apply_flags(kvm: Kvm, id: number, log_dirty: boolean): boolean {
  const slot = kvm.memslots.byId(id);
  if (!slot) return false;
  if (slot.dirtyTrackEnabled === log_dirty) return true;
  kvm.memslots.generation += 2;
  kvm.event(null, () => `slot ${id}: dirty logging ${log_dirty ? "on" : "off"}`);
  if (!log_dirty) {
    slot.dirty_bitmap = null;
    return true;
  }
  slot.dirty_bitmap = new Set();
  if (!kvm.bug("dirty_log_enable_no_write_protect")) kvm_mmu_slot_remove_write_access(kvm, slot);
  return true;
}

/**
 * `kvm_get_dirty_log_protect` (`KVM_GET_DIRTY_LOG` without manual protect): takes the bitmap,
 * write-protects every harvested gfn again (MMU-writable kept) and flushes before returning.
 * A slot without logging returns an empty log (KVM: -ENOENT).
 */
export function kvm_get_dirty_log_protect(kvm: Kvm, id: number): number[] {
  const slot = kvm.memslots.byId(id);
  if (!slot || !slot.dirty_bitmap) return [];
  const bitmap = slot.dirty_bitmap;
  kvm.count("dirty_log_harvests");
  // Under mmu_lock: take the bitmap and write-protect what it held; the flush comes after the
  // unlock, before the log is returned, as in KVM.
  const gfns = kvm.locked(() => {
    const taken = [...bitmap].sort((a, b) => a - b);
    bitmap.clear();
    if (taken.length > 0) kvm_mmu_write_protect_gfns_for_log(kvm, slot, taken);
    return taken;
  });
  if (gfns.length > 0 && !kvm.bug("dirty_log_clear_no_flush")) kvm_flush_remote_tlbs(kvm);
  return gfns;
}

/**
 * `kvm_set_memslot(KVM_MR_CREATE)`: fails (-EEXIST) when the id is used or the range overlaps.
 * The generation bump retires every MMIO SPTE of the old layout.
 */
export function kvm_set_memslot_create(
  kvm: Kvm,
  id: number,
  base_gfn: number,
  npages: number,
  readOnly: boolean,
): boolean {
  const clash = kvm.memslots.slots.some((s) =>
    s.id === id || (base_gfn < s.base_gfn + s.npages && s.base_gfn < base_gfn + npages)
  );
  if (clash) return false;
  kvm.memslots.install(new KvmMemorySlot(id, base_gfn, npages, readOnly));
  kvm.event(null, () => `slot ${id} created at gfn 0x${base_gfn.toString(16)} (+${npages})`);
  return true;
}

/**
 * `kvm_set_memslot(KVM_MR_DELETE)`: the slot is marked invalid (generation bump), every shadow
 * page is zapped (`kvm_arch_flush_shadow_memslot` → `kvm_mmu_zap_all_fast`), then the slot is
 * removed (another bump).
 */
export function kvm_set_memslot_delete(kvm: Kvm, id: number): boolean {
  if (!kvm.memslots.byId(id)) return false;
  kvm.memslots.generation += 1; // KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS while invalid
  if (!kvm.bug("memslot_delete_no_zap")) kvm_mmu_zap_all_fast(kvm);
  kvm.memslots.generation -= 1;
  kvm.memslots.remove(id);
  kvm.event(null, () => `slot ${id} deleted`);
  return true;
}

/**
 * An mmu-notifier invalidation of guest frames `[gfn, gfn + npages)`:
 * `invalidate_range_start` (in-progress count, `kvm_unmap_gfn_range` per slot, remote flush),
 * the host migrating every backed page to a new host page (the old one is poisoned), then
 * `invalidate_range_end` (sequence bump).
 */
export function kvm_mmu_notifier_invalidate_range(kvm: Kvm, gfn: number, npages: number): void {
  kvm.count("host_unmaps");
  kvm.mmu_invalidate_in_progress++;
  let flush = false;
  for (const slot of kvm.memslots.slots) {
    const start = Math.max(gfn, slot.base_gfn);
    const end = Math.min(gfn + npages, slot.base_gfn + slot.npages);
    if (start < end) flush = kvm_unmap_gfn_range(kvm, slot, start, end) || flush;
  }
  if (flush) kvm_flush_remote_tlbs(kvm);
  for (let g = gfn; g < gfn + npages; g++) kvm.ram.migrate(g);
  kvm.mmu_invalidate_seq++;
  kvm.mmu_invalidate_in_progress--;
  kvm.event(null, () => `mmu notifier: unmapped gfn 0x${gfn.toString(16)} (+${npages})`);
}

/**
 * The harness's random zap: `kvm_mmu_prepare_zap_page` + `kvm_mmu_commit_zap_page` of the
 * valid shadow page `pick` (modulo their number, in `active_mmu_pages` order). Returns the
 * page zapped, or null when there is none.
 */
export function kvm_mmu_zap_random_sp(kvm: Kvm, pick: number): KvmMmuPage | null {
  const valid = kvm.active_mmu_pages.filter((sp) => !sp.role.invalid);
  if (valid.length === 0) return null;
  const sp = valid[pick % valid.length]!;
  kvm.count("random_zaps");
  const invalid_list: KvmMmuPage[] = [];
  kvm_mmu_prepare_zap_page(kvm, sp, invalid_list);
  kvm_mmu_commit_zap_page(kvm, invalid_list);
  return sp;
}
