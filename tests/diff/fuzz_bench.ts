/**
 * Differential throughput per core: generated cases run through the oracle and the SUT with the
 * audit after every step (what one fuzz worker does). Each iteration runs 16 cases; the line
 * printed at load gives steps per case so steps/s = 16 × steps-per-case / time-per-iteration.
 * Run with `deno task bench`.
 */
import { type FuzzPlan, runFuzzCase } from "../../src/diff/fuzz_run.ts";
import { fuzzSigner, fuzzSource } from "../../src/cli/fuzz_source.ts";

const plan: FuzzPlan = {
  seed: 42,
  discipline: "mixed",
  modes: [],
  inject: [],
  vcpus: null,
  host32: null,
};
let next = 0;
const batch = () => {
  let steps = 0;
  for (let i = 0; i < 16; i++) {
    steps += runFuzzCase(next++ % 4096, plan, fuzzSource, fuzzSigner).steps;
  }
  return steps;
};
{
  const t0 = performance.now();
  let steps = 0;
  for (let k = 0; k < 8; k++) steps += batch();
  const s = (performance.now() - t0) / 1000;
  console.log(
    `differential (warm-up, 128 cases): ${(steps / 128).toFixed(1)} steps/case, ` +
      `${(128 / s).toFixed(0)} cases/s, ${(steps / s).toFixed(0)} steps/s on one core`,
  );
}

Deno.bench({
  name: "differential fuzz cases (16 per iteration, audit every step)",
  fn: () => void batch(),
});
