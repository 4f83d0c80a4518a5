/**
 * `deno task report merge A.json B.json … [--json OUT] [--junit OUT]`: merges the JSON reports
 * of the shards of a fuzz run (or of resumed pieces of one) into one report, as if one run had
 * done every case: the inputs must share the generator and plan (seed, discipline, modes,
 * injected bugs), be shards of the same count and cover disjoint case indices. Prints the
 * summary and writes the merged JSON and JUnit reports.
 *
 * Exit status: 0 nothing found, 1 findings (or a corpus case that did not behave as documented),
 * 2 usage or input error.
 *
 * @module
 */
import { resolve } from "node:path";
import { parseCommandLine } from "./command_line.ts";
import { type FuzzReportJson, junitXml, summaryText } from "./fuzz_report.ts";
import { MergeError, mergeReports, type ReportPiece } from "./report_merge.ts";
import { readReport, ReportFileError } from "./report_schema.ts";
import { writeFileAtomic } from "./write_atomic.ts";

const USAGE = `usage: deno task report merge FILE... [--json OUT] [--junit OUT]

Merges fuzz reports (deno task fuzz --json) of the shards of one run (--shard K/N), or of pieces
of one run (--resume), into one report: counts and coverage are summed, each finding keeps its
first case. The inputs must have the same seed and plan and cover different cases.
  --json OUT    write the merged JSON report
  --junit OUT   write the merged report as JUnit XML
Timing: elapsedSeconds is the longest input's (shards run side by side), workers the sum, and
the rates are the totals over elapsedSeconds.
Exit status: 0 nothing found, 1 findings, 2 usage or input error.`;

/** When every input is a shard of N and some shards of the run are absent: which. */
function missingShards(reports: readonly FuzzReportJson[]): string | null {
  const shards = reports.map((r) => r.plan.shard);
  const count = shards[0]?.count;
  if (count === undefined || shards.some((s) => s === null)) return null;
  const seen = new Set(shards.map((s) => s!.index));
  const absent = Array.from({ length: count }, (_, i) => i + 1).filter((k) => !seen.has(k));
  if (absent.length === 0) return null;
  const shown = absent.length > 10 ? `${absent.slice(0, 10).join(", ")}, …` : absent.join(", ");
  return `shard(s) ${shown} of ${count} missing: their cases are not in the merged report`;
}

/** Runs the report command; returns the exit status. */
export function main(args: string[]): number {
  const parsed = parseCommandLine("report", USAGE, args, {
    json: { type: "string" },
    junit: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [command, ...files] = positionals;
  if (command !== "merge" || files.length === 0) {
    const why = command === "merge"
      ? "merge: no reports given"
      : command === undefined
      ? "no command"
      : `unknown command "${command}"`;
    console.error(`report: ${why}\n${USAGE}`);
    return 2;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  let merged: FuzzReportJson;
  let pieces: ReportPiece[];
  try {
    pieces = files.map((file) => ({ file, report: readReport(file, resolve(base, file)) }));
    merged = mergeReports(pieces, "parallel");
  } catch (e: unknown) {
    if (!(e instanceof ReportFileError || e instanceof MergeError)) throw e;
    for (const line of e.message.split("\n")) console.error(`report merge: ${line}`);
    return 2;
  }
  const missing = missingShards(pieces.map((p) => p.report));
  if (missing) console.error(`report merge: warning: ${missing}`);
  console.log(summaryText(merged).join("\n"));
  if (values.json) {
    writeFileAtomic(resolve(base, values.json), JSON.stringify(merged, null, 2) + "\n");
  }
  if (values.junit) writeFileAtomic(resolve(base, values.junit), junitXml(merged));
  return merged.findings.length > 0 || (merged.corpus?.unexpected.length ?? 0) > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
