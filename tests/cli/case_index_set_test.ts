/**
 * Case index sets and shards: the compact `completed` form round-trips, picks the stride with
 * the fewest ranges, and a shard's pending indices skip what a resumed report already did.
 *
 * @module
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import {
  decodeIndexSet,
  encodeIndexSet,
  firstCommonIndex,
  indexCount,
  indexSetOf,
  unionOf,
} from "../../src/cli/case_index_set.ts";
import { parseShard, pendingCaseIndices } from "../../src/cli/shard.ts";

Deno.test("index sets: union, first common index, round trip through the compact form", () => {
  deepStrictEqual(unionOf([0, 3, 6], [1, 3, 7, 9]), [0, 1, 3, 6, 7, 9]);
  equal(firstCommonIndex([0, 3, 6, 9], [1, 4, 6, 9]), 6);
  equal(firstCommonIndex([0, 3], [1, 4]), null);
  deepStrictEqual(indexSetOf([5, 1, 5, 3]), [1, 3, 5]);
  // Shards 1/4 and 2/4 of 40 cases, 3/4 of 20: every residue is one range of stride 4.
  const ragged = indexSetOf([
    ...[...pendingCaseIndices({ index: 1, count: 4 }, 40, [])],
    ...[...pendingCaseIndices({ index: 2, count: 4 }, 40, [])],
    ...[...pendingCaseIndices({ index: 3, count: 4 }, 20, [])],
  ]);
  const c = encodeIndexSet(ragged, [1, 4]);
  deepStrictEqual(c, { stride: 4, ranges: [[0, 37], [1, 38], [2, 19]] });
  equal(indexCount(c), ragged.length);
  deepStrictEqual(decodeIndexSet(c), { set: ragged });
  // With stride 1 only, the same set takes many ranges.
  equal(encodeIndexSet(ragged, []).ranges.length, 10);
  deepStrictEqual(encodeIndexSet([], [3]), { stride: 1, ranges: [] });
  deepStrictEqual(decodeIndexSet({ stride: 2, ranges: [[0, 6], [4, 5]] }), { overlap: 1 });
});

Deno.test("shards: K/N parsing and pending indices (time budget, resumed gaps)", () => {
  for (const bad of ["0/3", "4/3", "x", "3", "1/0", "-1/3", "1.5/3", ""]) {
    equal(typeof parseShard(bad), "string", bad);
  }
  deepStrictEqual(parseShard("3/3"), { index: 3, count: 3 });
  const endless = pendingCaseIndices({ index: 3, count: 3 }, null, [2, 5, 11]);
  deepStrictEqual([0, 1, 2, 3].map(() => endless.next().value), [8, 14, 17, 20]);
  deepStrictEqual([...pendingCaseIndices(null, 6, [0, 1, 3])], [2, 4, 5]);
  deepStrictEqual([...pendingCaseIndices({ index: 1, count: 2 }, 0, [])], []);
});
