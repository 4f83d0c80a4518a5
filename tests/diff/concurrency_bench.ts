/**
 * The cost of concurrency: generated cases with 1 and with 4 vCPUs, run as the fuzzer runs them
 * (the scheduler interleaving the vCPUs and the host thread at every atomic step, the decider
 * choosing, the concurrent contract checking), and the same 1-vCPU cases run sequentially (no
 * schedule: the scheduler's own cost). Each iteration runs 16 cases; the lines printed at load
 * give steps/s per variant (one core), and `deno bench` gives the time per iteration, so
 * steps/s = 16 × steps-per-case / time-per-iteration. Run with `deno task bench`.
 */
import type { Case } from "../../src/model/case.ts";
import { type CaseSource, type FuzzPlan, runFuzzCase } from "../../src/diff/fuzz_run.ts";
import { fuzzSigner, fuzzSource } from "../../src/cli/fuzz_source.ts";

const planOf = (vcpus: number): FuzzPlan => ({
  seed: 42,
  discipline: "mixed",
  modes: [],
  inject: [],
  vcpus,
  host32: null,
});

/** The generator with the schedule removed: the sequential contract, no scheduler. */
const sequential: CaseSource = (seed, discipline, plan) => {
  const { schedule: _, ...c }: Case = fuzzSource(seed, discipline, plan);
  return c;
};

const VARIANTS = [
  { name: "1 vCPU, sequential (no schedule)", plan: planOf(1), source: sequential },
  { name: "1 vCPU, concurrent", plan: planOf(1), source: fuzzSource },
  { name: "4 vCPUs, concurrent", plan: planOf(4), source: fuzzSource },
] as const;

const counters = new Map<string, number>();
const batch = (v: (typeof VARIANTS)[number]) => {
  let steps = 0;
  let next = counters.get(v.name) ?? 0;
  for (let i = 0; i < 16; i++) {
    steps += runFuzzCase(next++ % 4096, v.plan, v.source, fuzzSigner).steps;
  }
  counters.set(v.name, next);
  return steps;
};

for (const v of VARIANTS) {
  const t0 = performance.now();
  let steps = 0;
  for (let k = 0; k < 8; k++) steps += batch(v);
  const s = (performance.now() - t0) / 1000;
  console.log(
    `${v.name} (warm-up, 128 cases): ${(steps / 128).toFixed(1)} steps/case, ` +
      `${(128 / s).toFixed(0)} cases/s, ${(steps / s).toFixed(0)} steps/s on one core`,
  );
}

for (const v of VARIANTS) {
  Deno.bench({
    name: `${v.name} (16 cases per iteration)`,
    group: "concurrency",
    baseline: v.name.startsWith("1 vCPU, concurrent"),
    fn: () => void batch(v),
  });
}
