/**
 * `deno task efficacy [--budget 60s] [--seeds 5] [--bugs a,b] [--json F] [--svg F] [--out DIR]`:
 * the efficacy benchmark of `src/efficacy/` on one core. Prints one line per hunt as it ends,
 * then a table per bug (found in how many seeds, median time and cases to the first finding,
 * median minimized size) and the control run's false positives.
 *
 * Exit status: 0 every bug was found in at least 80% of the seeds and the control run found
 * nothing; 1 otherwise (a false positive, or a bug below that target); 2 usage error.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { INJECTED_BUGS } from "../shadow/bugs.ts";
import { type EfficacyReport, type EfficacyRun, measureEfficacy } from "../efficacy/efficacy.ts";
import { efficacySvg } from "../efficacy/svg.ts";
import { parseCommandLine } from "./command_line.ts";
import { parseDuration } from "./minimize.ts";
import { writeFileAtomic } from "./write_atomic.ts";

const USAGE = `usage: deno task efficacy [--budget 60s] [--seeds 5] [--bugs a,b] [--json FILE]
                          [--svg FILE] [--out DIR] [--minimize 10s] [--max-cases N]
                          [--sweep MODE [--sweep-stride N]] [--quiet]

For each injected bug and each seed 1..N: fuzz with only that bug on until the first finding
the bug caused (it diverges with the bug on and passes with it off; documented KVM divergences
never count), or the budget; minimize that finding. Then a control run per seed with no bug:
any finding there is a false positive.
  --budget TIME     budget of one hunt (default 60s)
  --seeds N         seeds 1..N (default 5)
  --bugs a,b        only these bugs (default: the whole zoo; --list shows it)
  --minimize TIME   budget to minimize each first finding (default 10s; 0 = off)
  --max-cases N     also stop each hunt after N cases (reproducible figures)
  --sweep MODE      also run the exhaustive sweep of MODE (ia32e4, ia32e5, pae) per bug, to
                    its first finding: the second detector's column
  --sweep-stride N  sweep every N-th combination only (default 1: all)
  --json FILE       the report (shadow-mmu-efficacy-report v1)
  --svg FILE        the "bugs found over time" plot
  --out DIR         write each minimized reproducer as DIR/<bug>--seed-<N>.json
  --list            list the bugs of the zoo and exit
  --quiet           only the table
Exit status: 0 every bug found in >= 80% of the seeds and no false positive; 1 otherwise;
2 usage error.`;

function fmtMs(ms: number | null): string {
  if (ms === null) return "-";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function runLine(r: EfficacyRun): string {
  const who = r.bug ?? "control (no bug)";
  if (!r.found) {
    return `  ${who} seed ${r.seed}: ${r.bug ? "not found" : "no finding"} in ${fmtMs(r.ms)} ` +
      `(${r.cases} cases)`;
  }
  const size = r.minimized
    ? `${r.size!.ops} -> ${r.minimized.ops} ops, ${r.size!.pages} -> ${r.minimized.pages} pages`
    : `${r.size!.ops} ops`;
  return `  ${who} seed ${r.seed}: ${r.bug ? "found" : "FALSE POSITIVE"} at case ${r.cases - 1}, ` +
    `${fmtMs(r.ms)} (${size}): ${r.signature}`;
}

/** The per-bug table and the verdict lines. */
export function efficacyTable(report: EfficacyReport): string[] {
  const sweepOf = new Map(report.sweep.map((s) => [s.bug, s]));
  const rows = report.bugs.map((b) => {
    const s = sweepOf.get(b.bug);
    return [
      b.bug,
      `${b.found}/${b.seeds}`,
      fmtMs(b.medianMs),
      b.medianCases === null ? "-" : String(b.medianCases),
      b.medianOps === null ? "-" : String(b.medianOps),
      b.medianPages === null ? "-" : String(b.medianPages),
      ...(report.sweep.length === 0 ? [] : [
        s?.found ? `${s.combinations} (${fmtMs(s.ms)})` : `missed (${s?.combinations ?? 0})`,
      ]),
    ];
  });
  const head = ["bug", "found", "median time", "median cases", "min. ops", "min. pages"];
  if (report.sweep.length > 0) head.push(`sweep ${report.plan.sweep?.mode ?? ""}`);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ") + " |";
  const out = [line(head), "| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |"];
  for (const r of rows) out.push(line(r));
  const target = Math.ceil(report.plan.seeds * 0.8);
  const good = report.bugs.filter((b) => b.found >= target).length;
  const medians = report.bugs.map((b) => b.medianMs).filter((m): m is number => m !== null);
  const sorted = [...medians].sort((a, b) => a - b);
  const mid = sorted.length === 0 ? null : sorted[sorted.length >> 1]!;
  out.push(
    "",
    `${good}/${report.bugs.length} bugs found in >= ${target} of ${report.plan.seeds} seeds; ` +
      `median of the per-bug median times ${fmtMs(mid)}; ` +
      `${
        report.bugs.filter((b) => (b.medianMs ?? Infinity) <= 5000).length
      } bugs with a median <= 5 s`,
    ...(report.sweep.length === 0 ? [] : [
      `fuzzing finds ${
        report.bugs.filter((b) => b.found > 0 && !sweepOf.get(b.bug)?.found).length
      } bug(s) the sweep misses; the sweep finds ${
        report.sweep.filter((s) => s.found && report.bugs.find((b) => b.bug === s.bug)!.found === 0)
          .length
      } fuzzing misses; both find ${
        report.sweep.filter((s) => s.found && report.bugs.find((b) => b.bug === s.bug)!.found > 0)
          .length
      }`,
    ]),
    report.plan.control
      ? `control (no bug, ${report.plan.seeds} x ${fmtMs(report.plan.budgetMs)}): ` +
        `${report.falsePositives} false positive(s), ` +
        `${report.control.reduce((n, r) => n + r.cases, 0)} cases`
      : "control: not run",
  );
  return out;
}

/** Runs the efficacy command; returns the exit status. */
export function main(args: string[]): number {
  const parsed = parseCommandLine("efficacy", USAGE, args, {
    budget: { type: "string" },
    seeds: { type: "string" },
    bugs: { type: "string" },
    minimize: { type: "string" },
    json: { type: "string" },
    svg: { type: "string" },
    out: { type: "string" },
    "max-cases": { type: "string" },
    sweep: { type: "string" },
    "sweep-stride": { type: "string" },
    list: { type: "boolean" },
    quiet: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const v = parsed.values;
  if (v.list) {
    for (const b of INJECTED_BUGS) console.log(`${b.name}: ${b.description}`);
    return 0;
  }
  const usage = (m: string) => {
    console.error(`efficacy: ${m}\n${USAGE}`);
    return 2;
  };
  if (parsed.positionals.length > 0) return usage(`unexpected argument ${parsed.positionals[0]}`);
  const budgetMs = parseDuration(v.budget ?? "60s");
  if (budgetMs === null || budgetMs <= 0) return usage("--budget: expected a duration such as 60s");
  const minimizeMs = parseDuration(v.minimize ?? "10s");
  if (minimizeMs === null) return usage("--minimize: expected a duration such as 10s");
  const seeds = Number(v.seeds ?? "5");
  if (!Number.isInteger(seeds) || seeds < 1 || seeds > 1000) {
    return usage("--seeds: expected an integer from 1 to 1000");
  }
  const maxCases = v["max-cases"] === undefined ? undefined : Number(v["max-cases"]);
  if (maxCases !== undefined && (!Number.isInteger(maxCases) || maxCases < 1)) {
    return usage("--max-cases: expected a positive integer");
  }
  const modes = ["ia32e4", "ia32e5", "pae"] as const;
  const sweepMode = modes.find((m) => m === v.sweep);
  if (v.sweep !== undefined && sweepMode === undefined) {
    return usage(`--sweep: expected one of ${modes.join(", ")}`);
  }
  const stride = Number(v["sweep-stride"] ?? "1");
  if (!Number.isInteger(stride) || stride < 1) {
    return usage("--sweep-stride: expected a positive integer");
  }
  const known: readonly string[] = INJECTED_BUGS.map((b) => b.name);
  const bugs = v.bugs === undefined
    ? known
    : v.bugs.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = bugs.filter((b) => !known.includes(b));
  if (unknown.length > 0 || bugs.length === 0) {
    return usage(
      `--bugs: unknown bug(s) ${unknown.join(", ") || "(none given)"}; --list shows the zoo`,
    );
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  console.log(
    `efficacy: ${bugs.length} bug(s) x ${seeds} seed(s), ${fmtMs(budgetMs)} per hunt, ` +
      `minimize ${fmtMs(minimizeMs)}, then the control run`,
  );
  const report = measureEfficacy(
    {
      bugs,
      seeds,
      budgetMs,
      minimizeMs,
      control: true,
      ...(maxCases === undefined ? {} : { maxCases }),
      sweep: sweepMode === undefined ? null : { mode: sweepMode, stride },
    },
    (r) => {
      if (!v.quiet) console.log(runLine(r));
    },
  );
  console.log("");
  for (const l of efficacyTable(report)) console.log(l);
  if (v.out) {
    const dir = resolve(base, v.out);
    mkdirSync(dir, { recursive: true });
    for (const r of report.runs) {
      if (r.caseText !== null) {
        writeFileAtomic(join(dir, `${r.bug}--seed-${r.seed}.json`), r.caseText);
      }
    }
  }
  if (v.json) writeFileAtomic(resolve(base, v.json), JSON.stringify(report, null, 2) + "\n");
  if (v.svg) writeFileAtomic(resolve(base, v.svg), efficacySvg(report));
  const target = Math.ceil(seeds * 0.8);
  return report.falsePositives === 0 && report.bugs.every((b) => b.found >= target) ? 0 : 1;
}

if (import.meta.main) Deno.exit(main(Deno.args));
