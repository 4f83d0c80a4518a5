/**
 * The core of `arch/x86/kvm/mmu/mmu.c` for the legacy shadow MMU: SPTE updates, rmaps, shadow
 * page lookup/creation/linking, write tracking (`account_shadowed`), zapping
 * (prepare/commit with the remote TLB flush), write protection, and unsync/sync.
 *
 * Functions keep KVM's names and argument order where it helps a reader hold this next to the
 * kernel. An sptep is the host physical address of the SPTE (a number).
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { type KvmMemorySlot, PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K } from "./kvm_memslots.ts";
import { kvm_page_table_hashfn, KvmMmuPage, spte_index, sptep_pfn } from "./mmu_page.ts";
import { type KvmMmuPageRole, roleWord, roleWordIgnoringForSync } from "./mmu_role.ts";
import {
  is_large_pte,
  is_last_spte,
  is_mmio_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  is_writable_pte,
  leaf_spte_change_needs_tlb_flush,
  make_nonleaf_spte,
  PT_WRITABLE_MASK,
  shadow_mmu_writable_mask,
  SHADOW_NONPRESENT_VALUE,
  spte_needs_atomic_update,
  spte_to_pfn,
} from "./spte.ts";
import { FNAME_sync_spte } from "./paging_tmpl_mmu.ts";

/** `-EPERM`, `-EEXIST`, `-EINTR` as KVM returns them. */
export const EPERM = -1, EEXIST = -17, EINTR = -4;

// ---------------------------------------------------------------------------------------------
// SPTE access
// ---------------------------------------------------------------------------------------------

/** The shadow page an sptep lies in (`sptep_to_sp`). */
export function sptep_to_sp(kvm: Kvm, sptep: number): KvmMmuPage {
  const sp = kvm.spOfPfn.get(sptep_pfn(sptep));
  if (!sp) throw new Error(`sptep 0x${sptep.toString(16)} is not in a shadow page`);
  return sp;
}

/** Reads an SPTE (`READ_ONCE(*sptep)`) under `mmu_lock`. */
export function get_spte(kvm: Kvm, sptep: number): bigint {
  return kvm.host.read64(sptep);
}

const LOW = 0xffff_ffffn;
const HIGH = LOW << 32n;

/** Writes one 32-bit half of an SPTE (a 32-bit host's store). */
function write_half(kvm: Kvm, sptep: number, half: "low" | "high", spte: bigint): void {
  const cur = kvm.host.read64(sptep);
  const mask = half === "low" ? LOW : HIGH;
  kvm.host.write64(sptep, (cur & ~mask) | (spte & mask));
}

/** `count_spte_clear`: a lockless reader retries when a present SPTE was cleared meanwhile. */
function count_spte_clear(kvm: Kvm, sptep: number, spte: bigint): void {
  if (is_shadow_present_pte(spte)) return;
  sptep_to_sp(kvm, sptep).clear_spte_count++;
}

/**
 * `__set_spte` (non-present → present). 64-bit host: one store. 32-bit host (`splitSpte`): the
 * high half first, then atomic step "__set_spte:low" and the low half (with P), so the CPU never
 * sees a present SPTE with stale high bits.
 */
function __set_spte(kvm: Kvm, sptep: number, spte: bigint): void {
  if (!kvm.features.splitSpte) {
    kvm.host.write64(sptep, spte);
    return;
  }
  const [first, second] = kvm.bug("split_spte_set_low_first")
    ? ["low", "high"] as const
    : ["high", "low"] as const;
  write_half(kvm, sptep, first, spte);
  kvm.atomicStep(`__set_spte:${second}`, sptep);
  write_half(kvm, sptep, second, spte);
}

/**
 * `__update_clear_spte_fast`: a plain store, for SPTEs nothing else can change. 32-bit host:
 * the low half (P) first, atomic step "__update_clear_spte_fast:high", the high half, then
 * `count_spte_clear`.
 */
function __update_clear_spte_fast(kvm: Kvm, sptep: number, spte: bigint): void {
  if (!kvm.features.splitSpte) {
    kvm.host.write64(sptep, spte);
    return;
  }
  write_half(kvm, sptep, "low", spte);
  kvm.atomicStep("__update_clear_spte_fast:high", sptep);
  write_half(kvm, sptep, "high", spte);
  count_spte_clear(kvm, sptep, spte);
}

/**
 * `__update_clear_spte_slow`: an exchange that returns the SPTE as it is at the moment of the
 * write (with any A/D the CPU set since the caller read it). 32-bit host: xchg of the low half,
 * atomic step "__update_clear_spte_slow:high", then the high half and `count_spte_clear`.
 */
function __update_clear_spte_slow(kvm: Kvm, sptep: number, spte: bigint): bigint {
  const orig = kvm.host.read64(sptep);
  if (!kvm.features.splitSpte) {
    kvm.host.write64(sptep, spte);
    return orig;
  }
  write_half(kvm, sptep, "low", spte);
  kvm.atomicStep("__update_clear_spte_slow:high", sptep);
  const high = kvm.host.read64(sptep) & HIGH;
  write_half(kvm, sptep, "high", spte);
  count_spte_clear(kvm, sptep, spte);
  return high | (orig & LOW);
}

/**
 * `__get_spte_lockless` (`mmu_spte_get_lockless` outside `mmu_lock`). 64-bit host: one load.
 * 32-bit host: `clear_spte_count`, low half, atomic step "__get_spte_lockless:high", high half,
 * and a retry when the low half or the count changed (the SPTE was torn by a writer).
 */
export function mmu_spte_get_lockless(kvm: Kvm, sptep: number): bigint {
  kvm.atomicStep("__get_spte_lockless", sptep);
  if (!kvm.features.splitSpte) return kvm.host.read64(sptep);
  const sp = sptep_to_sp(kvm, sptep);
  for (let retries = 0;; retries++) {
    if (retries > 1000) throw new Error("__get_spte_lockless: writer never finished");
    const count = sp.clear_spte_count;
    const low = kvm.host.read64(sptep) & LOW;
    kvm.atomicStep("__get_spte_lockless:high", sptep);
    const high = kvm.host.read64(sptep) & HIGH;
    kvm.atomicStep("__get_spte_lockless:recheck", sptep);
    if (low === (kvm.host.read64(sptep) & LOW) && count === sp.clear_spte_count) return high | low;
    kvm.count("lockless_read_retries");
  }
}

/** `mmu_spte_set`: sets a not-present SPTE. */
export function mmu_spte_set(kvm: Kvm, sptep: number, new_spte: bigint): void {
  if (is_shadow_present_pte(get_spte(kvm, sptep))) {
    throw new Error("mmu_spte_set on a present spte");
  }
  __set_spte(kvm, sptep, new_spte);
}

/**
 * `mmu_spte_update_no_track`: updates a present SPTE and returns the old value. An SPTE whose
 * bits may change outside `mmu_lock` (`spte_needs_atomic_update`: fast page fault may set W,
 * the CPU may set D) is exchanged, so what changed after atomic step "mmu_spte_update:read" is
 * returned, not lost; any other is overwritten with a plain store.
 */
function mmu_spte_update_no_track(kvm: Kvm, sptep: number, new_spte: bigint): bigint {
  const old_spte = get_spte(kvm, sptep);
  if (!is_shadow_present_pte(old_spte)) {
    mmu_spte_set(kvm, sptep, new_spte);
    return old_spte;
  }
  kvm.atomicStep("mmu_spte_update:read", sptep);
  if (!spte_needs_atomic_update(old_spte)) {
    __update_clear_spte_fast(kvm, sptep, new_spte);
    return old_spte;
  }
  return __update_clear_spte_slow(kvm, sptep, new_spte);
}

/**
 * `mmu_spte_update`: updates an SPTE and returns true when the change needs a remote TLB flush
 * (MMU-writable was cleared).
 */
export function mmu_spte_update(kvm: Kvm, sptep: number, new_spte: bigint): boolean {
  const old_spte = mmu_spte_update_no_track(kvm, sptep, new_spte);
  if (!is_shadow_present_pte(old_spte)) return false;
  return leaf_spte_change_needs_tlb_flush(old_spte, new_spte);
}

/**
 * `mmu_spte_clear_track_bits`: zeroes a leaf SPTE and returns the old value (exchanged when it
 * may change under us, see {@link mmu_spte_update}).
 */
export function mmu_spte_clear_track_bits(kvm: Kvm, sptep: number): bigint {
  const old_spte = get_spte(kvm, sptep);
  kvm.atomicStep("mmu_spte_clear_track_bits:read", sptep);
  if (!spte_needs_atomic_update(old_spte)) {
    __update_clear_spte_fast(kvm, sptep, SHADOW_NONPRESENT_VALUE);
    return old_spte;
  }
  return __update_clear_spte_slow(kvm, sptep, SHADOW_NONPRESENT_VALUE);
}

/** `mmu_spte_clear_no_track`. */
export function mmu_spte_clear_no_track(kvm: Kvm, sptep: number): void {
  __update_clear_spte_fast(kvm, sptep, SHADOW_NONPRESENT_VALUE);
}

// ---------------------------------------------------------------------------------------------
// gfn and access of an SPTE; rmaps
// ---------------------------------------------------------------------------------------------

/** `kvm_mmu_page_get_gfn`. */
export function kvm_mmu_page_get_gfn(sp: KvmMmuPage, index: number): number {
  if (sp.role.passthrough) return sp.gfn;
  if (sp.shadowed_gfn) return sp.shadowed_gfn[index]!;
  return sp.gfn + index * 2 ** ((sp.role.level - 1) * 9);
}

/** `kvm_mmu_page_get_access`. */
export function kvm_mmu_page_get_access(sp: KvmMmuPage, index: number): number {
  if (sp.shadowed_access) return sp.shadowed_access[index]!;
  return sp.role.access;
}

/** `kvm_mmu_page_set_translation`. */
export function kvm_mmu_page_set_translation(
  sp: KvmMmuPage,
  index: number,
  gfn: number,
  access: number,
): void {
  if (sp.shadowed_gfn && sp.shadowed_access) {
    sp.shadowed_gfn[index] = gfn;
    sp.shadowed_access[index] = access;
    return;
  }
  if (gfn !== kvm_mmu_page_get_gfn(sp, index)) {
    throw new Error(`direct ${sp} entry ${index}: gfn 0x${gfn.toString(16)} does not fit`);
  }
}

/** `kvm_mmu_page_set_access`. */
export function kvm_mmu_page_set_access(sp: KvmMmuPage, index: number, access: number): void {
  kvm_mmu_page_set_translation(sp, index, kvm_mmu_page_get_gfn(sp, index), access);
}

/** `gfn_to_rmap`: the rmap head of `gfn` at `level` in `slot`. */
function gfn_to_rmap(slot: KvmMemorySlot, gfn: number, level: number): Set<number> {
  return slot.rmapHead(gfn, level);
}

/** `rmap_add`: records a new leaf SPTE in the rmap of its gfn. */
export function rmap_add(
  vcpu: KvmVcpu,
  slot: KvmMemorySlot,
  sptep: number,
  gfn: number,
  access: number,
): void {
  const sp = sptep_to_sp(vcpu.kvm, sptep);
  kvm_mmu_page_set_translation(sp, spte_index(sptep), gfn, access);
  gfn_to_rmap(slot, gfn, sp.role.level).add(sptep);
}

/** `rmap_remove`: recomputes the gfn of the SPTE and removes it from that rmap. */
function rmap_remove(kvm: Kvm, sptep: number): void {
  const sp = sptep_to_sp(kvm, sptep);
  const gfn = kvm_mmu_page_get_gfn(sp, spte_index(sptep));
  const slot = kvm.gfn_to_memslot(gfn);
  const head = slot ? gfn_to_rmap(slot, gfn, sp.role.level) : undefined;
  if (!head || !head.delete(sptep)) {
    throw new Error(
      `rmap_remove: sptep 0x${sptep.toString(16)} missing from gfn 0x${gfn.toString(16)}`,
    );
  }
}

/** `drop_spte`: clears a leaf SPTE and removes it from its rmap. */
export function drop_spte(kvm: Kvm, sptep: number): void {
  const old = mmu_spte_clear_track_bits(kvm, sptep);
  if (is_shadow_present_pte(old) && !is_mmio_spte(old)) rmap_remove(kvm, sptep);
}

// ---------------------------------------------------------------------------------------------
// Remote TLB flush
// ---------------------------------------------------------------------------------------------

/** `kvm_flush_remote_tlbs` ({@link Kvm.flush_remote_tlbs}). */
export function kvm_flush_remote_tlbs(kvm: Kvm): void {
  kvm.flush_remote_tlbs();
}

/** `kvm_flush_remote_tlbs_sptep`: the same, for the range of one SPTE. */
export function kvm_flush_remote_tlbs_sptep(kvm: Kvm, _sptep: number): void {
  kvm_flush_remote_tlbs(kvm);
}

// ---------------------------------------------------------------------------------------------
// Shadow page hash, allocation, accounting
// ---------------------------------------------------------------------------------------------

/** `is_obsolete_sp`. */
export function is_obsolete_sp(kvm: Kvm, sp: KvmMmuPage): boolean {
  return sp.role.invalid || sp.mmu_valid_gen !== kvm.mmu_valid_gen;
}

/** The valid shadow pages of `gfn` (`for_each_valid_sp` over the gfn's bucket). */
export function for_each_gfn_valid_sp(kvm: Kvm, gfn: number): KvmMmuPage[] {
  const bucket = kvm.mmu_page_hash.get(kvm_page_table_hashfn(gfn)) ?? [];
  return bucket.filter((sp) => sp.gfn === gfn && !is_obsolete_sp(kvm, sp));
}

/** `for_each_gfn_valid_sp_with_gptes`. */
export function for_each_gfn_valid_sp_with_gptes(kvm: Kvm, gfn: number): KvmMmuPage[] {
  return for_each_gfn_valid_sp(kvm, gfn).filter((sp) => sp.has_gptes);
}

/** `kvm_mmu_gfn_disallow_lpage` / `kvm_mmu_gfn_allow_lpage`. */
function update_gfn_disallow_lpage_count(slot: KvmMemorySlot, gfn: number, count: number): void {
  for (let level = PG_LEVEL_2M; level <= PG_LEVEL_1G; level++) {
    slot.updateDisallowLpage(gfn, level, count);
  }
}

/**
 * `account_shadowed`: the gfn now holds a guest page table KVM shadows. Huge pages over it are
 * disallowed and every leaf SPTE mapping it is write-protected (W and MMU-writable cleared);
 * for an upper-level table the gfn is also write-tracked, so it can never be unsynced.
 */
function account_shadowed(kvm: Kvm, sp: KvmMmuPage): void {
  kvm.indirect_shadow_pages++;
  const gfn = sp.gfn;
  const slot = kvm.gfn_to_memslot(gfn);
  if (!slot) return;
  if (sp.role.level > PG_LEVEL_4K) {
    kvm.gfn_write_track.set(gfn, (kvm.gfn_write_track.get(gfn) ?? 0) + 1);
  }
  update_gfn_disallow_lpage_count(slot, gfn, 1);
  const flush = kvm_mmu_slot_gfn_write_protect(kvm, slot, gfn, PG_LEVEL_4K);
  if (!flush || kvm.bug("rmap_write_protect_no_flush")) return;
  if (kvm.bug("flush_after_mmu_unlock") && kvm.mmu_lock_held) kvm.flush_after_unlock = true;
  else kvm_flush_remote_tlbs(kvm);
}

/** `unaccount_shadowed`. */
function unaccount_shadowed(kvm: Kvm, sp: KvmMmuPage): void {
  kvm.indirect_shadow_pages--;
  const gfn = sp.gfn;
  const slot = kvm.gfn_to_memslot(gfn);
  if (!slot) return;
  if (sp.role.level > PG_LEVEL_4K) {
    const n = (kvm.gfn_write_track.get(gfn) ?? 0) - 1;
    if (n < 0) throw new Error(`gfn_write_track underflow at 0x${gfn.toString(16)}`);
    if (n === 0) kvm.gfn_write_track.delete(gfn);
    else kvm.gfn_write_track.set(gfn, n);
  }
  update_gfn_disallow_lpage_count(slot, gfn, -1);
}

/** `kvm_mmu_alloc_shadow_page`. */
function kvm_mmu_alloc_shadow_page(kvm: Kvm, gfn: number, role: KvmMmuPageRole): KvmMmuPage {
  const pfn = kvm.host.allocKernelPage();
  const spt = kvm.host.page(pfn);
  spt.fill(SHADOW_NONPRESENT_VALUE);
  const sp = new KvmMmuPage(kvm.nextSpId++, gfn, role, roleWord(role), pfn, spt, kvm.mmu_valid_gen);
  kvm.spOfPfn.set(pfn, sp);
  kvm.active_mmu_pages.unshift(sp);
  const bucket = kvm_page_table_hashfn(gfn);
  const list = kvm.mmu_page_hash.get(bucket) ?? [];
  list.unshift(sp);
  kvm.mmu_page_hash.set(bucket, list);
  if (sp.has_gptes) account_shadowed(kvm, sp);
  kvm.count("sp_created");
  kvm.event(null, () => `alloc ${sp}`);
  return sp;
}

/**
 * `kvm_mmu_find_shadow_page`: an existing page for (gfn, role). An unsync leaf page of the gfn
 * is zapped when the gfn is now wanted as an upper-level table; an unsync page with the right
 * role is synced (it stays unsync).
 */
function kvm_mmu_find_shadow_page(
  vcpu: KvmVcpu,
  gfn: number,
  role: KvmMmuPageRole,
): KvmMmuPage | null {
  const kvm = vcpu.kvm;
  const word = roleWord(role);
  const invalid_list: KvmMmuPage[] = [];
  let found: KvmMmuPage | null = null;
  for (const sp of for_each_gfn_valid_sp(kvm, gfn)) {
    if (sp.roleWord !== word) {
      // The gfn is now an upper-level table: an unsync leaf page for it cannot stay unsync,
      // because the new page write-tracks the gfn.
      if (role.level > PG_LEVEL_4K && sp.unsync) kvm_mmu_prepare_zap_page(kvm, sp, invalid_list);
      continue;
    }
    if (sp.role.direct) {
      found = sp;
      break;
    }
    if (sp.unsync) {
      // kvm_sync_page: re-derive the SPTEs; the page stays unsync. On failure it is zapped and
      // a new page is allocated by the caller.
      if (kvm_sync_page(vcpu, sp, invalid_list) < 0) break;
      if (invalid_list.length > 0) kvm_flush_remote_tlbs(kvm);
    }
    sp.write_flooding_count = 0;
    found = sp;
    break;
  }
  kvm_mmu_commit_zap_page(kvm, invalid_list);
  if (found) kvm.count("sp_reused");
  return found;
}

/** `kvm_mmu_get_shadow_page`: find or allocate. */
export function kvm_mmu_get_shadow_page(
  vcpu: KvmVcpu,
  gfn: number,
  role: KvmMmuPageRole,
): KvmMmuPage {
  return kvm_mmu_find_shadow_page(vcpu, gfn, role) ??
    kvm_mmu_alloc_shadow_page(vcpu.kvm, gfn, role);
}

// ---------------------------------------------------------------------------------------------
// Linking and unlinking
// ---------------------------------------------------------------------------------------------

/** `mark_unsync`: sets the parent's bitmap bit and propagates up when it is the first. */
function mark_unsync(kvm: Kvm, parent_sptep: number): void {
  const sp = sptep_to_sp(kvm, parent_sptep);
  const index = spte_index(parent_sptep);
  if (sp.unsync_child_bitmap[index]) return;
  sp.unsync_child_bitmap[index] = 1;
  if (sp.unsync_children++ > 0) return;
  kvm_mmu_mark_parents_unsync(kvm, sp);
}

/** `kvm_mmu_mark_parents_unsync`. */
export function kvm_mmu_mark_parents_unsync(kvm: Kvm, sp: KvmMmuPage): void {
  for (const sptep of sp.parent_ptes) mark_unsync(kvm, sptep);
}

/** `clear_unsync_child_bit`. */
function clear_unsync_child_bit(sp: KvmMmuPage, index: number): void {
  if (!sp.unsync_child_bitmap[index]) return;
  sp.unsync_child_bitmap[index] = 0;
  sp.unsync_children--;
}

/**
 * `__link_shadow_page`: zaps whatever present SPTE was at `sptep`, then installs a non-leaf SPTE
 * for `sp` and records the parent; an unsync child marks the parent.
 */
export function link_shadow_page(kvm: Kvm, sptep: number, sp: KvmMmuPage): void {
  const old = get_spte(kvm, sptep);
  if (is_shadow_present_pte(old)) {
    // A large SPTE (a guest huge page split into a table) or a stale link is replaced.
    const parent = sptep_to_sp(kvm, sptep);
    const invalid_list: KvmMmuPage[] = [];
    const zapped = mmu_page_zap_pte(kvm, parent, sptep, invalid_list);
    if (zapped || invalid_list.length > 0) kvm_flush_remote_tlbs(kvm);
    kvm_mmu_commit_zap_page(kvm, invalid_list);
  }
  mmu_spte_set(kvm, sptep, make_nonleaf_spte(sp.pfn));
  sp.parent_ptes.add(sptep);
  if (sp.unsync_children > 0 || sp.unsync) mark_unsync(kvm, sptep);
}

/** `drop_parent_pte`: unlinks `parent_pte` from `sp`. */
export function drop_parent_pte(kvm: Kvm, sp: KvmMmuPage, parent_pte: number): void {
  sp.parent_ptes.delete(parent_pte);
  mmu_spte_clear_no_track(kvm, parent_pte);
}

/**
 * `validate_direct_spte`: a non-leaf SPTE pointing at a direct child with a different access is
 * unlinked (and flushed), so a correctly permissioned child is linked instead.
 */
export function validate_direct_spte(kvm: Kvm, sptep: number, direct_access: number): void {
  const spte = get_spte(kvm, sptep);
  if (!is_shadow_present_pte(spte) || is_large_pte(spte)) return;
  const child = kvm.spOfPfn.get(spte_to_pfn(spte));
  if (!child || child.role.access === direct_access) return;
  drop_parent_pte(kvm, child, sptep);
  kvm_flush_remote_tlbs_sptep(kvm, sptep);
}

/**
 * `mmu_page_zap_pte`: clears one SPTE of `sp`: drops a leaf (and its rmap), or unlinks a child
 * (zapping a direct child that lost its last parent). Returns true if a present leaf was zapped.
 */
export function mmu_page_zap_pte(
  kvm: Kvm,
  sp: KvmMmuPage,
  sptep: number,
  invalid_list: KvmMmuPage[],
): boolean {
  const pte = get_spte(kvm, sptep);
  if (is_shadow_present_pte(pte)) {
    if (is_last_spte(pte, sp.role.level)) {
      drop_spte(kvm, sptep);
      return true;
    }
    const child = kvm.spOfPfn.get(spte_to_pfn(pte));
    if (!child) throw new Error(`non-leaf spte 0x${pte.toString(16)} points at no shadow page`);
    drop_parent_pte(kvm, child, sptep);
    // Recursively zap nested TDP/direct children that have no other parent.
    if (child.role.direct && child.parent_ptes.size === 0 && child.root_count === 0) {
      kvm_mmu_prepare_zap_page(kvm, child, invalid_list);
    }
    return false;
  }
  if (is_mmio_spte(pte)) mmu_spte_clear_no_track(kvm, sptep);
  return false;
}

/** `kvm_mmu_page_unlink_children`: zaps every SPTE of `sp`. */
function kvm_mmu_page_unlink_children(
  kvm: Kvm,
  sp: KvmMmuPage,
  invalid_list: KvmMmuPage[],
): number {
  let zapped = 0;
  for (let i = 0; i < 512; i++) if (mmu_page_zap_pte(kvm, sp, sp.sptep(i), invalid_list)) zapped++;
  return zapped;
}

/** `kvm_mmu_unlink_parents`. */
function kvm_mmu_unlink_parents(kvm: Kvm, sp: KvmMmuPage): void {
  for (const sptep of [...sp.parent_ptes]) drop_parent_pte(kvm, sp, sptep);
}

/** `kvm_unlink_unsync_page`. */
function kvm_unlink_unsync_page(sp: KvmMmuPage): void {
  if (!sp.unsync) throw new Error(`${sp} is not unsync`);
  sp.unsync = false;
}

/**
 * `kvm_mmu_prepare_zap_page`: zaps unsync children, unlinks the page's SPTEs and its parents,
 * unaccounts shadowing, and marks it invalid; a root stays allocated until its last user drops
 * it. Returns true if the page list changed in a way that invalidates iteration.
 */
export function kvm_mmu_prepare_zap_page(
  kvm: Kvm,
  sp: KvmMmuPage,
  invalid_list: KvmMmuPage[],
): boolean {
  if (sp.role.invalid && invalid_list.includes(sp)) return false;
  let list_unstable = false;
  if (sp.role.level > PG_LEVEL_4K) {
    list_unstable = mmu_zap_unsync_children(kvm, sp, invalid_list) > 0;
  }
  kvm_mmu_page_unlink_children(kvm, sp, invalid_list);
  kvm_mmu_unlink_parents(kvm, sp);
  if (!sp.role.invalid && sp.has_gptes) unaccount_shadowed(kvm, sp);
  if (sp.unsync) kvm_unlink_unsync_page(sp);
  if (sp.root_count === 0) {
    if (!invalid_list.includes(sp)) invalid_list.push(sp);
  } else {
    // A root stays in use: it is taken off the active list and freed when unloaded.
    kvm.active_mmu_pages = kvm.active_mmu_pages.filter((p) => p !== sp);
    for (const v of kvm.vcpus) v.kvm_make_request("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS");
  }
  if (!sp.role.invalid) {
    sp.role = { ...sp.role, invalid: true };
    kvm.count("sp_zapped");
    kvm.event(null, () => `zap ${sp}`);
  }
  return list_unstable;
}

/**
 * `kvm_mmu_commit_zap_page`: flushes remote TLBs, then frees the pages (the host page is
 * poisoned, so a stale link shows).
 */
export function kvm_mmu_commit_zap_page(kvm: Kvm, invalid_list: KvmMmuPage[]): void {
  if (invalid_list.length === 0) return;
  kvm_flush_remote_tlbs(kvm);
  for (const sp of invalid_list.splice(0)) {
    kvm.active_mmu_pages = kvm.active_mmu_pages.filter((p) => p !== sp);
    const bucket = kvm_page_table_hashfn(sp.gfn);
    const list = kvm.mmu_page_hash.get(bucket)?.filter((p) => p !== sp) ?? [];
    if (list.length === 0) kvm.mmu_page_hash.delete(bucket);
    else kvm.mmu_page_hash.set(bucket, list);
    kvm.free_pending.push(sp.pfn);
  }
  kvm.free_shadow_pages();
}

/** Frees a zapped root whose last user dropped it (`kvm_mmu_free_roots` → commit). */
export function free_invalid_root(kvm: Kvm, sp: KvmMmuPage): void {
  const list: KvmMmuPage[] = [];
  kvm_mmu_prepare_zap_page(kvm, sp, list);
  if (!list.includes(sp)) list.push(sp);
  kvm_mmu_commit_zap_page(kvm, list);
}

// ---------------------------------------------------------------------------------------------
// Write protection through the rmaps
// ---------------------------------------------------------------------------------------------

/**
 * `spte_write_protect`: clears W (and MMU-writable when `pt_protect`); returns true if the SPTE
 * changed in a way that needs a flush.
 */
function spte_write_protect(kvm: Kvm, sptep: number, pt_protect: boolean): boolean {
  let spte = get_spte(kvm, sptep);
  if (!is_writable_pte(spte) && !(pt_protect && is_mmu_writable_spte(spte))) return false;
  if (pt_protect) spte &= ~shadow_mmu_writable_mask;
  spte &= ~PT_WRITABLE_MASK;
  return mmu_spte_update(kvm, sptep, spte) || true;
}

/** `rmap_write_protect`. */
function rmap_write_protect(kvm: Kvm, head: Set<number>, pt_protect: boolean): boolean {
  let flush = false;
  for (const sptep of head) flush = spte_write_protect(kvm, sptep, pt_protect) || flush;
  if (flush) kvm.count("write_protects");
  return flush;
}

/**
 * `kvm_mmu_slot_gfn_write_protect`: write-protects every leaf SPTE that maps `gfn` at levels
 * `min_level`..1G, for shadowing (`pt_protect`: MMU-writable cleared too).
 */
export function kvm_mmu_slot_gfn_write_protect(
  kvm: Kvm,
  slot: KvmMemorySlot,
  gfn: number,
  min_level: number,
): boolean {
  let write_protected = false;
  for (let level = min_level; level <= PG_LEVEL_1G; level++) {
    write_protected = rmap_write_protect(kvm, gfn_to_rmap(slot, gfn, level), true) ||
      write_protected;
  }
  return write_protected;
}

/** `kvm_vcpu_write_protect_gfn`. */
export function kvm_vcpu_write_protect_gfn(vcpu: KvmVcpu, gfn: number): boolean {
  const slot = vcpu.kvm.gfn_to_memslot(gfn);
  return slot ? kvm_mmu_slot_gfn_write_protect(vcpu.kvm, slot, gfn, PG_LEVEL_4K) : false;
}

/**
 * Write-protects for dirty logging (`pt_protect=false`: MMU-writable kept, so the fast path
 * can restore W) every leaf SPTE of `gfns` at every level.
 */
export function kvm_mmu_write_protect_gfns_for_log(
  kvm: Kvm,
  slot: KvmMemorySlot,
  gfns: Iterable<number>,
): boolean {
  let flush = false;
  for (const gfn of gfns) {
    for (let level = PG_LEVEL_4K; level <= PG_LEVEL_1G; level++) {
      flush = rmap_write_protect(kvm, gfn_to_rmap(slot, gfn, level), false) || flush;
    }
  }
  return flush;
}

// ---------------------------------------------------------------------------------------------
// Unsync
// ---------------------------------------------------------------------------------------------

/** `kvm_unsync_page`. */
function kvm_unsync_page(kvm: Kvm, sp: KvmMmuPage): void {
  kvm.count("sp_unsync");
  kvm.event(null, () => `unsync ${sp}`);
  sp.unsync = true;
  kvm_mmu_mark_parents_unsync(kvm, sp);
}

/**
 * `mmu_try_to_unsync_pages`: 0 when a writable SPTE may map `gfn`. A write-tracked gfn (an
 * upper-level table) never may; level-1 pages are unsynced unless KVM is synchronizing or
 * prefetching.
 */
export function mmu_try_to_unsync_pages(
  kvm: Kvm,
  slot: KvmMemorySlot,
  gfn: number,
  synchronizing: boolean,
  prefetch: boolean,
): number {
  if (kvm.kvm_gfn_is_write_tracked(gfn)) return EPERM;
  // b3ae3ceb5569: with a 2M mapping allowed no level-1 page can exist for the gfn.
  if (slot.disallowLpage(gfn, PG_LEVEL_2M) === 0) return 0;
  for (const sp of for_each_gfn_valid_sp_with_gptes(kvm, gfn)) {
    if (synchronizing) return EPERM;
    if (sp.unsync) continue;
    if (prefetch) return EEXIST;
    if (!kvm.features.unsync) return EPERM;
    if (sp.role.level !== PG_LEVEL_4K) throw new Error(`unsync of ${sp}: not level 1`);
    kvm_unsync_page(kvm, sp);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------------

/** `kvm_sync_page_check`: the page can be synced against the current MMU's root role. */
function kvm_sync_page_check(vcpu: KvmVcpu, sp: KvmMmuPage): boolean {
  if (sp.role.direct) return false;
  return roleWordIgnoringForSync(sp.role) === roleWordIgnoringForSync(vcpu.mmu.root_role);
}

/**
 * `__kvm_sync_page`: `sync_spte` on every present SPTE. Returns <0 to zap the page, else
 * whether a flush is needed.
 */
function __kvm_sync_page(vcpu: KvmVcpu, sp: KvmMmuPage): number {
  if (!kvm_sync_page_check(vcpu, sp)) return -1;
  let flush = false;
  for (let i = 0; i < 512; i++) {
    const ret = kvm_sync_spte(vcpu, sp, i);
    if (ret < 0) return -1;
    flush = flush || ret > 0;
  }
  vcpu.kvm.count("sp_synced");
  vcpu.kvm.event(vcpu.vcpu_id, () => `sync ${sp}`);
  return flush ? 1 : 0;
}

/** `kvm_sync_spte`: `FNAME(sync_spte)` when the SPTE is present (or MMIO). */
export function kvm_sync_spte(vcpu: KvmVcpu, sp: KvmMmuPage, i: number): number {
  const spte = get_spte(vcpu.kvm, sp.sptep(i));
  if (!is_shadow_present_pte(spte) && !is_mmio_spte(spte)) return 0;
  return FNAME_sync_spte(vcpu, sp, i);
}

/**
 * `kvm_sync_page`: syncs `sp`; zaps it on failure (returns <0), flushes remote TLBs when SPTEs
 * were dropped or lost writability.
 */
export function kvm_sync_page(vcpu: KvmVcpu, sp: KvmMmuPage, invalid_list: KvmMmuPage[]): number {
  // Not reset on an exception: a run stopped mid-sync leaves the page as the stop found it.
  sp.syncing = true;
  const ret = __kvm_sync_page(vcpu, sp);
  if (ret < 0) kvm_mmu_prepare_zap_page(vcpu.kvm, sp, invalid_list);
  else if (ret > 0) kvm_flush_remote_tlbs(vcpu.kvm);
  sp.syncing = false;
  return ret;
}

/**
 * `mmu_unsync_walk`: the unsync descendants of `parent` (stale bitmap bits are cleared along the
 * way).
 */
function mmu_unsync_walk(kvm: Kvm, parent: KvmMmuPage, out: KvmMmuPage[], depth = 0): void {
  for (let i = 0; i < 512; i++) {
    if (!parent.unsync_child_bitmap[i]) continue;
    const spte = get_spte(kvm, parent.sptep(i));
    const child = is_shadow_present_pte(spte) && !is_last_spte(spte, parent.role.level)
      ? kvm.spOfPfn.get(spte_to_pfn(spte))
      : undefined;
    if (!child) {
      clear_unsync_child_bit(parent, i);
      continue;
    }
    const descend = depth === 0 || !kvm.bug("unsync_walk_one_level");
    if (child.unsync_children > 0 && descend) mmu_unsync_walk(kvm, child, out, depth + 1);
    if (child.unsync) {
      if (!out.includes(child)) out.push(child);
    } else if (child.unsync_children === 0) clear_unsync_child_bit(parent, i);
  }
}

/** `mmu_pages_clear_parents`: clears the bitmap bits that lead to a synced page. */
function clear_parents_after_sync(kvm: Kvm, sp: KvmMmuPage): void {
  for (const sptep of sp.parent_ptes) {
    const parent = sptep_to_sp(kvm, sptep);
    clear_unsync_child_bit(parent, spte_index(sptep));
    if (parent.unsync_children === 0) clear_parents_after_sync(kvm, parent);
  }
}

/**
 * `mmu_sync_children`: write-protects every unsync descendant's gfn first, then syncs each
 * (`kvm_unlink_unsync_page` + `kvm_sync_page`), clearing the parents' bitmap bits.
 */
export function mmu_sync_children(vcpu: KvmVcpu, parent: KvmMmuPage, _can_yield: boolean): number {
  const kvm = vcpu.kvm;
  const pages: KvmMmuPage[] = [];
  mmu_unsync_walk(kvm, parent, pages);
  if (parent.unsync && !pages.includes(parent)) pages.push(parent);
  const invalid_list: KvmMmuPage[] = [];
  let flush = false;
  if (!kvm.bug("unsync_no_write_protect_on_sync")) {
    for (const sp of pages) flush = kvm_vcpu_write_protect_gfn(vcpu, sp.gfn) || flush;
  }
  if (flush) kvm_flush_remote_tlbs(kvm);
  for (const sp of pages) {
    if (is_obsolete_sp(kvm, sp)) continue;
    sp.syncing = true;
    kvm_unlink_unsync_page(sp);
    kvm_sync_page(vcpu, sp, invalid_list);
    clear_parents_after_sync(kvm, sp);
  }
  kvm_mmu_commit_zap_page(kvm, invalid_list);
  return 0;
}

/** `mmu_zap_unsync_children`: zaps every unsync descendant of `parent`. */
function mmu_zap_unsync_children(kvm: Kvm, parent: KvmMmuPage, invalid_list: KvmMmuPage[]): number {
  const pages: KvmMmuPage[] = [];
  mmu_unsync_walk(kvm, parent, pages);
  for (const sp of pages) kvm_mmu_prepare_zap_page(kvm, sp, invalid_list);
  return pages.length;
}

/** The shadow page a root hpa denotes, if it is one (not a `pae_root`). */
export function root_to_sp(kvm: Kvm, hpa: number): KvmMmuPage | undefined {
  return hpa < 0 ? undefined : kvm.spOfPfn.get(Math.floor(hpa / 4096));
}

/** `is_unsync_root`. */
export function is_unsync_root(kvm: Kvm, hpa: number): boolean {
  const sp = root_to_sp(kvm, hpa);
  return !!sp && (sp.unsync || sp.unsync_children > 0);
}

/** The level of an SPTE's table entry (for callers that only have an sptep). */
export function sptep_level(kvm: Kvm, sptep: number): number {
  return sptep_to_sp(kvm, sptep).role.level;
}

/** `kvm_mmu_zap_all_fast`'s page walk, used by memslot changes: zaps every valid page. */
export function kvm_mmu_zap_all(kvm: Kvm): void {
  const invalid_list: KvmMmuPage[] = [];
  for (const sp of [...kvm.active_mmu_pages]) {
    if (!sp.role.invalid) kvm_mmu_prepare_zap_page(kvm, sp, invalid_list);
  }
  kvm_mmu_commit_zap_page(kvm, invalid_list);
}

/**
 * `kvm_mmu_zap_all_fast` (memslot deletion with `KVM_X86_QUIRK_SLOT_ZAP_ALL`): a new
 * `mmu_valid_gen` makes every page obsolete, every vCPU is asked to drop its obsolete roots,
 * and the obsolete pages are zapped (with the remote flush).
 */
export function kvm_mmu_zap_all_fast(kvm: Kvm): void {
  kvm.mmu_valid_gen++;
  for (const v of kvm.vcpus) v.kvm_make_request("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS");
  kvm_mmu_zap_all(kvm);
}

/**
 * `kvm_mmu_slot_remove_write_access` (dirty logging switched on): write-protects every leaf
 * SPTE of the slot through its rmaps, keeping MMU-writable so `fast_page_fault` can restore W,
 * then flushes (`kvm_flush_remote_tlbs_memslot`).
 */
export function kvm_mmu_slot_remove_write_access(kvm: Kvm, slot: KvmMemorySlot): void {
  let flush = false;
  for (const level of slot.rmap) {
    for (const head of level.values()) flush = rmap_write_protect(kvm, head, false) || flush;
  }
  if (flush) kvm_flush_remote_tlbs(kvm);
}

/**
 * `kvm_unmap_gfn_range` for the shadow MMU (`kvm_rmap_zap_gfn_range` → `kvm_zap_rmap`): drops
 * every leaf SPTE that maps a gfn in `[start, end)` of `slot`, at every level. Returns whether
 * a flush is needed.
 */
export function kvm_unmap_gfn_range(
  kvm: Kvm,
  slot: KvmMemorySlot,
  start: number,
  end: number,
): boolean {
  let flush = false;
  for (let level = PG_LEVEL_4K; level <= PG_LEVEL_1G; level++) {
    const span = 2 ** ((level - 1) * 9);
    for (const [index, head] of slot.rmap[level - 1]!) {
      const first = (Math.floor(slot.base_gfn / span) + index) * span;
      if (first + span <= start || first >= end) continue;
      for (const sptep of [...head]) {
        drop_spte(kvm, sptep);
        flush = true;
      }
    }
  }
  return flush;
}
