/**
 * The deterministic scheduler of a concurrent case: each vCPU is a thread running its ops in
 * program order, and a host thread (index `vcpus`) runs the host events. A thread yields at
 * every atomic step the model names (`Kvm.atomicStep`: SPTE reads, cmpxchg and exchanges, each
 * half of a split SPTE write and read, `mmu_lock` acquire and release, remote-flush deliveries,
 * the CPU's walk and A/D update); the case's `schedule`, an array of thread indices, decides
 * who runs at each of them.
 *
 * Threads are coroutines without their own stacks, so preemption nests: at an atomic step of
 * the running thread the next schedule entry names a thread, and
 * - the running thread itself: it goes on;
 * - an idle thread with ops left: its next op starts, on top of the running one, which resumes
 *   once that op completed, or gave up on `mmu_lock` (below);
 * - a thread that is already mid-op below, or has nothing left: it is blocked, the entry is
 *   skipped.
 * A thread that must take `mmu_lock` while a thread it preempted holds it cannot spin: a guest
 * access is abandoned there and retried later from its start, as KVM's `RET_PF_RETRY` re-runs
 * the instruction (nothing guest-visible happened before its first `mmu_lock`); any other op
 * is blocked from starting while that holds. A memslot change is blocked above a vCPU that is in
 * KVM rather than in guest mode (it would wait for that vCPU's SRCU read side to end). A thread in guest mode or in a lockless walk may
 * be preempted by one that zaps: the shadow pages zapped are freed when no vCPU is walking
 * (`Kvm.free_shadow_pages`), as KVM's remote flush waits for such vCPUs before the free. When no op is running, the entry picks the next op
 * to start; once the schedule is used up, the running thread goes on at every step and the op
 * first in program order starts next, so an empty schedule runs the program sequentially.
 *
 * What this cannot express: two threads that are both mid-op and alternate more than once
 * (A, B, A, B within one op each). Every race of the bug catalogue needs one window, filled
 * with complete operations of other threads.
 *
 * @module
 */
import type { Op } from "../model/op.ts";
import { type RetiredResult, SchedulerInterrupt } from "./kvm.ts";
import type { ShadowMachine, SutStep } from "./machine.ts";
import { MmuLockContended } from "./kvm.ts";

/** Scheduling decisions (atomic steps plus entries consumed) a case may take: a livelock. */
export const MAX_SCHEDULER_STEPS = 200_000;

/** One op that completed, in completion order. */
export interface Completion {
  /** Its index in the program. */
  readonly index: number;
  readonly thread: number;
  readonly step: SutStep;
  /** The logical time of its first start and of its completion (one clock for all threads). */
  readonly started: number;
  readonly completed: number;
  /**
   * Program indices of the ops started and not completed when it completed: those preempted
   * mid-op, and those abandoned at a contended lock, waiting for their retry (their guest walk
   * may already have set A/D bits).
   */
  readonly inFlight: readonly number[];
  /**
   * No op in flight and no thread running: nothing the model does is half done. An op retires
   * early (`Kvm.retire`) while its thread still runs KVM code, so it is never quiescent.
   */
  readonly quiescent: boolean;
  /**
   * Program indices of the ops whose result was reported early (`Kvm.retire`) and whose thread
   * is still in KVM (an emulated store before its page-track zap), when this one completed.
   */
  readonly finishing: readonly number[];
}

/** Counters of a concurrent run. */
export interface SchedulerStats {
  /** Atomic steps the threads passed. */
  points: number;
  /** Ops started on top of a running one. */
  preemptions: number;
  /** Ops abandoned at a contended `mmu_lock` and retried. */
  retries: number;
  /** Schedule entries skipped because they named a blocked thread. */
  blocked: number;
}

/**
 * Makes the choices of a generated case once its schedule is used up. What it chooses is
 * recorded ({@link Scheduler.recorded}), so the case replays with the recorded schedule alone.
 * `ready` lists the threads that could start an op, in the program order of those ops (the
 * first is the thread whose next op comes first in the program).
 */
export interface Decider {
  /**
   * At atomic step `step` (its name, e.g. "mmu_spte_update:read") of `running`: a thread of
   * `ready` (non-empty) to start, or null. `at` says where the choice is made, independently of
   * earlier choices ({@link Scheduler.anchors}).
   */
  preempt(running: number, ready: readonly number[], step: string, at: string): number | null;
  /** With no op running: the thread of `ready` (non-empty) whose next op starts. */
  start(ready: readonly number[], at: string): number;
}

/**
 * A decider that makes the choices `choices` gives by anchor ({@link Scheduler.anchors}) and the
 * scheduler's defaults elsewhere (the running thread goes on; the next op in program order
 * starts). The minimizer uses it to drop one choice of a schedule without moving the others:
 * a schedule's entries are positional, an anchor names the op and its step.
 */
export function anchoredDecider(choices: ReadonlyMap<string, number>): Decider {
  return {
    preempt: (_running, ready, _step, at) => {
      const t = choices.get(at);
      return t !== undefined && ready.includes(t) ? t : null;
    },
    start: (ready, at) => {
      const t = choices.get(at);
      return t !== undefined && ready.includes(t) ? t : ready[0]!;
    },
  };
}

/** The thread that runs `op`: its vCPU, or the host thread `vcpus`. */
export function threadOf(op: Op, vcpus: number): number {
  return "vcpu" in op ? op.vcpu : vcpus;
}

/** True for the ops that may be abandoned at a contended lock and retried (guest accesses). */
function retryable(op: Op): boolean {
  return op.op === "load" || op.op === "store" || op.op === "fetch";
}

/** The step of a result KVM decided early. */
function stepOf(r: RetiredResult): SutStep {
  return r.kind === "ok"
    ? { kind: "observation", observation: { kind: "ok", gpa: BigInt(r.gpa), value: null } }
    : { kind: "observation", observation: { kind: "pf", errorCode: r.error_code, cr2: r.cr2 } };
}

/** Host events that change the memslots, which wait for every vCPU's SRCU read side. */
const SRCU_WRITERS: ReadonlySet<string> = new Set([
  "memslotAdd",
  "memslotRemove",
  "dirtyLogEnable",
]);

class StopRun extends SchedulerInterrupt {}

/** Where a decision is made (an entry without its thread, see {@link ScheduleEntry}). */
type Point = Omit<ScheduleEntry, "thread" | "starts">;

class Livelock extends SchedulerInterrupt {
  constructor(message: string, readonly index: number) {
    super(message);
  }
}

/** One entry of a schedule as run (see {@link Scheduler.entries}). */
export interface ScheduleEntry {
  /** The thread the entry names. */
  readonly thread: number;
  /**
   * What the scheduler does there without a schedule or a decider: the running thread goes on
   * (at an atomic step), or the next op in program order starts (with nothing running; -1 if
   * none can). An entry equal to its default is not a choice.
   */
  readonly dflt: number;
  /**
   * Where the entry was consumed, in terms that do not depend on the entries before it:
   * `p:<op>:<n>:<k>` for the k-th entry at the n-th atomic step of the op at program index `op`
   * (its steps counted over all its attempts), `s:<n>` for the n-th start with nothing running.
   */
  readonly anchor: string;
  /** The atomic step's name, or `start` with nothing running. */
  readonly step: string;
  /** The program index of the running op (-1 with nothing running). */
  readonly running: number;
  /** The program index of the op the named thread would start there (-1 if none). */
  readonly starts: number;
}

/** Runs a program on a machine under a schedule. */
export class Scheduler {
  readonly stats: SchedulerStats = { points: 0, preemptions: 0, retries: 0, blocked: 0 };
  /** Every decision as made: the schedule's entries consumed, then the decider's choices. */
  readonly entries: ScheduleEntry[] = [];
  /** The schedule as run (the threads of {@link entries}): the case replays with it alone. */
  get recorded(): number[] {
    return this.entries.map((e) => e.thread);
  }
  /** Atomic steps each op has passed (by program index). */
  readonly #opSteps = new Map<number, number>();
  #starts = 0;
  readonly #decider: Decider | null;
  readonly #maxSteps: number;
  readonly #machine: ShadowMachine;
  readonly #program: readonly Op[];
  readonly #vcpus: number;
  readonly #schedule: readonly number[];
  readonly #queues: number[][];
  readonly #stack: number[] = [];
  readonly #started = new Map<number, number>();
  /** Threads whose op gave up on `mmu_lock`, with the thread that held it. */
  readonly #waiting = new Map<number, number | null>();
  /** Ops whose result was reported early (`Kvm.retire`) while their thread goes on. */
  readonly #retired = new Set<number>();
  #pos = 0;
  #clock = 0;
  #onComplete: (c: Completion) => boolean = () => true;
  #onSettled: (index: number) => boolean = () => true;
  #onStart: (index: number) => void = () => {};
  #onEnd: (index: number, thread: number) => void = () => {};

  /** A scheduler for `program` on `machine` (threads 0..vcpus-1 and the host thread `vcpus`). */
  constructor(
    machine: ShadowMachine,
    program: readonly Op[],
    vcpus: number,
    schedule: readonly number[],
    decider: Decider | null = null,
    maxSteps: number = MAX_SCHEDULER_STEPS,
  ) {
    this.#decider = decider;
    this.#maxSteps = maxSteps;
    this.#machine = machine;
    this.#program = program;
    this.#vcpus = vcpus;
    this.#schedule = schedule;
    this.#queues = Array.from({ length: vcpus + 1 }, () => []);
    program.forEach((op, i) => this.#queues[threadOf(op, vcpus)]!.push(i));
  }

  /** The schedule entries consumed so far. */
  get consumed(): number {
    return this.#pos;
  }

  /** True while a thread is mid-op (an op in flight): the model's state may be transient. */
  get busy(): boolean {
    return this.#stack.length > 0;
  }

  /**
   * Runs every op; `onComplete` sees each completion in order and returns false to stop.
   * Returns null, or a livelock (the step budget ran out) with the op that was running.
   */
  run(
    onComplete: (c: Completion) => boolean,
    onSettled: (index: number) => boolean = () => true,
    hooks: {
      /** A guest-visible write of an op in flight (`Kvm.publish`). */
      publish?: (gpa: number, inFlight: readonly number[]) => void;
      /** An op starts (the first time: not on a retry). */
      start?: (index: number) => void;
      /** An op's thread is done with it (after its completion, or its early retirement). */
      end?: (index: number, thread: number) => void;
    } = {},
  ): { detail: string; index: number } | null {
    const kvm = this.#machine.kvm;
    this.#onComplete = onComplete;
    this.#onSettled = onSettled;
    kvm.atomicStepHook = (step) => this.#preempt(step);
    kvm.retireHook = (r) => this.#retire(stepOf(r));
    kvm.publishHook = (gpa) => hooks.publish?.(gpa, [...this.#started.keys()]);
    this.#onStart = hooks.start ?? (() => {});
    this.#onEnd = hooks.end ?? (() => {});
    this.#machine.retireHook = (s) => this.#retire(s);
    try {
      for (;;) {
        const next = this.#pick();
        if (next === null) return null;
        this.#runOp(next);
      }
    } catch (e: unknown) {
      if (e instanceof StopRun) return null;
      if (e instanceof Livelock) return { detail: e.message, index: e.index };
      throw e;
    } finally {
      kvm.atomicStepHook = null;
      kvm.retireHook = null;
      kvm.publishHook = null;
      this.#machine.retireHook = null;
      kvm.current_thread = 0;
      kvm.stats.thread = 0;
    }
  }

  /**
   * The next schedule entry (recorded at `point`, see {@link #record}), or null when the
   * schedule is used up.
   */
  #entry(point: () => Point): number | null {
    if (this.#pos >= this.#schedule.length) return null;
    return this.#record(this.#schedule[this.#pos++]!, point());
  }

  /**
   * Records a decision (an entry, or the decider's choice) made at `point`: one tick of the
   * clock.
   */
  #record(t: number, point: Point): number {
    const starts = t === this.#stack[this.#stack.length - 1] ? -1 : this.#queues[t]?.[0] ?? -1;
    this.entries.push({ thread: t, ...point, starts });
    this.#tick();
    return t;
  }

  /** The threads that could start an op now, in the program order of their next ops. */
  #ready(): number[] {
    return this.#queues.flatMap((_, t) => (this.#canStart(t) ? [t] : []))
      .sort((a, b) => this.#queues[a]![0]! - this.#queues[b]![0]!);
  }

  /** The thread to start at top level, or null when every queue is empty. */
  #pick(): number | null {
    const point = (): Point => ({
      dflt: this.#ready()[0] ?? -1,
      anchor: `s:${this.#starts++}`,
      step: "start",
      running: -1,
    });
    for (let t = this.#entry(point); t !== null; t = this.#entry(point)) {
      if (this.#canStart(t)) return t;
      this.stats.blocked++;
      this.#starts--;
    }
    const ready = this.#ready();
    if (ready.length === 0) return null;
    if (!this.#decider) return ready[0]!;
    const at = point();
    return this.#record(this.#decider.start(ready, at.anchor), at);
  }

  /** At an atomic step of the running thread: run what the schedule says, then go on. */
  #preempt(step: string): void {
    this.stats.points++;
    this.#tick();
    const top = this.#stack[this.#stack.length - 1]!;
    const op = this.#queues[top]![0]!;
    const n = this.#opSteps.get(op) ?? 0;
    this.#opSteps.set(op, n + 1);
    // A blocked entry is skipped: the next one gets its anchor.
    let k = 0;
    const point = (): Point => ({ dflt: top, anchor: `p:${op}:${n}:${k++}`, step, running: op });
    for (let t = this.#entry(point); t !== top; t = this.#entry(point)) {
      if (t === null) {
        t = this.#decide(top, step, point());
        if (t === null) return;
      } else if (!this.#canStart(t)) {
        this.stats.blocked++;
        k--;
        continue;
      }
      this.stats.preemptions++;
      this.#runOp(t);
    }
  }

  /** The decider's choice at an atomic step of `top` (recorded), or null without one. */
  #decide(top: number, step: string, at: Point): number | null {
    if (!this.#decider) return null;
    const ready = this.#ready();
    const t = ready.length === 0 ? null : this.#decider.preempt(top, ready, step, at.anchor);
    this.#record(t ?? top, at);
    return t;
  }

  #tick(): void {
    if (++this.#clock > this.#maxSteps) {
      const top = this.#stack[this.#stack.length - 1];
      const index = top === undefined ? 0 : this.#queues[top]![0]!;
      throw new Livelock(
        `the scheduler passed ${this.#maxSteps} steps without finishing the program`,
        index,
      );
    }
  }

  #canStart(t: number): boolean {
    const q = this.#queues[t];
    if (!q || q.length === 0 || this.#stack.includes(t)) return false;
    // An op that gave up on mmu_lock waits until its holder lets go (it would only give up again).
    const owner = this.#machine.kvm.mmu_lock_owner;
    if (this.#waiting.has(t) && this.#waiting.get(t) === owner) return false;
    this.#waiting.delete(t);
    const op = this.#program[q[0]!]!;
    if (this.#stack.length === 0 || retryable(op)) return true;
    if (this.#machine.kvm.mmu_lock_held) return false;
    // A memslot update waits (synchronize_srcu) until every vCPU has left KVM's SRCU read side:
    // it runs above a vCPU only while that vCPU is in guest mode.
    if (!SRCU_WRITERS.has(op.op)) return true;
    return this.#stack.every((s) => this.#machine.kvm.vcpus[s]?.in_guest_mode === true);
  }

  #runOp(t: number): void {
    const kvm = this.#machine.kvm;
    const q = this.#queues[t]!;
    const index = q[0]!;
    if (!this.#started.has(index) && !this.#retired.has(index)) {
      this.#started.set(index, this.#clock);
      this.#onStart(index);
    }
    this.#stack.push(t);
    kvm.current_thread = t;
    kvm.stats.thread = t;
    let step: SutStep | null = null;
    try {
      step = this.#machine.step(this.#program[index]!);
    } catch (e: unknown) {
      if (!(e instanceof MmuLockContended)) throw e;
      this.stats.retries++;
      this.#waiting.set(t, kvm.mmu_lock_owner);
    } finally {
      this.#stack.pop();
      kvm.current_thread = this.#stack[this.#stack.length - 1] ?? 0;
      kvm.stats.thread = kvm.current_thread;
    }
    if (step === null) return;
    q.shift();
    this.#onEnd(index, t);
    if (this.#retired.delete(index)) {
      // Reported when it retired; now that its thread is done, the state may be quiescent.
      this.#started.delete(index);
      const quiet = this.#started.size === 0 && this.#stack.length === 0;
      if (quiet && !this.#onSettled(index)) throw new StopRun("stopped");
      return;
    }
    this.#complete(index, t, step);
  }

  /** Reports op `index` of thread `t` as completed with `step`. */
  #complete(index: number, t: number, step: SutStep): void {
    const started = this.#started.get(index)!;
    this.#started.delete(index);
    const inFlight = [...this.#started.keys()];
    const c: Completion = {
      index,
      thread: t,
      step,
      started,
      completed: ++this.#clock,
      inFlight,
      quiescent: inFlight.length === 0 && this.#stack.length === 0,
      finishing: [...this.#retired].filter((i) => i !== index),
    };
    if (!this.#onComplete(c)) throw new StopRun("stopped");
  }

  /** The running op's result, decided early: it completes now (once). */
  #retire(step: SutStep): void {
    const t = this.#stack[this.#stack.length - 1];
    if (t === undefined) return;
    const index = this.#queues[t]![0]!;
    if (this.#retired.has(index)) return;
    this.#retired.add(index);
    this.#complete(index, t, step);
  }
}
