/**
 * Shards of a fuzz run: `--shard K/N` runs the global case indices i with i % N = K - 1, each
 * with its global seed, so the N shards of a run partition its cases and a finding of a shard is
 * the same case as in the unsharded run. Also the order in which a run (a shard, or a resumed
 * run) hands out its pending case indices.
 *
 * @module
 */
import type { CaseIndexSet } from "./case_index_set.ts";

/** Shard `index` (1-based) of `count`. */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/**
 * Parses `K/N` (1 ≤ K ≤ N); a string is the error message.
 *
 * @example
 * ```ts
 * import { parseShard } from "./shard.ts";
 * import { deepStrictEqual, equal } from "node:assert/strict";
 * deepStrictEqual(parseShard("2/3"), { index: 2, count: 3 });
 * equal(typeof parseShard("4/3"), "string");
 * ```
 */
export function parseShard(text: string): Shard | string {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = Number(m?.[1]), count = Number(m?.[2]);
  if (!m || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count > 0xffff_ffff) {
    return `--shard must be K/N with 1 ≤ K ≤ N, got "${text}"`;
  }
  if (count < 1 || index < 1 || index > count) {
    return `--shard K/N needs 1 ≤ K ≤ N, got "${text}"`;
  }
  return { index, count };
}

/** `shard-K-of-N`, for file names; "" for no shard. */
export function shardName(shard: Shard | null): string {
  return shard ? `shard-${shard.index}-of-${shard.count}` : "";
}

/**
 * The global case indices a run hands out, in increasing order: those of its shard (every index
 * without one), below `runs` when it has a case budget (endless otherwise), skipping `done`.
 *
 * @example Shard 2/3 of 10 cases, of which case 4 is already done
 * ```ts
 * import { pendingCaseIndices } from "./shard.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual([...pendingCaseIndices({ index: 2, count: 3 }, 10, [4])], [1, 7]);
 * ```
 */
export function* pendingCaseIndices(
  shard: Shard | null,
  runs: number | null,
  done: CaseIndexSet,
): Generator<number> {
  const step = shard?.count ?? 1;
  let d = 0;
  for (let i = shard ? shard.index - 1 : 0; runs === null || i < runs; i += step) {
    while (d < done.length && done[d]! < i) d++;
    if (done[d] !== i) yield i;
  }
}
