/**
 * One hunt of the efficacy benchmark: fuzz with exactly one injected bug switched on (or none,
 * for the control run) until the first finding the bug caused, or the budget. "Caused by the
 * bug" follows the method of Magma and FuzzBench: the finding's case must diverge with the bug
 * on and pass with it off, so baseline noise (a known KVM divergence, or a case that diverges
 * anyway) never counts as finding the bug. The control run has no bug: every finding there that
 * is not a documented KVM divergence is a false positive.
 *
 * Deterministic apart from where the time budget cuts the run: case `i` of seed `s` is the same
 * case in every run.
 *
 * @module
 */
import { type FuzzPlan, runFuzzCase } from "../diff/fuzz_run.ts";
import { parseCase } from "../corpus/load_case.ts";
import { fuzzSigner, fuzzSource } from "../cli/fuzz_source.ts";
import { runDifferential } from "../diff/differential.ts";
import { knownDivergenceOf } from "../diff/known_divergences.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";

/** What to hunt. */
export interface HuntPlan {
  /** The injected bug, or `null` for the control run. */
  readonly bug: string | null;
  /** The run seed (case `i` gets `caseSeed(seed, i)`, as in `deno task fuzz`). */
  readonly seed: number;
  /** Wall-clock budget in milliseconds. */
  readonly budgetMs: number;
  /** Also a case budget (for tests and reproducible figures); default unlimited. */
  readonly maxCases?: number | undefined;
}

/** The first finding of a hunt. */
export interface HuntFinding {
  /** Index of the case in the run. */
  readonly index: number;
  readonly signature: string;
  /** The case file's text, with the bug on. */
  readonly caseText: string;
}

/** What one hunt found. */
export interface HuntResult {
  readonly bug: string | null;
  readonly seed: number;
  /** Cases run, including the finding's. */
  readonly cases: number;
  /** Milliseconds to the finding (or the whole hunt when nothing was found). */
  readonly ms: number;
  /** The first finding the bug caused (control run: the first false positive), or null. */
  readonly finding: HuntFinding | null;
  /** Findings skipped because they are documented KVM divergences. */
  readonly known: number;
  /** Findings skipped because the case diverges with the bug off as well. */
  readonly baseline: number;
}

/**
 * True when the finding's case passes with the bug off: the same ops, and for a concurrent case
 * the schedule the finding recorded.
 */
function passesWithoutBug(caseText: string): boolean {
  const load = parseCase(caseText, "finding");
  if (!load.ok) throw new Error(`a finding's case does not load: ${load.error}`);
  const off = { ...load.case, sut: { ...load.case.sut, inject: [] } };
  return runDifferential(off, { audit: kvm_mmu_audit }).verdict.status === "pass";
}

/** Runs one hunt (see the module doc). `now` is injectable for tests. */
export function hunt(p: HuntPlan, now: () => number = () => performance.now()): HuntResult {
  const plan: FuzzPlan = {
    seed: p.seed,
    discipline: "mixed",
    modes: [],
    inject: p.bug === null ? [] : [p.bug],
    vcpus: null,
    host32: null,
  };
  const t0 = now();
  let known = 0;
  let baseline = 0;
  let i = 0;
  const max = p.maxCases ?? Number.POSITIVE_INFINITY;
  while (i < max && now() - t0 < p.budgetMs) {
    const o = runFuzzCase(i, plan, fuzzSource, fuzzSigner);
    i++;
    if (!o.finding) continue;
    if (knownDivergenceOf(o.finding.signature)) {
      known++;
      continue;
    }
    if (p.bug !== null && !passesWithoutBug(o.finding.caseText)) {
      baseline++;
      continue;
    }
    const finding = {
      index: o.index,
      signature: o.finding.signature,
      caseText: o.finding.caseText,
    };
    return { bug: p.bug, seed: p.seed, cases: i, ms: now() - t0, finding, known, baseline };
  }
  return { bug: p.bug, seed: p.seed, cases: i, ms: now() - t0, finding: null, known, baseline };
}
