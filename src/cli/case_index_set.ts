/**
 * Sets of global fuzz case indices: which cases a run, a shard of a run, or a merge of them
 * completed. In memory a set is a sorted array of distinct indices (cheap to merge, to check for
 * overlaps and to skip while handing out the next cases); in a report it is written compactly as
 * `{ stride, ranges }`, each `[start, end]` range standing for `start, start + stride, …` below
 * `end`. A shard K/N that ran its first cases is one range with stride N; an unsharded run, or
 * the merge of every shard, is one range with stride 1.
 *
 * @module
 */

/** A set of case indices: sorted ascending, no duplicates. */
export type CaseIndexSet = readonly number[];

/** The report form of a set (`completed`): strided half-open ranges, sorted by start. */
export interface CompletedJson {
  /** Distance between consecutive indices of one range (1: every index). */
  stride: number;
  /** `[start, end]`: the indices start, start + stride, … that are below end. */
  ranges: [number, number][];
}

/** The set of `indices` (any order; duplicates are dropped). */
export function indexSetOf(indices: Iterable<number>): number[] {
  const sorted = [...indices].sort((a, b) => a - b);
  return sorted.filter((x, i) => i === 0 || x !== sorted[i - 1]);
}

/** The union of two sets. */
export function unionOf(a: CaseIndexSet, b: CaseIndexSet): number[] {
  const out: number[] = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i], y = b[j];
    if (y === undefined || (x !== undefined && x < y)) {
      out.push(x!);
      i++;
    } else if (x === undefined || y < x) {
      out.push(y);
      j++;
    } else {
      out.push(x);
      i++;
      j++;
    }
  }
  return out;
}

/** The lowest index in both sets, or null when they are disjoint. */
export function firstCommonIndex(a: CaseIndexSet, b: CaseIndexSet): number | null {
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i]! === b[j]!) return a[i]!;
    if (a[i]! < b[j]!) i++;
    else j++;
  }
  return null;
}

/** The ranges of `set` with one stride: maximal runs of indices `stride` apart, by start. */
function rangesWithStride(set: CaseIndexSet, stride: number): [number, number][] {
  const open = new Map<number, [number, number]>(); // residue -> [first, last]
  const out: [number, number][] = [];
  for (const x of set) {
    const r = x % stride;
    const run = open.get(r);
    if (run && run[1] + stride === x) run[1] = x;
    else {
      if (run) out.push([run[0], run[1] + 1]);
      open.set(r, [x, x]);
    }
  }
  for (const [first, last] of open.values()) out.push([first, last + 1]);
  return out.sort((p, q) => p[0] - q[0]);
}

/**
 * Writes `set` compactly: among the candidate strides (1 is always one), the one giving the
 * fewest ranges, the smaller stride on a tie. The result depends only on the set and the
 * candidates, so equal sets written with the same candidates give equal JSON.
 *
 * @example A shard's cases are one range; all shards together are one range of stride 1
 * ```ts
 * import { encodeIndexSet } from "./case_index_set.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(encodeIndexSet([1, 4, 7, 10], [3]), { stride: 3, ranges: [[1, 11]] });
 * deepStrictEqual(encodeIndexSet([0, 1, 2, 3, 4, 5], [3]), { stride: 1, ranges: [[0, 6]] });
 * ```
 */
export function encodeIndexSet(set: CaseIndexSet, strides: readonly number[]): CompletedJson {
  let best: CompletedJson = { stride: 1, ranges: rangesWithStride(set, 1) };
  for (const stride of [...new Set(strides)].sort((a, b) => a - b)) {
    if (stride <= 1) continue;
    const ranges = rangesWithStride(set, stride);
    if (ranges.length < best.ranges.length) best = { stride, ranges };
  }
  return best;
}

/** How many indices a report's `completed` holds (without expanding it). */
export function indexCount(c: CompletedJson): number {
  return c.ranges.reduce(
    (n, [start, end]) => n + Math.max(0, Math.ceil((end - start) / c.stride)),
    0,
  );
}

/**
 * Expands a report's `completed` into a set. A range that repeats an index of another range is
 * reported by its position in `ranges` (the later of the two).
 */
export function decodeIndexSet(c: CompletedJson): { set: number[] } | { overlap: number } {
  const tagged: [number, number][] = []; // [index, range position]
  c.ranges.forEach(([start, end], k) => {
    for (let x = start; x < end; x += c.stride) tagged.push([x, k]);
  });
  tagged.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  for (let i = 1; i < tagged.length; i++) {
    if (tagged[i]![0] === tagged[i - 1]![0]) return { overlap: tagged[i]![1] };
  }
  return { set: tagged.map(([x]) => x) };
}
