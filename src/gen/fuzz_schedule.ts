/**
 * The interleaving of a generated concurrent case: a seeded decider for the scheduler
 * (`src/shadow/scheduler.ts`). Each case draws how often a running thread is preempted at an
 * atomic step (rarely, to reach deep windows such as the one between `mmu_spte_update`'s read and
 * its write; or often, for many short ones), then which ready thread runs. The scheduler records
 * every choice, and the finding's case carries that record as its `schedule`.
 *
 * @module
 */
import type { Decider } from "../shadow/scheduler.ts";
import { Prng } from "./prng.ts";

/** Preemption rates a case may draw (per atomic step). */
export const PREEMPT_RATES: readonly number[] = [0.01, 0.04, 0.12, 0.35];

/** The decider of the case seeded `seed`. */
export function scheduleDecider(seed: number): Decider {
  const prng = new Prng((seed ^ 0x2c1b_3c6d) >>> 0);
  const rate = PREEMPT_RATES[prng.below(PREEMPT_RATES.length)]!;
  const threshold = Math.floor(rate * 2 ** 32);
  return {
    preempt: (
      _running,
      ready,
    ) => (prng.next() < threshold ? ready[prng.below(ready.length)]! : null),
    start: (ready) => ready[prng.below(ready.length)]!,
  };
}
