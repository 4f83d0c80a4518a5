/**
 * A fuzz worker (a Deno Worker of `fuzz.ts`): runs batches of global case indices and posts each
 * finding the moment it is found, then the batch's outcomes. Each case depends only on the run
 * plan and its index, so which worker runs it does not matter.
 *
 * Messages in: `{ plan, indices }`. Out: `{ type: "finding", finding }` per finding, then
 * `{ type: "batch", outcomes }` (outcomes without their findings' case text).
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { fuzzSigner, fuzzSource } from "./fuzz_source.ts";
import { type CaseOutcome, type FuzzPlan, runFuzzCase } from "../diff/fuzz_run.ts";

/** A batch request. */
export interface BatchRequest {
  readonly plan: FuzzPlan;
  /** Global case indices, in order (consecutive, or a shard's, or the gaps a resumed run fills). */
  readonly indices: readonly number[];
}

self.onmessage = (e: MessageEvent<BatchRequest>) => {
  const { plan, indices } = e.data;
  const outcomes: CaseOutcome[] = [];
  for (const i of indices) {
    const o = runFuzzCase(i, plan, fuzzSource, fuzzSigner);
    if (o.finding) self.postMessage({ type: "finding", finding: o.finding });
    outcomes.push(o.finding ? { ...o, finding: { ...o.finding, caseText: "" } } : o);
  }
  self.postMessage({ type: "batch", outcomes });
};
