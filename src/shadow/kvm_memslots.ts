/**
 * Memslots (`struct kvm_memory_slot`, `struct kvm_memslots`): gfn ranges backed by the VMM's
 * guest RAM, with a read-only flag, a dirty bitmap when logging is on, the per-level rmaps and
 * the `disallow_lpage` counts (`lpage_info`). A gfn outside every slot is MMIO.
 *
 * The memslot generation advances by 2 per update (bit 0 is "update in progress", as in
 * `kvm_swap_active_memslots`); MMIO SPTEs record it.
 *
 * @module
 */

/** Page-size levels (`PG_LEVEL_4K`..`PG_LEVEL_1G`). */
export const PG_LEVEL_4K = 1;
/** A 2 MiB page. */
export const PG_LEVEL_2M = 2;
/** A 1 GiB page. */
export const PG_LEVEL_1G = 3;
/** The largest huge-page level KVM maps (`KVM_MAX_HUGEPAGE_LEVEL`). */
export const KVM_MAX_HUGEPAGE_LEVEL = PG_LEVEL_1G;

/** `KVM_HPAGE_GFN_SHIFT(level)`: gfn bits covered by one page of `level`. */
export function KVM_HPAGE_GFN_SHIFT(level: number): number {
  return (level - 1) * 9;
}

/** `gfn_to_index`: the index of `gfn`'s frame of `level` inside the slot. */
export function gfn_to_index(gfn: number, base_gfn: number, level: number): number {
  const shift = 2 ** KVM_HPAGE_GFN_SHIFT(level);
  return Math.floor(gfn / shift) - Math.floor(base_gfn / shift);
}

/** One memslot. */
export class KvmMemorySlot {
  readonly id: number;
  readonly base_gfn: number;
  readonly npages: number;
  /** `KVM_MEM_READONLY`. */
  readonly readOnly: boolean;
  /** Gfns written since the last harvest, when dirty logging is on (`dirty_bitmap`). */
  dirty_bitmap: Set<number> | null = null;
  /** `arch.rmap[level - 1]`: frame index → the sptep (host physical addresses) of leaf SPTEs. */
  readonly rmap: Map<number, Set<number>>[] = [new Map(), new Map(), new Map()];
  /** `arch.lpage_info[level - 2].disallow_lpage`, by frame index, for 2M and 1G. */
  readonly disallow_lpage: Map<number, number>[] = [new Map(), new Map()];

  /** Builds a slot; frames that stick out of the slot at either end may never be huge. */
  constructor(id: number, base_gfn: number, npages: number, readOnly: boolean) {
    this.id = id;
    this.base_gfn = base_gfn;
    this.npages = npages;
    this.readOnly = readOnly;
    // kvm_alloc_memslot_metadata: a huge frame only partly inside the slot is disallowed.
    for (let level = PG_LEVEL_2M; level <= PG_LEVEL_1G; level++) {
      const span = 2 ** KVM_HPAGE_GFN_SHIFT(level);
      const last = gfn_to_index(base_gfn + npages - 1, base_gfn, level);
      const counts = this.disallow_lpage[level - 2]!;
      if (base_gfn % span !== 0) counts.set(0, 1);
      if ((base_gfn + npages) % span !== 0) counts.set(last, (counts.get(last) ?? 0) + 1);
    }
  }

  /** True if `gfn` lies inside the slot. */
  contains(gfn: number): boolean {
    return gfn >= this.base_gfn && gfn < this.base_gfn + this.npages;
  }

  /** `kvm_slot_dirty_track_enabled`. */
  get dirtyTrackEnabled(): boolean {
    return this.dirty_bitmap !== null;
  }

  /** The rmap list of `gfn` at `level`, created on demand. */
  rmapHead(gfn: number, level: number): Set<number> {
    const map = this.rmap[level - 1]!;
    const index = gfn_to_index(gfn, this.base_gfn, level);
    let head = map.get(index);
    if (!head) map.set(index, head = new Set());
    return head;
  }

  /** `lpage_info_slot(gfn, slot, level)->disallow_lpage`. */
  disallowLpage(gfn: number, level: number): number {
    return this.disallow_lpage[level - 2]!.get(gfn_to_index(gfn, this.base_gfn, level)) ?? 0;
  }

  /** Adds `count` to the `disallow_lpage` of `gfn`'s frame at `level`. */
  updateDisallowLpage(gfn: number, level: number, count: number): void {
    const map = this.disallow_lpage[level - 2]!;
    const index = gfn_to_index(gfn, this.base_gfn, level);
    const next = (map.get(index) ?? 0) + count;
    if (next < 0) throw new Error(`disallow_lpage underflow at gfn 0x${gfn.toString(16)}`);
    if (next === 0) map.delete(index);
    else map.set(index, next);
  }
}

/** The VM's memslots and their generation. */
export class KvmMemslots {
  #slots: KvmMemorySlot[] = [];
  /** `kvm_memslots(kvm)->generation`: +2 per completed update. */
  generation = 0;

  /** All slots, by id. */
  get slots(): readonly KvmMemorySlot[] {
    return this.#slots;
  }

  /** `gfn_to_memslot` (every slot is visible to every vCPU here: no SMM address space). */
  gfn_to_memslot(gfn: number): KvmMemorySlot | undefined {
    for (const s of this.#slots) if (s.contains(gfn)) return s;
    return undefined;
  }

  /** The slot with `id`. */
  byId(id: number): KvmMemorySlot | undefined {
    return this.#slots.find((s) => s.id === id);
  }

  /** Installs a slot (`kvm_set_memslot` create) and bumps the generation. */
  install(slot: KvmMemorySlot): void {
    this.#slots = [...this.#slots, slot].sort((a, b) => a.base_gfn - b.base_gfn);
    this.generation += 2;
  }

  /** Removes a slot (`kvm_set_memslot` delete) and bumps the generation. */
  remove(id: number): KvmMemorySlot | undefined {
    const slot = this.byId(id);
    if (!slot) return undefined;
    this.#slots = this.#slots.filter((s) => s !== slot);
    this.generation += 2;
    return slot;
  }
}
