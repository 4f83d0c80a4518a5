/**
 * Time to first finding per injected bug: generated cases (run seed 3, mixed discipline, all
 * modes, one core) run with the bug switched on until a divergence appears that is not a known
 * KVM divergence and whose case passes with the bug switched off (so the bug, not baseline
 * noise, caused it). Printed once at load; the bench itself times one case with a bug on.
 * Run with `deno task bench`.
 */
import { caseDiscipline, caseSeed, type FuzzPlan, runFuzzCase } from "../../src/diff/fuzz_run.ts";
import { fuzzSigner, fuzzSource } from "../../src/cli/fuzz_source.ts";
import { runDifferential } from "../../src/diff/differential.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";
import { knownDivergenceOf } from "../../src/diff/known_divergences.ts";
import { INJECTED_BUGS } from "../../src/shadow/bugs.ts";

const SEED = 3;
const BUDGET_MS = 20_000;

for (const b of INJECTED_BUGS) {
  const plan: FuzzPlan = {
    seed: SEED,
    discipline: "mixed",
    modes: [],
    inject: [b.name],
    vcpus: null,
    host32: null,
  };
  const t0 = performance.now();
  let i = 0;
  let found: string | null = null;
  for (; performance.now() - t0 < BUDGET_MS && found === null; i++) {
    const o = runFuzzCase(i, plan, fuzzSource, fuzzSigner);
    if (!o.finding || knownDivergenceOf(o.finding.signature)) continue;
    const off = fuzzSource(caseSeed(SEED, i), caseDiscipline(plan, i), { ...plan, inject: [] });
    if (runDifferential(off, { audit: kvm_mmu_audit }).verdict.status !== "pass") continue;
    found = o.finding.signature;
  }
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    found
      ? `${b.name}: first finding caused by the bug at case ${i - 1}, ${s} s: ${found}`
      : `${b.name}: nothing in ${s} s (${i} cases)`,
  );
}

const plan: FuzzPlan = {
  seed: SEED,
  discipline: "mixed",
  modes: [],
  inject: ["invlpg_no_sync"],
  vcpus: null,
  host32: null,
};
let next = 0;
Deno.bench({
  name: "one generated case with invlpg_no_sync on (audit every step)",
  fn: () => void runFuzzCase(next++ % 1024, plan, fuzzSource, fuzzSigner),
});
