/**
 * `deno task fuzz`: the nightly job. It replays the corpus through the oracle and the SUT (every
 * case must pass, or diverge when it documents a divergence), then generates cases from a seed
 * and runs each through the differential runner on a pool of workers until the time or run
 * budget is spent. Each finding (a divergence signature seen for the first time) is written
 * atomically as a replayable case the moment a worker reports it; SIGINT/SIGTERM stop the run
 * and keep everything found. The report (`--json`, `--junit`, the summary) aggregates cases in
 * index order, so the same seed and flags give the same report whatever the number of workers.
 *
 * Exit status: 0 nothing found, 1 findings, 2 usage or input error.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, loadCaseFile } from "../corpus/load_case.ts";
import { EXPECT_DIVERGENCE, replayCase } from "../diff/replay.ts";
import type { CaseOutcome, Finding, FuzzPlan } from "../diff/fuzz_run.ts";
import { FUZZ_GENERATOR, GUEST_MODES } from "../gen/fuzz_case.ts";
import { INJECTED_BUGS } from "../shadow/bugs.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";
import { writeFileAtomic } from "./write_atomic.ts";
import { buildReport, type CorpusTally, junitXml, summaryText } from "./fuzz_report.ts";
import { runPool } from "./fuzz_pool.ts";
import { knownDivergenceOf } from "../diff/known_divergences.ts";

const USAGE = `usage: deno task fuzz [--seed N] [--time SECONDS | --runs N] [--workers N]
                       [--discipline strict|relaxed|mixed] [--mode M]... [--inject NAME]...
                       [--out DIR] [--json FILE] [--junit FILE] [--corpus DIR|none] [--quiet]

Replays the corpus through the oracle and the shadow MMU, then runs generated cases through both
and compares them step by step. Findings are written to --out as replayable cases.
  --seed N          run seed (default: random, printed so the run can be repeated)
  --time SECONDS    time budget (default 60)
  --runs N          number of generated cases instead of a time budget
  --workers N       worker threads (default: the number of cores)
  --discipline D    strict (invalidate before using a changed translation), relaxed, or mixed (default)
  --mode M          only guest mode M (repeatable): ${GUEST_MODES.join(", ")}
  --inject NAME     switch on an injected bug in every case (repeatable): ${
  INJECTED_BUGS.map((b) => b.name).join(", ")
}
  --out DIR         where findings are written (default findings/)
  --json FILE       write the JSON report (format shadow-mmu-fuzz-report)
  --junit FILE      write a JUnit XML report
  --corpus DIR      corpus to replay first (default corpus/; "none" skips it)
  --quiet           only the summary
Exit status: 0 nothing found, 1 findings, 2 usage or input error.`;

/** Parsed flags. */
interface Flags {
  seed: number;
  seconds: number;
  runs: number | null;
  workers: number;
  plan: FuzzPlan;
  out: string;
  json: string | null;
  junit: string | null;
  corpus: string | null;
  quiet: boolean;
}

function parse(args: string[]): Flags | string | null {
  const { values } = parseArgs({
    args,
    options: {
      seed: { type: "string" },
      time: { type: "string" },
      runs: { type: "string" },
      workers: { type: "string" },
      discipline: { type: "string", default: "mixed" },
      mode: { type: "string", multiple: true },
      inject: { type: "string", multiple: true },
      out: { type: "string", default: "findings" },
      json: { type: "string" },
      junit: { type: "string" },
      corpus: { type: "string", default: "corpus" },
      quiet: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return null;
  const int = (name: string, text: string | undefined, fallback: number, min = 0) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > 0xffff_ffff) {
      throw new RangeError(`--${name} must be an integer ≥ ${min}, got "${text}"`);
    }
    return n;
  };
  const d = values.discipline;
  if (d !== "strict" && d !== "relaxed" && d !== "mixed") {
    return `--discipline must be strict, relaxed or mixed, got "${d}"`;
  }
  const modes = (values.mode ?? []).flatMap((m) => m.split(","));
  const badMode = modes.find((m) => !(GUEST_MODES as readonly string[]).includes(m));
  if (badMode) return `unknown --mode "${badMode}"; known: ${GUEST_MODES.join(", ")}`;
  const inject = (values.inject ?? []).flatMap((m) => m.split(","));
  const known = new Set(INJECTED_BUGS.map((b) => b.name));
  const badBug = inject.find((b) => !known.has(b));
  if (badBug) return `unknown --inject "${badBug}"; known: ${[...known].join(", ")}`;
  const seed = int("seed", values.seed, crypto.getRandomValues(new Uint32Array(1))[0]!);
  return {
    seed,
    seconds: int("time", values.time, 60),
    runs: values.runs === undefined ? null : int("runs", values.runs, 0),
    workers: int("workers", values.workers, navigator.hardwareConcurrency || 1, 1),
    plan: { seed, discipline: d, modes, inject },
    out: values.out,
    json: values.json ?? null,
    junit: values.junit ?? null,
    corpus: values.corpus === "none" ? null : values.corpus,
    quiet: values.quiet ?? false,
  };
}

/** Replays the corpus on both sides; a case that does not behave as documented is unexpected. */
function replayCorpus(dir: string): { tally: CorpusTally; inputErrors: number } {
  const tally: CorpusTally = { cases: 0, pass: 0, expected: 0, unsupported: 0, unexpected: [] };
  let inputErrors = 0;
  for (const file of caseFilesIn([dir])) {
    const loaded = loadCaseFile(file);
    tally.cases++;
    if (!loaded.ok) {
      console.error(loaded.error.message);
      inputErrors++;
      continue;
    }
    try {
      const v = replayCase(loaded.case, { audit: kvm_mmu_audit }).verdict;
      const c = loaded.case;
      const expect = c.sut.inject.length > 0 || c.meta.tags.includes(EXPECT_DIVERGENCE);
      if (v.status === "unsupported") tally.unsupported++;
      else if ((v.status === "divergence") === expect) tally[expect ? "expected" : "pass"]++;
      else {
        const what = v.status === "divergence"
          ? `step ${v.step}: ${v.kind} divergence: ${v.detail}`
          : `expected a divergence (${EXPECT_DIVERGENCE} or sut.inject), the SUT passed`;
        tally.unexpected.push(`${file}: ${what}`);
        console.error(`${file}: ${what}`);
      }
    } catch (e: unknown) {
      if (!(e instanceof InitialStateError)) throw e;
      console.error(`${file}: ${e.path}: ${e.message}`);
      inputErrors++;
    }
  }
  return { tally, inputErrors };
}

/** A file name for a signature: readable, bounded, filesystem-safe. */
function slug(signature: string): string {
  return signature.replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 100);
}

/**
 * Runs the fuzz command; resolves to the exit status. `abort` stops the run as SIGINT does.
 */
export async function main(args: string[], embed: { abort?: AbortSignal } = {}): Promise<number> {
  let flags: Flags | string | null;
  try {
    flags = parse(args);
  } catch (e: unknown) {
    flags = e instanceof Error ? e.message : String(e);
  }
  if (flags === null) {
    console.log(USAGE);
    return 0;
  }
  if (typeof flags === "string") {
    console.error(`fuzz: ${flags}\n${USAGE}`);
    return 2;
  }
  const f = flags;
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const say = (line: string) => f.quiet || console.log(line);
  let status = 0;

  // 1. The corpus, on both sides.
  let corpus: CorpusTally | null = null;
  if (f.corpus !== null) {
    const r = replayCorpus(resolve(base, f.corpus));
    corpus = r.tally;
    if (r.inputErrors > 0) status = 2;
    if (corpus.unexpected.length > 0) status = Math.max(status, 1);
    say(
      `corpus: ${corpus.cases} cases through the oracle and the SUT: ${corpus.pass} pass, ` +
        `${corpus.expected} diverge as expected, ${corpus.unsupported} unsupported, ` +
        `${corpus.unexpected.length} unexpected`,
    );
  }

  // 2. Generated cases on the worker pool.
  say(
    `fuzzing with seed ${f.seed} (${FUZZ_GENERATOR}, ${f.plan.discipline}) on ${f.workers} worker(s)`,
  );
  const out = resolve(base, f.out);
  const files = new Map<string, { index: number; file: string }>();
  const onFinding = (finding: Finding) => {
    if (knownDivergenceOf(finding.signature)) return; // triaged: counted in the report only
    const known = files.get(finding.signature);
    if (known && known.index <= finding.index) return;
    // The same file name per signature and run: a lower case index replaces it atomically, so
    // the file ends as the run's first case with that signature, whatever the worker timing.
    const file = join(out, `${slug(finding.signature)}--run-${f.seed}.json`);
    writeFileAtomic(file, finding.caseText);
    files.set(finding.signature, { index: finding.index, file });
    if (!known) {
      console.error(
        `finding: ${finding.signature} (case ${finding.index}, seed ${finding.seed}) -> ${file}`,
      );
    }
  };
  const started = performance.now();
  const outcomes: CaseOutcome[] = [];
  const result = await runPool({
    plan: f.plan,
    workers: f.workers,
    runs: f.runs,
    deadline: f.runs === null ? started + f.seconds * 1000 : Infinity,
    onFinding,
    onOutcomes: (batch) => outcomes.push(...batch),
    status: f.quiet ? null : Deno.stdout.isTerminal() ? "tty" : "lines",
    ...(embed.abort ? { abort: embed.abort } : {}),
  });
  const elapsed = (performance.now() - started) / 1000;
  const steps = outcomes.reduce((n, o) => n + o.steps, 0);
  const report = buildReport(
    FUZZ_GENERATOR,
    f.plan,
    f.runs,
    outcomes,
    new Map([...files].map(([s, v]) => [s, v.file])),
    corpus,
    {
      elapsedSeconds: elapsed,
      casesPerSecond: outcomes.length / Math.max(elapsed, 1e-3),
      stepsPerSecond: steps / Math.max(elapsed, 1e-3),
      workers: f.workers,
    },
    result.interrupted,
  );
  console.log(summaryText(report).join("\n"));
  if (f.json) writeFileAtomic(resolve(base, f.json), JSON.stringify(report, null, 2) + "\n");
  if (f.junit) writeFileAtomic(resolve(base, f.junit), junitXml(report));
  if (report.findings.length > 0) status = Math.max(status, 1);
  return status;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
