/**
 * The efficacy benchmark: how quickly the harness finds bugs planted on purpose (the method of
 * Magma and FuzzBench). For each bug of the zoo and each seed, one {@link hunt} with only that
 * bug on; each first finding is minimized and its size recorded; then a control run per seed
 * with no bug, where any finding that is not a documented KVM divergence is a false positive.
 *
 * The per-bug figures are the ones fuzzing papers report: in how many seeds the bug was found,
 * the median time and number of cases to the first finding (over the seeds that found it), and
 * the median size of the minimized reproducer. With `sweep`, the exhaustive permission sweep
 * (`src/sweep/`) is run as a second detector per bug, to the first finding: which bugs one
 * detector finds and the other misses.
 *
 * @module
 */
import { encodeCase, parseCase } from "../corpus/load_case.ts";
import { caseSize, minimizeCase } from "../minimize/minimize.ts";
import { hunt, type HuntResult } from "./hunt.ts";
import { runSweep } from "../sweep/run_sweep.ts";
import type { SweepMode } from "../sweep/sweep_layout.ts";

/** The report's format name. */
export const EFFICACY_FORMAT = "shadow-mmu-efficacy-report";
/** The report's format version. */
export const EFFICACY_VERSION = 1;

/** What to measure. */
export interface EfficacyPlan {
  /** The bugs, in the order to run them. */
  readonly bugs: readonly string[];
  /** Seeds 1..seeds. */
  readonly seeds: number;
  /** Budget of one hunt, in milliseconds. */
  readonly budgetMs: number;
  /** Budget to minimize each first finding, in milliseconds (0: do not minimize). */
  readonly minimizeMs: number;
  /** Also run the control (no bug) for every seed. */
  readonly control: boolean;
  /** At most this many cases per hunt as well (tests, reproducible figures); default none. */
  readonly maxCases?: number;
  /** Run the sweep of this mode per bug (every `stride`-th combination), or not. */
  readonly sweep?: { readonly mode: SweepMode; readonly stride: number } | null;
}

/** What the sweep did with one bug on. */
export interface SweepDetection {
  readonly bug: string;
  readonly found: boolean;
  /** Combinations run (to the first finding, or all of the sample). */
  readonly combinations: number;
  readonly ms: number;
  readonly signature: string | null;
  /** The first finding's combination name. */
  readonly combination: string | null;
}

/** One hunt's row, with the minimized reproducer. */
export interface EfficacyRun {
  readonly bug: string | null;
  readonly seed: number;
  readonly found: boolean;
  readonly ms: number;
  readonly cases: number;
  readonly signature: string | null;
  /** Ops and pages of the case as found, and after minimization (null when not minimized). */
  readonly size: { readonly ops: number; readonly pages: number } | null;
  readonly minimized: { readonly ops: number; readonly pages: number } | null;
  readonly minimizeMs: number | null;
  /** The minimized reproducer (or the case as found), as a case file's text. */
  readonly caseText: string | null;
  readonly known: number;
  readonly baseline: number;
}

/** The per-bug summary. */
export interface BugSummary {
  readonly bug: string;
  readonly found: number;
  readonly seeds: number;
  /** Medians over the seeds that found the bug (null when none did). */
  readonly medianMs: number | null;
  readonly medianCases: number | null;
  readonly medianOps: number | null;
  readonly medianPages: number | null;
}

/** The whole measurement. */
export interface EfficacyReport {
  readonly format: typeof EFFICACY_FORMAT;
  readonly version: typeof EFFICACY_VERSION;
  readonly plan: EfficacyPlan;
  readonly runs: readonly EfficacyRun[];
  readonly bugs: readonly BugSummary[];
  /** Control runs (no bug); each finding there is a false positive. */
  readonly control: readonly EfficacyRun[];
  readonly falsePositives: number;
  /** The sweep as a second detector, per bug (empty without `plan.sweep`). */
  readonly sweep: readonly SweepDetection[];
}

/** The median of `xs` (mean of the middle two for an even count); null for none. */
export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function runOf(r: HuntResult, minimizeMs: number): EfficacyRun {
  const base = {
    bug: r.bug,
    seed: r.seed,
    found: r.finding !== null,
    ms: r.ms,
    cases: r.cases,
    known: r.known,
    baseline: r.baseline,
  };
  if (r.finding === null) {
    return {
      ...base,
      signature: null,
      size: null,
      minimized: null,
      minimizeMs: null,
      caseText: null,
    };
  }
  const loaded = parseCase(r.finding.caseText, `${r.bug} seed ${r.seed}`);
  if (!loaded.ok) throw new Error(`a finding does not parse: ${loaded.error.message}`);
  const before = caseSize(loaded.case);
  const size = { ops: before.ops, pages: before.pages };
  if (minimizeMs <= 0) {
    return {
      ...base,
      signature: r.finding.signature,
      size,
      minimized: null,
      minimizeMs: null,
      caseText: r.finding.caseText,
    };
  }
  const t0 = performance.now();
  const m = minimizeCase(loaded.case, { budgetMs: minimizeMs, signature: r.finding.signature });
  return {
    ...base,
    signature: r.finding.signature,
    size,
    minimized: { ops: m.after.ops, pages: m.after.pages },
    minimizeMs: performance.now() - t0,
    caseText: encodeCase(m.case),
  };
}

/** Summarizes the runs of one bug. */
export function summarizeBug(bug: string, runs: readonly EfficacyRun[]): BugSummary {
  const mine = runs.filter((r) => r.bug === bug);
  const hits = mine.filter((r) => r.found);
  const sizes = hits.map((r) => r.minimized ?? r.size!);
  return {
    bug,
    found: hits.length,
    seeds: mine.length,
    medianMs: median(hits.map((r) => r.ms)),
    medianCases: median(hits.map((r) => r.cases)),
    medianOps: median(sizes.map((s) => s.ops)),
    medianPages: median(sizes.map((s) => s.pages)),
  };
}

/**
 * Runs the benchmark. `onRun` sees each run as it completes (for a progress line). Runs are in
 * plan order: every seed of the first bug, then the next bug, then the control runs.
 */
export function measureEfficacy(
  plan: EfficacyPlan,
  onRun: (r: EfficacyRun) => void = () => {},
): EfficacyReport {
  const runs: EfficacyRun[] = [];
  for (const bug of plan.bugs) {
    for (let seed = 1; seed <= plan.seeds; seed++) {
      const r = runOf(
        hunt({ bug, seed, budgetMs: plan.budgetMs, maxCases: plan.maxCases }),
        plan.minimizeMs,
      );
      runs.push(r);
      onRun(r);
    }
  }
  const control: EfficacyRun[] = [];
  if (plan.control) {
    for (let seed = 1; seed <= plan.seeds; seed++) {
      const r = runOf(
        hunt({ bug: null, seed, budgetMs: plan.budgetMs, maxCases: plan.maxCases }),
        0,
      );
      control.push(r);
      onRun(r);
    }
  }
  const sweep: SweepDetection[] = [];
  for (const bug of plan.sweep ? plan.bugs : []) {
    const s = runSweep({
      mode: plan.sweep!.mode,
      inject: [bug],
      stride: plan.sweep!.stride,
      stopAtFirst: true,
    });
    const f = s.findings[0] ?? null;
    sweep.push({
      bug,
      found: f !== null,
      combinations: s.firstFinding?.combinations ?? s.combinations,
      ms: (s.firstFinding?.seconds ?? s.seconds) * 1000,
      signature: f?.signature ?? null,
      combination: f?.combination ?? null,
    });
  }
  return {
    format: EFFICACY_FORMAT,
    version: EFFICACY_VERSION,
    plan,
    runs,
    bugs: plan.bugs.map((b) => summarizeBug(b, runs)),
    control,
    falsePositives: control.filter((r) => r.found).length,
    sweep,
  };
}
