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
  /** Whether `mmu_lock` is held (assertions only: the model is single-threaded per step). */
  mmu_lock_held = false;

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
