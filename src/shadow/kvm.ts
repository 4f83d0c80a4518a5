/**
 * `struct kvm` for the shadow MMU: host memory, guest RAM, memslots, the shadow-page hash and
 * active list, write tracking, the vCPUs, and the model's switches (features, injected bugs)
 * and observability (stats, event log).
 *
 * @module
 */
import { type Counter, MmuStats } from "./stats.ts";
import { HostMemory, UserspaceMemory } from "./host_memory.ts";
import { type KvmMemorySlot, KvmMemslots } from "./kvm_memslots.ts";
import type { KvmMmuPage } from "./mmu_page.ts";
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { type BugName, checkBugNames } from "./bugs.ts";

/** Mechanisms that can be switched off (all on by default). */
export interface KvmFeatures {
  readonly prefetch: boolean;
  readonly unsync: boolean;
  readonly fastPageFault: boolean;
  readonly splitSpte: boolean;
}

/** The guest CPU model KVM exposes (CPUID). */
export interface KvmCpuid {
  readonly maxphyaddr: number;
  readonly vendor: "intel" | "amd";
  readonly nx: boolean;
  readonly pse: boolean;
  readonly pse36: boolean;
  readonly gbpages: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  readonly la57: boolean;
  readonly pcid: boolean;
}

/**
 * An exception the scheduler of a concurrent case throws through the model (from an atomic
 * step) and catches itself: the model lets it pass instead of reporting a failure.
 */
export class SchedulerInterrupt extends Error {}

/**
 * The running thread would have to spin on `mmu_lock` held by a thread it preempted (see
 * {@link Kvm.write_lock}): the scheduler retries its operation later.
 */
export class MmuLockContended extends SchedulerInterrupt {
  constructor() {
    super("mmu_lock is held by a preempted thread");
    this.name = "MmuLockContended";
  }
}

/** An op's guest-visible result, decided before the op returns (see {@link Kvm.retire}). */
export type RetiredResult =
  | { readonly kind: "ok"; readonly gpa: number }
  | { readonly kind: "pf"; readonly error_code: number; readonly cr2: bigint };

/** The VM. */
export class Kvm {
  readonly host = new HostMemory();
  readonly ram: UserspaceMemory;
  readonly memslots = new KvmMemslots();
  readonly cpuid: KvmCpuid;
  readonly features: KvmFeatures;
  readonly stats: MmuStats;
  readonly vcpus: KvmVcpu[] = [];
  readonly #bugs: ReadonlySet<string>;

  // ---- kvm->arch (MMU part) ----
  /** `mmu_page_hash`: bucket → shadow pages. */
  readonly mmu_page_hash = new Map<number, KvmMmuPage[]>();
  /** `active_mmu_pages`, newest first. */
  active_mmu_pages: KvmMmuPage[] = [];
  /** `indirect_shadow_pages`. */
  indirect_shadow_pages = 0;
  /** `mmu_valid_gen`. */
  mmu_valid_gen = 0;
  /** `page->private` of shadow tables: host pfn → shadow page (`sptep_to_sp`). */
  readonly spOfPfn = new Map<number, KvmMmuPage>();
  /** `gfn_write_track` per gfn (the page-track write counter), VM-wide. */
  readonly gfn_write_track = new Map<number, number>();
  /** Next shadow-page id. */
  nextSpId = 0;
  /** `mmu_invalidate_in_progress` (mmu-notifier invalidation running). */
  mmu_invalidate_in_progress = 0;
  /** `mmu_invalidate_seq`. */
  mmu_invalidate_seq = 0;
  /** The thread holding `mmu_lock` (a vCPU index, or the host thread's index), or null. */
  mmu_lock_owner: number | null = null;
  /** The thread running now: set by the scheduler of a concurrent case (0 otherwise). */
  current_thread = 0;
  /**
   * Set by the scheduler of a concurrent case: called when the running op's guest-visible
   * result is decided before KVM is done with it (an emulated store's write, which KVM follows
   * with the page-track zap under `mmu_lock`; a #PF queued by KVM's walker, delivered at the
   * next VM entry). The op takes effect there, whatever KVM does after.
   */
  retireHook: ((r: RetiredResult) => void) | null = null;

  /**
   * Set by the scheduler of a concurrent case: called after KVM's guest walker set A/D bits in
   * a gpte, a guest-visible write of an op that has not completed yet, which a later op may see
   * (or overwrite) before this one completes.
   */
  publishHook: ((gpa: number) => void) | null = null;

  /** Reports a guest-visible write at `gpa` by the running op (see {@link publishHook}). */
  publish(gpa: number): void {
    this.publishHook?.(gpa);
  }

  /** Reports the running op's result early (see {@link retireHook}). */
  retire(r: RetiredResult): void {
    this.retireHook?.(r);
  }

  /** Host pfns of zapped shadow pages not freed yet (see {@link free_shadow_pages}). */
  readonly free_pending: number[] = [];

  /**
   * Frees the zapped shadow pages (their host pages are poisoned), unless a vCPU is walking the
   * shadow tables, in guest mode or in a lockless walk: KVM frees only after the remote flush,
   * whose IPI waits for such vCPUs, so a walk never reads a freed table. They call this when
   * they are done.
   */
  free_shadow_pages(): void {
    if (this.free_pending.length === 0) return;
    if (this.vcpus.some((v) => v.in_guest_mode || v.reading_shadow_page_tables)) return;
    for (const pfn of this.free_pending.splice(0)) {
      this.spOfPfn.delete(pfn);
      this.host.poison(pfn);
    }
  }

  /** A remote flush owed when `mmu_lock` is dropped (injected bug `flush_after_mmu_unlock`). */
  flush_after_unlock = false;

  /**
   * Called at every named atomic step of the SPTE protocols (`mmu_spte_update:read`,
   * `__set_spte:low`, `__get_spte_lockless:high`, `fast_page_fault:cmpxchg`, …) with the SPTE's
   * address: where another CPU may run between two steps of this one. Null: nothing runs
   * (single-threaded). A scheduler that interleaves vCPUs, or a test, installs it.
   */
  atomicStepHook: ((step: string, sptep: number) => void) | null = null;

  /** Marks a named atomic step (see {@link atomicStepHook}). */
  atomicStep(step: string, sptep: number): void {
    this.atomicStepHook?.(step, sptep);
  }

  /** Whether `mmu_lock` is held (`lockdep_assert_held`). */
  get mmu_lock_held(): boolean {
    return this.mmu_lock_owner !== null;
  }

  /**
   * `write_lock(&kvm->mmu_lock)`: atomic step "mmu_lock:acquire" (another thread may run, and
   * take the lock, first), then the lock. When a thread the running one preempted holds it, the
   * running thread cannot spin (that thread only resumes when this one is done): the operation
   * is abandoned and retried from its start, as after `RET_PF_RETRY` (concurrent cases only).
   *
   * @throws {MmuLockContended} when a preempted thread holds it (concurrent cases only)
   * @throws {Error} when the running thread already holds it (a model bug: it is not recursive)
   */
  write_lock(): void {
    this.atomicStep("mmu_lock:acquire", -1);
    if (this.mmu_lock_owner === this.current_thread) {
      throw new Error(`thread ${this.current_thread} takes mmu_lock twice`);
    }
    if (this.mmu_lock_held) throw new MmuLockContended();
    this.mmu_lock_owner = this.current_thread;
  }

  /**
   * `write_unlock(&kvm->mmu_lock)`, then atomic step "mmu_lock:release", then a remote flush
   * left for after the unlock (injected bug `flush_after_mmu_unlock`).
   */
  write_unlock(): void {
    if (this.mmu_lock_owner !== this.current_thread) {
      throw new Error(`thread ${this.current_thread} releases an mmu_lock it does not hold`);
    }
    this.mmu_lock_owner = null;
    this.atomicStep("mmu_lock:release", -1);
    if (this.flush_after_unlock) {
      this.flush_after_unlock = false;
      this.flush_remote_tlbs();
    }
  }

  /**
   * `kvm_flush_remote_tlbs`: every vCPU's hardware TLB is flushed before this returns (the IPI
   * waits for vCPUs in guest mode). Each delivery is an atomic step
   * ("kvm_flush_remote_tlbs:deliver", with the vCPU index): a vCPU not reached yet may still use
   * its stale entries, and an access in flight on a vCPU the flush reached starts again.
   */
  flush_remote_tlbs(): void {
    this.count("remote_tlb_flushes");
    for (const v of this.vcpus) {
      this.atomicStep("kvm_flush_remote_tlbs:deliver", v.vcpu_id);
      v.tlb.flushAll();
    }
  }

  /** Runs `body` under `mmu_lock` (an exception out of `body` drops the lock too). */
  locked<T>(body: () => T): T {
    this.write_lock();
    let result: T;
    try {
      result = body();
    } catch (e: unknown) {
      this.mmu_lock_owner = null;
      throw e;
    }
    this.write_unlock();
    return result;
  }

  /** Builds an empty VM. */
  constructor(opts: {
    cpuid: KvmCpuid;
    features: KvmFeatures;
    bugs: readonly string[];
    seed: number;
    logEvents?: boolean;
  }) {
    checkBugNames(opts.bugs);
    this.cpuid = opts.cpuid;
    this.features = opts.features;
    this.#bugs = new Set(opts.bugs);
    this.ram = new UserspaceMemory(this.host, opts.seed);
    this.stats = new MmuStats(opts.logEvents ?? true);
  }

  /** True when the injected bug `name` is switched on. */
  bug(name: BugName): boolean {
    return this.#bugs.has(name);
  }

  /** Adds to a counter. */
  count(c: Counter, n = 1): void {
    this.stats.count(c, n);
  }

  /** Records an event. */
  event(vcpu: number | null, what: () => string): void {
    this.stats.event(vcpu, what);
  }

  /** `gfn_to_memslot`. */
  gfn_to_memslot(gfn: number): KvmMemorySlot | undefined {
    return this.memslots.gfn_to_memslot(gfn);
  }

  /** `kvm_gfn_is_write_tracked`. */
  kvm_gfn_is_write_tracked(gfn: number): boolean {
    return (this.gfn_write_track.get(gfn) ?? 0) > 0;
  }

  /** Reads `bytes` (4 or 8) of guest memory at `gpa` through the slot's backing (no checks). */
  readGuestPhys(gpa: number, bytes: 4 | 8 = 8): bigint {
    const gfn = Math.floor(gpa / 4096);
    if (!this.ram.isBacked(gfn)) return 0n;
    const word = this.host.page(this.ram.pfnOf(gfn))[(gpa % 4096) >>> 3]!;
    if (bytes === 8) return word;
    return (gpa & 4) === 0 ? word & 0xffff_ffffn : word >> 32n;
  }

  /** Writes guest memory at `gpa` through the backing (no dirty marking, no tracking). */
  writeGuestPhys(gpa: number, bytes: 4 | 8, value: bigint): void {
    const gfn = Math.floor(gpa / 4096);
    this.ram.noteWrite(gfn);
    const page = this.host.page(this.ram.pfnOf(gfn));
    const i = (gpa % 4096) >>> 3;
    if (bytes === 8) {
      page[i] = value & 0xffff_ffff_ffff_ffffn;
      return;
    }
    const shift = (gpa & 4) === 0 ? 0n : 32n;
    page[i] = (page[i]! & ~(0xffff_ffffn << shift)) | ((value & 0xffff_ffffn) << shift);
  }

  /** `mark_page_dirty_in_slot`. */
  mark_page_dirty_in_slot(slot: KvmMemorySlot | undefined, gfn: number): void {
    if (!slot || !slot.dirty_bitmap) return;
    slot.dirty_bitmap.add(gfn);
    this.count("dirty_marks");
  }

  /** `mark_page_dirty`. */
  mark_page_dirty(gfn: number): void {
    this.mark_page_dirty_in_slot(this.gfn_to_memslot(gfn), gfn);
  }
}
