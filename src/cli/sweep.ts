/**
 * `deno task sweep [--mode M]... [--inject BUG]... [--limit N] [--stride N] [--stop-at-first]
 * [--json FILE] [--out DIR] [--quiet]`: the exhaustive sweep of the permission space
 * kvm-unit-tests x86/access.c covers (`src/sweep/`), every combination a fresh case run through
 * the oracle and the SUT. Per mode it prints the combinations, verdicts, time and rate, and one
 * line per distinct finding; each finding is written atomically to `--out` as a replayable case.
 *
 * Exit status: 0 no divergence, 1 a divergence (a finding), 2 usage error.
 *
 * @module
 */
import { join, relative, resolve } from "node:path";
import { slugOf } from "../corpus/slug.ts";
import { runSweep, type SweepProgress, type SweepResult } from "../sweep/run_sweep.ts";
import { SWEEP_MODES, type SweepMode } from "../sweep/sweep_layout.ts";
import { INJECTED_BUGS } from "../shadow/bugs.ts";
import { parseCommandLine } from "./command_line.ts";
import { type SweepPlan, sweepReport, sweepSummary } from "./sweep_report.ts";
import { writeFileAtomic } from "./write_atomic.ts";

/** The modes swept when no `--mode` is given. */
const DEFAULT_MODES: readonly SweepMode[] = ["ia32e4", "ia32e5"];

/** `words` joined by ", " in lines of at most `width` characters, each indented by `indent`. */
function wrap(words: readonly string[], indent: number, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const [i, w] of words.entries()) {
    const item = i < words.length - 1 ? `${w},` : w;
    if (line && indent + line.length + 1 + item.length > width) {
      lines.push(line);
      line = item;
    } else line = line ? `${line} ${item}` : item;
  }
  if (line) lines.push(line);
  return lines.map((l) => " ".repeat(indent) + l).join("\n");
}

const USAGE =
  `usage: deno task sweep [--mode M]... [--inject BUG]... [--limit N] [--stride N] [--stop-at-first]
                        [--json FILE] [--out DIR] [--quiet]

Runs every legal combination of PDE/PTE flags, one extra (reserved, address, ignored) bit,
access kind and CPL, once or followed by a second access, CR0.WP, EFER.NXE, CR4.SMEP, SMAP with
RFLAGS.AC and PKE with PKRU AD/WD through the oracle and the shadow MMU, each as its own case.
  --mode M          a paging mode to sweep (repeatable): ${SWEEP_MODES.join(", ")}
                    (default: ${DEFAULT_MODES.join(" and ")})
  --inject BUG      switch on an injected bug in every case (repeatable):
${wrap(INJECTED_BUGS.map((b) => b.name), 20, 100)}
  --limit N         run only the first N combinations of each mode
  --stride N        run only every N-th combination (a sample of the space)
  --stop-at-first   stop a mode at its first finding (time and combinations to find a bug)
  --json FILE       write the report (format shadow-mmu-sweep-report, version 1)
  --out DIR         where findings are written as case files (default findings/)
  --quiet           only the summary
  --help            this text
Exit status: 0 no divergence, 1 a divergence, 2 usage error.`;

/** Parses a positive integer flag, or returns an error message. */
function positive(name: string, text: string | undefined, min: number): number | null | string {
  if (text === undefined) return null;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) {
    return `--${name} must be an integer of at least ${min}, got "${text}"`;
  }
  return n;
}

/** A progress reporter: a redrawn line on a terminal, else a line every 10 s; none if quiet. */
function progressReporter(quiet: boolean): ((p: SweepProgress) => void) | undefined {
  if (quiet) return undefined;
  const tty = Deno.stderr.isTerminal();
  let last = 0;
  return (p) => {
    const line = `${p.mode}: ${p.combinations}/${p.planned} combinations, ` +
      `${(p.combinations / Math.max(p.seconds, 1e-3)).toFixed(0)}/s, ${p.divergences} ` +
      `divergences (${p.findings} distinct), ${p.known} known, ${p.unsupported} unsupported`;
    if (tty) {
      const done = p.combinations === p.planned;
      Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${done ? "" : line}`));
    } else if (p.seconds - last >= 10) {
      last = p.seconds;
      console.error(line);
    }
  };
}

/** Runs the sweep command; returns the exit status. */
export function main(args: string[]): number {
  const parsed = parseCommandLine("sweep", USAGE, args, {
    mode: { type: "string", multiple: true },
    inject: { type: "string", multiple: true },
    limit: { type: "string" },
    stride: { type: "string" },
    "stop-at-first": { type: "boolean" },
    json: { type: "string" },
    out: { type: "string", default: "findings" },
    quiet: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const v = parsed.values;
  const usage = (message: string) => {
    console.error(`sweep: ${message}\n${USAGE}`);
    return 2;
  };
  if (parsed.positionals.length > 0) return usage(`unexpected argument "${parsed.positionals[0]}"`);
  const modes = (v.mode ?? DEFAULT_MODES).flatMap((m) => m.split(","));
  const badMode = modes.find((m) => !(SWEEP_MODES as readonly string[]).includes(m));
  if (badMode !== undefined) {
    return usage(`unknown --mode "${badMode}"; known: ${SWEEP_MODES.join(", ")}`);
  }
  const inject = (v.inject ?? []).flatMap((b) => b.split(","));
  const known = new Set<string>(INJECTED_BUGS.map((b) => b.name));
  const badBug = inject.find((b) => !known.has(b));
  if (badBug !== undefined) {
    return usage(`unknown --inject "${badBug}"; known: ${[...known].join(", ")}`);
  }
  const limit = positive("limit", v.limit, 1);
  if (typeof limit === "string") return usage(limit);
  const stride = positive("stride", v.stride, 1);
  if (typeof stride === "string") return usage(stride);

  const plan: SweepPlan = {
    modes: [...new Set(modes)],
    inject,
    limit,
    stride: stride ?? 1,
    stopAtFirst: v["stop-at-first"] ?? false,
  };
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const out = resolve(base, v.out);
  const tag = inject.length > 0 ? `-inject-${inject.join("+")}` : "";
  const files = new Map<string, string>();
  const used = new Set<string>();
  const results: SweepResult[] = [];
  for (const mode of plan.modes as SweepMode[]) {
    const r = runSweep({
      mode,
      inject,
      ...(limit === null ? {} : { limit }),
      stride: plan.stride,
      stopAtFirst: plan.stopAtFirst,
      ...(v.quiet ? {} : { onProgress: progressReporter(false)! }),
    });
    for (const f of r.findings) {
      // Slugs are cut to a bounded length: two signatures may share one, so number the second.
      const stem = `${slugOf(f.signature)}--sweep-${mode}${tag}`;
      let file = join(out, `${stem}.json`);
      for (let n = 2; used.has(file); n++) file = join(out, `${stem}-${n}.json`);
      used.add(file);
      writeFileAtomic(file, f.caseText);
      files.set(`${mode}\n${f.signature}`, relative(base, file) || file);
    }
    results.push(r);
    console.log(sweepSummary(r, files).join("\n"));
  }
  if (v.json !== undefined) {
    const report = sweepReport(plan, results, files);
    writeFileAtomic(resolve(base, v.json), JSON.stringify(report, null, 2) + "\n");
  }
  return results.some((r) => r.findings.length > 0) ? 1 : 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
