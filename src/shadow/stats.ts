/**
 * Observability of the shadow MMU: counters for every mechanism (like KVM's `kvm_stat` and
 * `mmu_*` tracepoints) and an event log a report can show next to the oracle's walk trace.
 *
 * @module
 */

/** Counter names. */
export const COUNTERS = [
  "pf_taken",
  "pf_fixed",
  "pf_spurious",
  "pf_emulate",
  "pf_retry",
  "pf_guest_injected",
  "pf_mmio_spte_created",
  "mmio_spte_replaced",
  "mmio_exits",
  "mmio_cache_hits",
  "fast_pf_fixed",
  "fast_pf_spurious",
  "fast_pf_retries",
  "lockless_read_retries",
  "sp_created",
  "sp_reused",
  "sp_zapped",
  "sp_unsync",
  "sp_synced",
  "sync_spte_dropped",
  "sync_spte_updated",
  "prefetched_sptes",
  "emulated_writes",
  "emulated_reads",
  "track_write_zaps",
  "flooding_zaps",
  "misaligned_zaps",
  "invlpg",
  "remote_tlb_flushes",
  "local_tlb_flushes",
  "root_allocs",
  "root_reuses",
  "dirty_marks",
  "dirty_log_harvests",
  "write_protects",
  "hw_tlb_hits",
  "hw_walks",
  "walker_retries",
  "random_zaps",
  "host_unmaps",
] as const;

/** One counter name. */
export type Counter = (typeof COUNTERS)[number];

/** One event of the event log: a step number, a vCPU (or null for VM-wide), and a message. */
export interface MmuEvent {
  readonly step: number;
  readonly vcpu: number | null;
  readonly what: string;
}

/** Counters and the event log of one VM. */
export class MmuStats {
  readonly counters: Record<Counter, number> = Object.fromEntries(
    COUNTERS.map((c) => [c, 0]),
  ) as Record<Counter, number>;
  readonly events: MmuEvent[] = [];
  /** Whether events are recorded (counters always are). */
  logEvents: boolean;
  /** The step events are stamped with. */
  step = 0;
  /** The thread running (set by the scheduler of a concurrent case; 0 otherwise). */
  thread = 0;
  /** The counters per thread: what each thread's own code moved. */
  readonly byThread = new Map<number, Record<Counter, number>>();

  /** Builds empty stats. */
  constructor(logEvents = true) {
    this.logEvents = logEvents;
  }

  /** Adds `n` to a counter. */
  count(c: Counter, n = 1): void {
    this.counters[c] += n;
    this.threadCounters(this.thread)[c] += n;
  }

  /** The counters of thread `t` (zeros when it has not run). */
  threadCounters(t: number): Record<Counter, number> {
    let own = this.byThread.get(t);
    if (!own) {
      own = Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<Counter, number>;
      this.byThread.set(t, own);
    }
    return own;
  }

  /** Records an event (the message is built only when events are on). */
  event(vcpu: number | null, what: () => string): void {
    if (this.logEvents) this.events.push({ step: this.step, vcpu, what: what() });
  }
}
