/**
 * `fuzz --resume FILE`: the plan of a run that continues an earlier report. What the command
 * line leaves out (seed, discipline, modes, injected bugs, shard) is taken from the report; what
 * it gives must match the report, since a different plan would make different cases.
 *
 * @module
 */
import type { FuzzPlan } from "../diff/fuzz_run.ts";
import type { FuzzReportJson } from "./fuzz_report.ts";
import { completedSet, MergeError } from "./report_merge.ts";
import { readReport, ReportFileError } from "./report_schema.ts";
import type { Shard } from "./shard.ts";

/** The plan flags as given on the command line (null: not given). */
export interface PlanFlags {
  readonly seed: number | null;
  readonly discipline: FuzzPlan["discipline"] | null;
  readonly modes: readonly string[] | null;
  readonly inject: readonly string[] | null;
  readonly vcpus: number | null;
  readonly host32: boolean | null;
  readonly shard: Shard | null;
}

/** The report a run continues. */
export interface ResumedReport {
  readonly file: string;
  readonly report: FuzzReportJson;
  /** The case indices it completed. */
  readonly done: readonly number[];
}

/** A run's plan and shard, and the report it continues (if any). */
export interface ResolvedPlan {
  readonly plan: FuzzPlan;
  readonly shard: Shard | null;
  readonly resumed: ResumedReport | null;
}

/** A plan value as the flags spell it: `2/3`, `pae,ia32e4`, `[]` (none given), `none` (no shard). */
function show(value: unknown): string {
  if (value === null) return "none";
  if (Array.isArray(value)) return value.length === 0 ? "[]" : value.join(",");
  if (typeof value === "object" && "count" in value && "index" in value) {
    return `${value.index}/${value.count}`;
  }
  return JSON.stringify(value);
}

/** The plan of a fresh run: flags, or defaults (a random seed, mixed discipline, everything). */
export function freshPlan(flags: PlanFlags): ResolvedPlan {
  return {
    plan: {
      seed: flags.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!,
      discipline: flags.discipline ?? "mixed",
      modes: flags.modes ?? [],
      inject: flags.inject ?? [],
      vcpus: flags.vcpus,
      host32: flags.host32,
    },
    shard: flags.shard,
    resumed: null,
  };
}

/**
 * The plan of a run resuming report `file` (read at `path`): the report's, checked against the
 * flags given. A string is the error (naming the file and the JSON path).
 */
export function resumedPlan(
  flags: PlanFlags,
  file: string,
  path: string,
  generator: string,
): ResolvedPlan | string {
  let report: FuzzReportJson;
  let done: number[];
  try {
    report = readReport(file, path);
    done = completedSet(report, file);
  } catch (e: unknown) {
    if (e instanceof ReportFileError || e instanceof MergeError) return e.message;
    throw e;
  }
  const p = report.plan;
  const checks: [string, string, unknown, unknown][] = [
    ["$.generator", "this fuzzer is", report.generator, generator],
    ["$.plan.seed", "--seed is", p.seed, flags.seed],
    ["$.plan.discipline", "--discipline is", p.discipline, flags.discipline],
    ["$.plan.modes", "--mode gives", p.modes, flags.modes],
    ["$.plan.inject", "--inject gives", p.inject, flags.inject],
    ["$.plan.vcpus", "--vcpus is", p.vcpus, flags.vcpus],
    ["$.plan.host32", "--host32 is", p.host32, flags.host32],
    ["$.plan.shard", "--shard is", p.shard, flags.shard],
  ];
  for (const [where, flag, theirs, ours] of checks) {
    if (ours === null || JSON.stringify(theirs) === JSON.stringify(ours)) continue;
    return `${file}: ${where}: ${show(theirs)}, but ${flag} ${
      show(ours)
    }; --resume continues the same run (leave the flag out to take the report's)`;
  }
  return {
    plan: {
      seed: p.seed,
      discipline: p.discipline,
      modes: p.modes,
      inject: p.inject,
      vcpus: p.vcpus,
      host32: p.host32,
    },
    shard: p.shard,
    resumed: { file, report, done },
  };
}
