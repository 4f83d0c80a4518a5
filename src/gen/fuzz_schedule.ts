/**
 * The interleaving of a generated concurrent case: a seeded decider for the scheduler
 * (`src/shadow/scheduler.ts`). Each case draws two preemption rates: one for the steps every
 * access passes many times (the CPU's reads of the shadow tables, lockless SPTE reads on a 64-bit
 * host), kept low so an op gets deep into its path; one for the protocol windows, where the
 * races live (between `mmu_spte_update`'s read and its write, the halves of a split SPTE,
 * around `mmu_lock`, before a cmpxchg, between remote-flush deliveries). Then a ready thread is
 * picked: the one whose op comes first in the program, at a third rate, else one at random.
 * With nothing running, ops start in program order. The scheduler records every choice, and a finding's case carries that record
 * as its `schedule`.
 *
 * @module
 */
import type { Decider } from "../shadow/scheduler.ts";
import { Prng } from "./prng.ts";

/** Preemption rates at the steps every access passes often. */
export const WALK_RATES: readonly number[] = [0, 0.01, 0.05];
/** Preemption rates at the protocol windows. */
export const WINDOW_RATES: readonly number[] = [0.05, 0.2, 0.5, 0.9];

/**
 * How often the thread that preempts is the one whose next op comes first in the program rather
 * than a random ready one. (With nothing running, the next op in the program starts: the
 * program order is random already, and following it keeps the generator's cross-vCPU patterns,
 * such as a store, another vCPU's walk through the table and the store again, in their order,
 * for the preemptions to overlap as written.)
 */
export const ORDER_RATES: readonly number[] = [0, 0.5, 0.9];

/**
 * The windows right after a thread drops `mmu_lock` (what it left for after the unlock races
 * with every other thread) are preempted at least this often.
 */
const RELEASE_RATE = 0.5;

/** The atomic steps an access passes at every level of every walk. */
const FREQUENT: ReadonlySet<string> = new Set(["cpu:walk", "__get_spte_lockless"]);

/** The decider of the case seeded `seed`. */
export function scheduleDecider(seed: number): Decider {
  const prng = new Prng((seed ^ 0x2c1b_3c6d) >>> 0);
  const walk = Math.floor(WALK_RATES[prng.below(WALK_RATES.length)]! * 2 ** 32);
  const windowRate = WINDOW_RATES[prng.below(WINDOW_RATES.length)]!;
  const window = Math.floor(windowRate * 2 ** 32);
  const release = Math.floor(Math.max(windowRate, RELEASE_RATE) * 2 ** 32);
  const order = Math.floor(ORDER_RATES[prng.below(ORDER_RATES.length)]! * 2 ** 32);
  const pick = (ready: readonly number[]) =>
    prng.next() < order ? ready[0]! : ready[prng.below(ready.length)]!;
  return {
    preempt: (_running, ready, step) => {
      const threshold = FREQUENT.has(step) ? walk : step === "mmu_lock:release" ? release : window;
      return prng.next() < threshold ? pick(ready) : null;
    },
    start: (ready) => ready[0]!,
  };
}
