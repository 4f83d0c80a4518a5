/**
 * Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input",
 * TSE 2002): `ddmin` reduces a list to a 1-minimal sublist that still fails, testing complements
 * of ever finer partitions. Deterministic: partitions and the order of tests are fixed, so the
 * same input and predicate give the same result (unless the budget runs out first).
 *
 * @module
 */

/** How many more tests a reduction may run; shared by every pass of one minimization. */
export interface Budget {
  /** Returns false once the budget is spent (then passes stop and keep what they have). */
  spend(): boolean;
  /** Whether the budget ran out at some point. */
  readonly exhausted: boolean;
}

/** A budget of at most `tests` predicate calls and `ms` milliseconds of wall-clock time. */
export function budgetOf(
  tests: number,
  ms: number,
  now: () => number = performance.now.bind(performance),
): Budget {
  const deadline = now() + ms;
  let left = tests;
  let exhausted = false;
  return {
    spend() {
      if (exhausted) return false;
      if (left <= 0 || now() > deadline) {
        exhausted = true;
        return false;
      }
      left--;
      return true;
    },
    get exhausted() {
      return exhausted;
    },
  };
}

/**
 * `ddmin`: the smallest sublist of `items` (order kept) for which `fails` holds that the
 * algorithm reaches; 1-minimal (removing any single item makes `fails` false) unless the budget
 * ran out. `fails(items)` is assumed true and not tested. Each call of `fails` spends one test.
 */
export function ddmin<T>(
  items: readonly T[],
  fails: (subset: readonly T[]) => boolean,
  budget: Budget,
): T[] {
  let current = [...items];
  let n = 2;
  while (current.length >= 2) {
    const chunks = partition(current, Math.min(n, current.length));
    let reduced = false;
    // Try each chunk alone, then each complement (the order of the original paper).
    for (const chunk of chunks) {
      if (chunk.length === current.length) continue;
      if (!budget.spend()) return current;
      if (fails(chunk)) {
        current = chunk;
        n = 2;
        reduced = true;
        break;
      }
    }
    if (!reduced && chunks.length > 2) {
      for (let i = 0; i < chunks.length; i++) {
        const complement = chunks.flatMap((c, j) => (j === i ? [] : c));
        if (!budget.spend()) return current;
        if (fails(complement)) {
          current = complement;
          n = Math.max(n - 1, 2);
          reduced = true;
          break;
        }
      }
    }
    if (reduced) continue;
    if (n >= current.length) break;
    n = Math.min(2 * n, current.length);
  }
  // A single remaining item: the empty list may still fail.
  if (current.length === 1 && budget.spend() && fails([])) return [];
  return current;
}

/** `items` cut into `n` contiguous chunks of nearly equal size (the first ones one longer). */
function partition<T>(items: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    const size = Math.floor(items.length / n) + (i < items.length % n ? 1 : 0);
    out.push(items.slice(start, start + size));
    start += size;
  }
  return out;
}
