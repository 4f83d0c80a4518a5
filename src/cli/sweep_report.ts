/**
 * The sweep command's report: a JSON document (`shadow-mmu-sweep-report` version 1) and the
 * summary text. Everything but the `timing` field depends only on the plan (modes, injected
 * bugs, limit, stride, stop-at-first), so two runs of the same plan give the same report apart
 * from `timing`.
 *
 * @module
 */
import type { SweepFinding, SweepKnown, SweepResult } from "../sweep/run_sweep.ts";

/** The report's format name. */
export const SWEEP_REPORT_FORMAT = "shadow-mmu-sweep-report";
/** The report's version. */
export const SWEEP_REPORT_VERSION = 1;

/** What the command was asked to run. */
export interface SweepPlan {
  readonly modes: readonly string[];
  readonly inject: readonly string[];
  readonly limit: number | null;
  readonly stride: number;
  readonly stopAtFirst: boolean;
}

/** The JSON report. */
export interface SweepReportJson {
  readonly format: typeof SWEEP_REPORT_FORMAT;
  readonly version: typeof SWEEP_REPORT_VERSION;
  readonly plan: SweepPlan;
  readonly modes: readonly {
    readonly mode: string;
    /** Combinations in the mode's space, planned for this run, and run. */
    readonly space: number;
    readonly planned: number;
    readonly combinations: number;
    readonly pass: number;
    readonly known: number;
    readonly unsupported: number;
    readonly divergences: number;
    /** Distinct finding signatures. */
    readonly findings: number;
    readonly stopped: boolean;
    /** Combinations run up to and including the first finding. */
    readonly firstFinding: number | null;
    readonly unsupportedReasons: Readonly<Record<string, number>>;
    readonly knownDivergences: readonly SweepKnown[];
  }[];
  /** Each finding without its case text, with the case file written for it (relative to the
   * working directory). */
  readonly findings: readonly (Omit<SweepFinding, "caseText"> & { readonly file: string })[];
  /** Wall-clock figures: the only part that changes between two runs of the same plan. */
  readonly timing: {
    readonly seconds: number;
    readonly modes: readonly {
      readonly mode: string;
      readonly seconds: number;
      readonly combinationsPerSecond: number;
      readonly firstFindingSeconds: number | null;
    }[];
  };
}

/** Builds the report from the results (in plan order) and the finding files by signature. */
export function sweepReport(
  plan: SweepPlan,
  results: readonly SweepResult[],
  files: ReadonlyMap<string, string>,
): SweepReportJson {
  return {
    format: SWEEP_REPORT_FORMAT,
    version: SWEEP_REPORT_VERSION,
    plan,
    modes: results.map((r) => ({
      mode: r.mode,
      space: r.space,
      planned: r.planned,
      combinations: r.combinations,
      pass: r.pass,
      known: r.known,
      unsupported: r.unsupported,
      divergences: r.divergences,
      findings: r.findings.length,
      stopped: r.stopped,
      firstFinding: r.firstFinding?.combinations ?? null,
      unsupportedReasons: r.unsupportedReasons,
      knownDivergences: r.knownDivergences,
    })),
    findings: results.flatMap((r) =>
      r.findings.map((f) => ({
        mode: f.mode,
        signature: f.signature,
        combination: f.combination,
        index: f.index,
        count: f.count,
        step: f.step,
        kind: f.kind,
        detail: f.detail,
        file: files.get(`${f.mode}\n${f.signature}`) ?? "",
      }))
    ),
    timing: {
      seconds: results.reduce((s, r) => s + r.seconds, 0),
      modes: results.map((r) => ({
        mode: r.mode,
        seconds: r.seconds,
        combinationsPerSecond: r.combinationsPerSecond,
        firstFindingSeconds: r.firstFinding?.seconds ?? null,
      })),
    },
  };
}

/** The summary of one mode's sweep, as text lines. */
export function sweepSummary(r: SweepResult, files: ReadonlyMap<string, string>): string[] {
  const of = r.planned < r.space ? ` (of ${r.planned} planned, space ${r.space})` : "";
  const lines = [
    `sweep ${r.mode}${r.inject.length ? ` inject ${r.inject.join(",")}` : ""}: ` +
    `${r.combinations} combinations${of}: ${r.pass} pass, ${r.known} known divergences, ` +
    `${r.unsupported} unsupported, ${r.divergences} divergences; ${r.seconds.toFixed(1)} s, ` +
    `${r.combinationsPerSecond.toFixed(0)} combinations/s`,
  ];
  const reasons = Object.entries(r.unsupportedReasons);
  if (reasons.length > 0) {
    lines.push(`  unsupported: ${reasons.map(([why, n]) => `${why}: ${n}`).join("; ")}`);
  }
  for (const k of r.knownDivergences) {
    lines.push(
      `  known divergence ${k.id}: ${k.count} combination(s), ${k.signature}, first: ${k.combination}`,
    );
  }
  if (r.firstFinding) {
    lines.push(
      `  first finding after ${r.firstFinding.combinations} combination(s), ` +
        `${r.firstFinding.seconds.toFixed(2)} s${r.stopped ? " (stopped there)" : ""}`,
    );
  }
  for (const f of r.findings) {
    const file = files.get(`${f.mode}\n${f.signature}`);
    lines.push(
      `  finding ${f.signature}: ${f.count} combination(s), first: ${f.combination}` +
        (file ? ` -> ${file}` : ""),
    );
  }
  return lines;
}
