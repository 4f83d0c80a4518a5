/**
 * Host physical memory and the VMM's guest RAM, as the shadow MMU sees them.
 *
 * - `HostMemory`: 4 KiB host pages of 512 u64 words, addressed by host pfn. Shadow page tables
 *   live here too, so an SPTE's pfn field points at a real host page and the simulated CPU walks
 *   host memory, as hardware does.
 * - `UserspaceMemory`: the VMM's guest RAM (the userspace VMA behind every memslot). Each gfn is
 *   backed by a host page chosen at random on first use, never by the identity, so a gfn/pfn
 *   mix-up in the MMU reads the wrong page. The backing outlives memslots (a slot that is removed
 *   and added again shows the same data), and an mmu-notifier invalidation migrates the page to a
 *   new pfn and poisons the old one, so an SPTE that survives the invalidation is visible.
 *
 * @module
 */

/**
 * A small seeded generator (mulberry32) for the host's page placement. The SUT keeps its own
 * (it may import only `src/model/`); nothing about it is shared with the oracle.
 */
class HostRandom {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** An integer in [0, n) for n ≤ 2^32. */
  below(n: number): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) % n;
  }
}

/** Host MAXPHYADDR of the simulated machine: bit 51 is reserved, so MMIO SPTEs are possible. */
export const HOST_MAXPHYADDR = 46;
/** Host pfns handed out for guest RAM: [2^33, 2^34). */
const RAM_PFN_BASE = 2 ** 33;
const RAM_PFN_SPAN = 2 ** 33;
/** Host pfns for KVM's own pages (shadow tables, PAE roots): sequential from here. */
const KERNEL_PFN_BASE = 0x100;
/** The value a freed or migrated-away host page is filled with. */
export const POISON = 0xdead_beef_dead_beefn;

/** Host physical memory: pages by pfn. */
export class HostMemory {
  readonly #pages = new Map<number, BigUint64Array>();
  #nextKernelPfn = KERNEL_PFN_BASE;

  /** The words of host page `pfn`; throws on a pfn that was never allocated (a wild pointer). */
  page(pfn: number): BigUint64Array {
    const p = this.#pages.get(pfn);
    if (!p) throw new Error(`host pfn 0x${pfn.toString(16)} is not allocated`);
    return p;
  }

  /** True if `pfn` is an allocated host page. */
  has(pfn: number): boolean {
    return this.#pages.has(pfn);
  }

  /** Allocates a zeroed page at a chosen pfn. */
  allocAt(pfn: number): BigUint64Array {
    if (this.#pages.has(pfn)) throw new Error(`host pfn 0x${pfn.toString(16)} is in use`);
    const p = new BigUint64Array(512);
    this.#pages.set(pfn, p);
    return p;
  }

  /** Allocates a zeroed kernel page (`__get_free_page`) and returns its pfn. */
  allocKernelPage(): number {
    const pfn = this.#nextKernelPfn++;
    this.allocAt(pfn);
    return pfn;
  }

  /** Reads the u64 at host physical address `hpa` (8-byte aligned). */
  read64(hpa: number): bigint {
    return this.page(Math.floor(hpa / 4096))[(hpa % 4096) >>> 3]!;
  }

  /** Writes the u64 at host physical address `hpa` (8-byte aligned). */
  write64(hpa: number, value: bigint): void {
    this.page(Math.floor(hpa / 4096))[(hpa % 4096) >>> 3] = value;
  }

  /** Fills a page with the poison pattern (the page stays allocated, as freed memory would). */
  poison(pfn: number): void {
    this.page(pfn).fill(POISON);
  }
}

/**
 * The VMM's guest RAM: a persistent gfn → host pfn backing, chosen at random 2 MiB chunk by
 * 2 MiB chunk (as transparent huge pages back a VMA), so a guest 2 MiB frame is host-contiguous
 * and may get a huge SPTE until one of its pages is migrated (the chunk is then split).
 */
export class UserspaceMemory {
  readonly host: HostMemory;
  /** 2 MiB guest frame (gfn >> 9) → host pfn of its chunk. */
  readonly #chunks = new Map<number, number>();
  /** Pages moved out of their chunk by a migration: gfn → pfn. */
  readonly #moved = new Map<number, number>();
  /** 2 MiB guest frames whose chunk was split. */
  readonly #split = new Set<number>();
  readonly #usedChunks = new Set<number>();
  /** Reverse maps for observations: chunk base pfn → 2 MiB guest frame; moved pfn → gfn. */
  readonly #frameOfChunk = new Map<number, number>();
  readonly #gfnOfMovedPfn = new Map<number, number>();
  /** Every gfn that has a backing page. */
  readonly #backed = new Set<number>();
  readonly #prng: HostRandom;
  #nextLoosePfn = RAM_PFN_BASE - 1;

  /** Builds an empty backing; `seed` fixes the permutation. */
  constructor(host: HostMemory, seed: number) {
    this.host = host;
    this.#prng = new HostRandom(seed);
  }

  /** The host pfn backing `gfn` (`hva_to_pfn`), allocating a random chunk on first use. */
  pfnOf(gfn: number): number {
    const moved = this.#moved.get(gfn);
    if (moved !== undefined) return moved;
    const frame = Math.floor(gfn / 512);
    let base = this.#chunks.get(frame);
    if (base === undefined) {
      base = this.#freshChunk(frame);
      this.#chunks.set(frame, base);
      this.#frameOfChunk.set(base, frame);
    }
    const pfn = base + (gfn % 512);
    if (!this.host.has(pfn)) {
      this.host.allocAt(pfn);
      this.#backed.add(gfn);
    }
    return pfn;
  }

  /** True if `gfn` has a backing page already (without allocating one). */
  isBacked(gfn: number): boolean {
    if (this.#moved.has(gfn)) return true;
    const base = this.#chunks.get(Math.floor(gfn / 512));
    return base !== undefined && this.host.has(base + (gfn % 512));
  }

  /**
   * `host_pfn_mapping_level`: 2 (2 MiB) while the gfn's chunk is intact, else 1. The host never
   * backs guest RAM with 1 GiB pages here.
   */
  hostMappingLevel(gfn: number): number {
    return this.#split.has(Math.floor(gfn / 512)) ? 1 : 2;
  }

  /**
   * Migrates the page behind `gfn` to a new host pfn (what an mmu-notifier invalidation allows
   * the host to do): the data moves, the old page is poisoned, the chunk is split. Returns the
   * old and new pfns, or null when the gfn was never backed.
   */
  migrate(gfn: number): { old: number; now: number } | null {
    if (!this.isBacked(gfn)) return null;
    const old = this.pfnOf(gfn);
    const now = this.#nextLoosePfn--;
    this.host.allocAt(now).set(this.host.page(old));
    this.#written.add(gfn);
    this.host.poison(old);
    this.#moved.set(gfn, now);
    this.#gfnOfMovedPfn.set(now, gfn);
    this.#split.add(Math.floor(gfn / 512));
    return { old, now };
  }

  /**
   * Gfns written since the last {@link takeWritten} (guest stores, emulated writes, the
   * walker's A/D updates): not part of KVM, it lets the harness compare only what changed.
   */
  readonly #written = new Set<number>();

  /** Records a write to guest page `gfn` (see {@link takeWritten}). */
  noteWrite(gfn: number): void {
    this.#written.add(gfn);
  }

  /** The gfns written since the last call, and forgets them. */
  takeWritten(): number[] {
    const out = [...this.#written];
    this.#written.clear();
    return out;
  }

  /** The gfns that have a backing page (not part of KVM: for comparing guest memory). */
  backedGfns(): ReadonlySet<number> {
    return this.#backed;
  }

  /**
   * The gfn whose current backing is host page `pfn`, or undefined when `pfn` backs no gfn now
   * (a KVM page, a page migrated away and poisoned, or never RAM). Used to report what a guest
   * access reached; not part of KVM.
   */
  gfnOfPfn(pfn: number): number | undefined {
    const moved = this.#gfnOfMovedPfn.get(pfn);
    if (moved !== undefined) return moved;
    if (pfn < RAM_PFN_BASE) return undefined;
    const base = pfn - ((pfn - RAM_PFN_BASE) % 512);
    const frame = this.#frameOfChunk.get(base);
    if (frame === undefined) return undefined;
    const gfn = frame * 512 + (pfn - base);
    return this.#moved.has(gfn) ? undefined : gfn;
  }

  #freshChunk(frame: number): number {
    for (;;) {
      const chunk = this.#prng.below(RAM_PFN_SPAN / 512);
      const base = RAM_PFN_BASE + chunk * 512;
      if (base === frame * 512 || this.#usedChunks.has(chunk)) continue;
      this.#usedChunks.add(chunk);
      return base;
    }
  }
}
