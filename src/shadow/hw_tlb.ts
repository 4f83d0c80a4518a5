/**
 * The simulated CPU's TLB for one vCPU. Entries are tagged by the root the CPU walked (the
 * hardware CR3 KVM loaded: a shadow root or the `pae_root` page), keyed by linear page number,
 * and hold what the SPTE walk granted. Only KVM's flushes remove entries: a missing flush in
 * the MMU shows up as a stale hardware translation, as on real hardware. Paging-structure
 * caches of the SPTE tables are not modelled (every miss walks from the root).
 *
 * No BigInt here: this is the hot path of TLB-hit-heavy programs.
 *
 * @module
 */

/** One cached translation of a 4 KiB linear page. */
export interface HwTlbEntry {
  /** Host pfn of the 4 KiB frame. */
  readonly pfn: number;
  readonly writable: boolean;
  readonly user: boolean;
  readonly executable: boolean;
  /** The leaf SPTE had D=1 when cached, so writes need no walk to set D. */
  readonly dirty: boolean;
}

/** The TLB of one vCPU. */
export class HardwareTlb {
  readonly #byRoot = new Map<number, Map<number, HwTlbEntry>>();

  /** The entry for `laPage` under `root`, if cached. */
  lookup(root: number, laPage: number): HwTlbEntry | undefined {
    return this.#byRoot.get(root)?.get(laPage);
  }

  /** Caches an entry. */
  fill(root: number, laPage: number, entry: HwTlbEntry): void {
    let m = this.#byRoot.get(root);
    if (!m) this.#byRoot.set(root, m = new Map());
    m.set(laPage, entry);
  }

  /** Flushes every entry (a full flush, e.g. INVVPID all-context or a remote flush IPI). */
  flushAll(): void {
    this.#byRoot.clear();
  }

  /** Flushes the entries of one root (`kvm_vcpu_flush_tlb_current`). */
  flushRoot(root: number): void {
    this.#byRoot.delete(root);
  }

  /** Flushes one linear page under every root (`flush_tlb_gva`: INVVPID individual address). */
  flushGva(laPage: number): void {
    for (const m of this.#byRoot.values()) m.delete(laPage);
  }

  /** Number of cached entries (for stats and tests). */
  get size(): number {
    let n = 0;
    for (const m of this.#byRoot.values()) n += m.size;
    return n;
  }
}
