/**
 * The simulated CPU's TLB for one vCPU. Under shadow paging on VMX with VPID, hardware tags
 * linear translations by VPID and by the PCID in the hardware CR3 (KVM loads `root_hpa | pcid`),
 * not by the root itself: switching shadow roots does not flush, only KVM's explicit flushes do
 * (`vpid_sync_context` for `flush_tlb_current`/`flush_tlb_guest`/remote flushes, and
 * `vpid_sync_vcpu_addr` for `flush_tlb_gva`). A missing flush in the MMU therefore shows up as
 * a stale hardware translation, as on real hardware. Entries hold what the SPTE walk granted,
 * keyed by PCID and linear page number. SPTEs never have G set, so there are no global
 * entries. Paging-structure caches of the SPTE tables are not modelled (a miss walks from the
 * root).
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
  readonly #byPcid = new Map<number, Map<number, HwTlbEntry>>();
  /**
   * Bumped by every flush: a walk that saw it change was overtaken by a flush (a remote one,
   * delivered while it was in flight) and must not fill, nor complete its access.
   */
  generation = 0;

  /** The entry for `laPage` under `pcid`, if cached. */
  lookup(pcid: number, laPage: number): HwTlbEntry | undefined {
    return this.#byPcid.get(pcid)?.get(laPage);
  }

  /** Caches an entry. */
  fill(pcid: number, laPage: number, entry: HwTlbEntry): void {
    let m = this.#byPcid.get(pcid);
    if (!m) this.#byPcid.set(pcid, m = new Map());
    m.set(laPage, entry);
  }

  /** Drops one entry (the CPU does this for the faulting page on a #PF). */
  invalidate(pcid: number, laPage: number): void {
    this.#byPcid.get(pcid)?.delete(laPage);
  }

  /** Flushes every entry (INVVPID single-context: `vpid_sync_context`). */
  flushAll(): void {
    this.generation++;
    this.#byPcid.clear();
  }

  /** Flushes one linear page under every PCID (INVVPID individual address: `flush_tlb_gva`). */
  flushGva(laPage: number): void {
    this.generation++;
    for (const m of this.#byPcid.values()) m.delete(laPage);
  }

  /** Every cached entry as `[pcid, laPage, entry]` (audits and tests). */
  *entries(): IterableIterator<[number, number, HwTlbEntry]> {
    for (const [pcid, m] of this.#byPcid) {
      for (const [laPage, e] of m) yield [pcid, laPage, e];
    }
  }

  /** Number of cached entries (for stats and tests). */
  get size(): number {
    let n = 0;
    for (const m of this.#byPcid.values()) n += m.size;
    return n;
  }
}
