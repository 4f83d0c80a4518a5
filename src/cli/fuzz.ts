/**
 * `deno task fuzz`: the nightly job. It replays the corpus through the oracle and the SUT (every
 * case must pass, or diverge when it documents a divergence), then generates cases from a seed
 * and runs each through the differential runner on a pool of workers until the time or run
 * budget is spent. Each finding (a divergence signature seen for the first time) is written
 * atomically as a replayable case the moment a worker reports it; SIGINT/SIGTERM stop the run
 * and keep everything found. The report (`--json`, `--junit`, the summary) aggregates cases in
 * index order, so the same seed and flags give the same report whatever the number of workers.
 * `--shard K/N` runs only the case indices i with i % N = K - 1 (with their global seeds), and
 * `--resume FILE` continues the run of an earlier report, skipping the cases it completed and
 * writing the merge of both (`report_merge.ts`), as `deno task report merge` merges shards.
 * With `--json`, the report is also rewritten atomically every `--checkpoint` seconds while the
 * run goes (marked interrupted until the run ends), so a run killed outright (SIGKILL, OOM, a
 * preempted machine) leaves a report that `--resume` continues from.
 *
 * Exit status: 0 nothing found, 1 findings, 2 usage or input error.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, encodeCase, loadCaseFile } from "../corpus/load_case.ts";
import { minimizeCase } from "../minimize/minimize.ts";
import { EXPECT_DIVERGENCE, replayCase } from "../diff/replay.ts";
import type { CaseOutcome, Finding } from "../diff/fuzz_run.ts";
import { FUZZ_GENERATOR, GUEST_MODES } from "../gen/fuzz_case.ts";
import { INJECTED_BUGS } from "../shadow/bugs.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";
import { writeFileAtomic } from "./write_atomic.ts";
import {
  buildReport,
  type CorpusTally,
  type FuzzReportJson,
  junitXml,
  summaryText,
} from "./fuzz_report.ts";
import { runPool } from "./fuzz_pool.ts";
import { knownDivergenceOf } from "../diff/known_divergences.ts";
import { parseShard, pendingCaseIndices, type Shard, shardName } from "./shard.ts";
import { freshPlan, type PlanFlags, type ResolvedPlan, resumedPlan } from "./fuzz_resume.ts";
import { mergeReports } from "./report_merge.ts";

/** The most time all minimizations of one run may take, in seconds. */
const MINIMIZE_TOTAL_SECONDS = 300;

const USAGE = `usage: deno task fuzz [--seed N] [--time SECONDS | --runs N] [--workers N]
                       [--discipline strict|relaxed|mixed] [--mode M]... [--inject NAME]...
                       [--vcpus 1-4] [--host32]
                       [--shard K/N] [--resume FILE] [--minimize SECONDS]
                       [--out DIR] [--json FILE] [--checkpoint SECONDS] [--junit FILE]
                       [--corpus DIR|none] [--quiet]

Replays the corpus through the oracle and the shadow MMU, then runs generated cases through both
and compares them step by step. Findings are written to --out as replayable cases.
  --seed N          run seed (default: random, printed so the run can be repeated)
  --time SECONDS    time budget (default 60)
  --runs N          number of generated cases instead of a time budget (with --shard: the
                    shard's cases among the first N; with --resume: until the first N are done)
  --workers N       worker threads (default: the number of cores)
  --discipline D    strict (invalidate before using a changed translation), relaxed, or mixed (default)
  --mode M          only guest mode M (repeatable): ${GUEST_MODES.join(", ")}
  --vcpus N         vCPUs in every case, 1 to 4 (default: each case draws 1 to 4, half of the
                    cases 1); the vCPUs and the host thread interleave at the SUT's atomic steps,
                    and a finding records the schedule that ran
  --host32          every case on a 32-bit host: SPTEs are written and read in halves (the
                    split-SPTE protocol; default: one case in four)
  --inject NAME     switch on an injected bug in every case (repeatable): ${
  INJECTED_BUGS.map((b) => b.name).join(", ")
}
  --shard K/N       run shard K of N (1 ≤ K ≤ N): the case indices i with i % N = K-1, each with
                    the seed it has in the unsharded run; merge shards with deno task report merge
  --resume FILE     continue the run of report FILE: skip the cases it completed and write the
                    merge of both; seed, discipline, modes, bugs and shard default to FILE's
  --minimize S      after the run, minimize each new finding for at most S seconds (default 10;
                    0: off; at most ${MINIMIZE_TOTAL_SECONDS} s in all) into FILE.min.json next to it
  --out DIR         where findings are written (default findings/)
  --json FILE       write the JSON report (format shadow-mmu-fuzz-report)
  --checkpoint S    with --json, rewrite the report every S seconds during the run, so a killed
                    run can be resumed from it (default 30; 0: only at the end)
  --junit FILE      write a JUnit XML report
  --corpus DIR      corpus to replay first (default corpus/; "none" skips it)
  --quiet           only the summary
Exit status: 0 nothing found, 1 findings, 2 usage or input error.`;

/** Parsed flags. */
interface Flags {
  seconds: number;
  runs: number | null;
  workers: number;
  planFlags: PlanFlags;
  resume: string | null;
  minimizeSeconds: number;
  out: string;
  json: string | null;
  checkpointSeconds: number;
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
      discipline: { type: "string" },
      shard: { type: "string" },
      resume: { type: "string" },
      minimize: { type: "string" },
      mode: { type: "string", multiple: true },
      inject: { type: "string", multiple: true },
      vcpus: { type: "string" },
      host32: { type: "boolean" },
      out: { type: "string", default: "findings" },
      json: { type: "string" },
      checkpoint: { type: "string" },
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
  const d = values.discipline ?? null;
  if (d !== null && d !== "strict" && d !== "relaxed" && d !== "mixed") {
    return `--discipline must be strict, relaxed or mixed, got "${d}"`;
  }
  const shard = values.shard === undefined ? null : parseShard(values.shard);
  if (typeof shard === "string") return shard;
  const modes = (values.mode ?? []).flatMap((m) => m.split(","));
  const badMode = modes.find((m) => !(GUEST_MODES as readonly string[]).includes(m));
  if (badMode) return `unknown --mode "${badMode}"; known: ${GUEST_MODES.join(", ")}`;
  const inject = (values.inject ?? []).flatMap((m) => m.split(","));
  const known = new Set<string>(INJECTED_BUGS.map((b) => b.name));
  const badBug = inject.find((b) => !known.has(b));
  if (badBug) return `unknown --inject "${badBug}"; known: ${[...known].join(", ")}`;
  const vcpus = values.vcpus === undefined ? null : Number(values.vcpus);
  if (vcpus !== null && !(Number.isInteger(vcpus) && vcpus >= 1 && vcpus <= 4)) {
    return `--vcpus must be 1, 2, 3 or 4, got "${values.vcpus}"`;
  }
  return {
    seconds: int("time", values.time, 60),
    runs: values.runs === undefined ? null : int("runs", values.runs, 0),
    workers: int("workers", values.workers, navigator.hardwareConcurrency || 1, 1),
    planFlags: {
      seed: values.seed === undefined ? null : int("seed", values.seed, 0),
      discipline: d,
      modes: values.mode === undefined ? null : modes,
      inject: values.inject === undefined ? null : inject,
      vcpus,
      host32: values.host32 === undefined ? null : true,
      shard,
    },
    resume: values.resume ?? null,
    minimizeSeconds: int("minimize", values.minimize, 10),
    out: values.out,
    json: values.json ?? null,
    checkpointSeconds: int("checkpoint", values.checkpoint, 30),
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

/** The finding file of a signature in a run (and shard): shards never share a file name. */
function findingFile(out: string, signature: string, seed: number, shard: Shard | null): string {
  const tag = shard ? `-${shardName(shard)}` : "";
  return join(out, `${slug(signature)}--run-${seed}${tag}.json`);
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
  const resolved: ResolvedPlan | string = f.resume === null
    ? freshPlan(f.planFlags)
    : resumedPlan(f.planFlags, f.resume, resolve(base, f.resume), FUZZ_GENERATOR);
  if (typeof resolved === "string") {
    console.error(`fuzz: --resume: ${resolved}`);
    return 2;
  }
  const { plan, shard, resumed } = resolved;

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
  const where = shard ? `, shard ${shard.index}/${shard.count}` : "";
  say(
    `fuzzing with seed ${plan.seed}${where} (${FUZZ_GENERATOR}, ${plan.discipline}) on ${f.workers} worker(s)` +
      (resumed ? `, resuming ${f.resume} (${resumed.done.length} cases done)` : ""),
  );
  const out = resolve(base, f.out);
  // A resumed run knows the first case of each signature so far: a later case leaves its file.
  const files = new Map<string, { index: number; file: string }>(
    (resumed?.report.findings ?? []).map((
      s,
    ) => [s.signature, { index: s.firstIndex, file: s.file }]),
  );
  const onFinding = (finding: Finding) => {
    if (knownDivergenceOf(finding.signature)) return; // triaged: counted in the report only
    const known = files.get(finding.signature);
    if (known && known.index <= finding.index) return;
    // The same file name per signature and run: a lower case index replaces it atomically, so
    // the file ends as the run's first case with that signature, whatever the worker timing.
    const file = findingFile(out, finding.signature, plan.seed, shard);
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
  /** The report of the run so far: this run's cases, merged after the resumed report's. */
  const reportSoFar = (interrupted: boolean): FuzzReportJson => {
    const elapsed = (performance.now() - started) / 1000;
    const steps = outcomes.reduce((n, o) => n + o.steps, 0);
    const piece = buildReport({
      generator: FUZZ_GENERATOR,
      plan,
      shard,
      runs: f.runs,
      outcomes,
      files: new Map([...files].map(([s, v]) => [s, v.file])),
      corpus,
      timing: {
        elapsedSeconds: elapsed,
        casesPerSecond: outcomes.length / Math.max(elapsed, 1e-3),
        stepsPerSecond: steps / Math.max(elapsed, 1e-3),
        workers: f.workers,
      },
      interrupted,
    });
    return resumed
      ? mergeReports([resumed, { file: "this run", report: piece }], "sequential")
      : piece;
  };
  const json = f.json === null ? null : resolve(base, f.json);
  let checkpointed = started;
  const result = await runPool({
    plan,
    workers: f.workers,
    cases: pendingCaseIndices(shard, f.runs, resumed?.done ?? []),
    deadline: f.runs === null ? started + f.seconds * 1000 : Infinity,
    onFinding,
    onOutcomes: (batch) => {
      outcomes.push(...batch);
      // A checkpoint: the run so far, as a report of an interrupted run that --resume continues.
      const now = performance.now();
      if (json === null || f.checkpointSeconds === 0) return;
      if (now - checkpointed < f.checkpointSeconds * 1000) return;
      checkpointed = now;
      writeFileAtomic(json, JSON.stringify(reportSoFar(true), null, 2) + "\n");
    },
    status: f.quiet ? null : Deno.stdout.isTerminal() ? "tty" : "lines",
    ...(embed.abort ? { abort: embed.abort } : {}),
  });
  const report = reportSoFar(result.interrupted);
  console.log(summaryText(report).join("\n"));
  if (json !== null) writeFileAtomic(json, JSON.stringify(report, null, 2) + "\n");
  if (f.junit) writeFileAtomic(resolve(base, f.junit), junitXml(report));
  if (report.findings.length > 0) status = Math.max(status, 1);
  // Last, once everything is written: the new findings minimized, each next to its original.
  if (!result.interrupted && f.minimizeSeconds > 0) {
    const fresh = [...files].filter(([, v]) =>
      v.index >= 0 && outcomes.some((o) => o.index === v.index)
    );
    minimizeFindings(
      fresh.map(([signature, v]) => ({ signature, file: v.file })),
      f.minimizeSeconds,
    );
  }
  return status;
}

/**
 * Minimizes finding files (in signature order, so the output does not depend on timing) into
 * `NAME.min.json` next to each, keeping its signature; the originals stay as they are.
 */
function minimizeFindings(found: { signature: string; file: string }[], seconds: number): void {
  const deadline = performance.now() + MINIMIZE_TOTAL_SECONDS * 1000;
  for (const { signature, file } of found.sort((a, b) => a.signature < b.signature ? -1 : 1)) {
    const left = deadline - performance.now();
    if (left <= 0) {
      console.error(
        `minimize: out of time (${MINIMIZE_TOTAL_SECONDS} s); the rest are kept as found`,
      );
      return;
    }
    const loaded = loadCaseFile(file);
    if (!loaded.ok) continue;
    try {
      const r = minimizeCase(loaded.case, { signature, budgetMs: Math.min(seconds * 1000, left) });
      const c = structuredClone(r.case);
      c.meta.found = { ...c.meta.found, by: "minimize" };
      const out = file.replace(/\.json$/, "") + ".min.json";
      writeFileAtomic(out, encodeCase(c));
      console.error(
        `minimized: ${r.before.ops} -> ${r.after.ops} ops, ${r.before.pages} -> ${r.after.pages} ` +
          `pages${r.exhausted ? " (budget spent)" : ""} -> ${out}`,
      );
    } catch (e: unknown) {
      console.error(`minimize: ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
