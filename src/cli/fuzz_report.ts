/**
 * The fuzz run's report: case outcomes aggregated in case-index order (so the report does not
 * depend on how many workers ran them or in which order they finished), as a JSON document, a
 * JUnit XML file and the end-of-run summary text. Timing lives in its own `timing` field, the
 * only part that differs between two runs of the same seed and flags.
 *
 * Version 2 adds the shard (`plan.shard`) and the exact set of case indices the report covers
 * (`completed`), so that reports of shards can be merged and a run can be resumed
 * (`report_merge.ts`): everything else is a sum, or per signature a sum and a minimum.
 *
 * @module
 */
import { COUNTERS } from "../shadow/stats.ts";
import type { CaseOutcome, FuzzPlan } from "../diff/fuzz_run.ts";
import { knownDivergenceOf } from "../diff/known_divergences.ts";
import { type CompletedJson, encodeIndexSet, indexSetOf } from "./case_index_set.ts";
import type { Shard } from "./shard.ts";

/** The report format name and version. */
export const FUZZ_REPORT_FORMAT = "shadow-mmu-fuzz-report";
/** The report format version. */
export const FUZZ_REPORT_VERSION = 2;

/** One distinct finding (a signature) and every case that showed it. */
export interface SignatureJson {
  signature: string;
  /** Number of cases with this signature. */
  cases: number;
  /** The lowest case index that showed it, its seed, and where that case was written. */
  firstIndex: number;
  firstSeed: number;
  file: string;
  kind: string;
  step: number | null;
  detail: string;
}

/** The corpus replay's tally. */
export interface CorpusTally {
  cases: number;
  pass: number;
  expected: number;
  unsupported: number;
  unexpected: string[];
}

/** The JSON report. */
export interface FuzzReportJson {
  format: string;
  version: number;
  generator: string;
  plan: {
    seed: number;
    discipline: FuzzPlan["discipline"];
    modes: string[];
    inject: string[];
    /** `--vcpus` (null: each case drew 1 to 4). */
    vcpus: number | null;
    /** `--host32` (null: one case in four). */
    host32: boolean | null;
    runs: number | null;
    /** The shard this report covers, or null (an unsharded run, or a merge of shards). */
    shard: { index: number; count: number } | null;
  };
  /** Exactly the global case indices whose outcomes the report aggregates. */
  completed: CompletedJson;
  corpus: CorpusTally | null;
  totals: {
    cases: number;
    steps: number;
    pass: number;
    divergences: number;
    unsupported: number;
    crashes: number;
    signatures: number;
    interrupted: boolean;
  };
  coverage: {
    /** Every SUT counter: its total and in how many cases it moved. */
    mechanisms: Record<string, { total: number; cases: number }>;
    errorCodes: Record<string, number>;
    modes: Record<string, number>;
    disciplines: Record<string, number>;
    unsupported: Record<string, number>;
  };
  /** Distinct signatures that are not known divergences: the run's findings. */
  findings: SignatureJson[];
  /** Signatures of triaged, known KVM-vs-architecture divergences (`known_divergences.ts`). */
  known: (SignatureJson & { known: string })[];
  timing: {
    elapsedSeconds: number;
    casesPerSecond: number;
    stepsPerSecond: number;
    workers: number;
  };
}

const inc = (m: Record<string, number>, k: string, n = 1) => void (m[k] = (m[k] ?? 0) + n);

/** Sorts a record's keys (the report's maps are written in key order). */
export function sortKeys<T>(m: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** What a report is built from. */
export interface ReportInput {
  readonly generator: string;
  readonly plan: FuzzPlan;
  readonly shard: Shard | null;
  /** The case budget, or null for a time budget. */
  readonly runs: number | null;
  /** Every outcome of the run, in any order. */
  readonly outcomes: readonly CaseOutcome[];
  /** The file written per signature. */
  readonly files: ReadonlyMap<string, string>;
  readonly corpus: CorpusTally | null;
  readonly timing: FuzzReportJson["timing"];
  readonly interrupted: boolean;
}

/** Builds the report from every outcome (any order) and the files written per signature. */
export function buildReport(input: ReportInput): FuzzReportJson {
  const { generator, plan, shard, runs, outcomes, files, corpus, timing, interrupted } = input;
  const sorted = [...outcomes].sort((a, b) => a.index - b.index);
  const mechanisms: Record<string, { total: number; cases: number }> = {};
  COUNTERS.forEach((c) => (mechanisms[c] = { total: 0, cases: 0 }));
  const errorCodes: Record<string, number> = {};
  const modes: Record<string, number> = {};
  const disciplines: Record<string, number> = {};
  const unsupported: Record<string, number> = {};
  const bySignature = new Map<string, SignatureJson>();
  const totals = {
    cases: sorted.length,
    steps: 0,
    pass: 0,
    divergences: 0,
    unsupported: 0,
    crashes: 0,
    signatures: 0,
    interrupted,
  };
  for (const o of sorted) {
    totals.steps += o.steps;
    if (o.verdict === "pass") totals.pass++;
    else if (o.verdict === "divergence") totals.divergences++;
    else if (o.verdict === "crash") totals.crashes++;
    else totals.unsupported++;
    // Grouped by reason: addresses and numbers vary from case to case.
    if (o.unsupported) inc(unsupported, o.unsupported.replace(/0x[0-9a-f]+|\b\d+\b/gi, "N"));
    inc(modes, o.mode);
    inc(disciplines, o.discipline);
    o.errorCodes.forEach((e) => inc(errorCodes, e));
    COUNTERS.forEach((c, i) => {
      const n = o.counters[i] ?? 0;
      mechanisms[c]!.total += n;
      if (n > 0) mechanisms[c]!.cases++;
    });
    const f = o.finding;
    if (!f) continue;
    const s = bySignature.get(f.signature);
    if (s) s.cases++;
    else {
      bySignature.set(f.signature, {
        signature: f.signature,
        cases: 1,
        firstIndex: o.index,
        firstSeed: o.seed,
        file: files.get(f.signature) ?? "",
        kind: f.kind,
        step: f.step,
        detail: f.detail,
      });
    }
  }
  totals.signatures = [...bySignature.keys()].filter((s) => !knownDivergenceOf(s)).length;
  return {
    format: FUZZ_REPORT_FORMAT,
    version: FUZZ_REPORT_VERSION,
    generator,
    plan: {
      seed: plan.seed,
      discipline: plan.discipline,
      modes: [...plan.modes],
      inject: [...plan.inject],
      vcpus: plan.vcpus,
      host32: plan.host32,
      runs,
      shard: shard ? { index: shard.index, count: shard.count } : null,
    },
    completed: encodeIndexSet(indexSetOf(sorted.map((o) => o.index)), [shard?.count ?? 1]),
    corpus,
    totals,
    coverage: {
      mechanisms,
      errorCodes: sortKeys(errorCodes),
      modes: sortKeys(modes),
      disciplines: sortKeys(disciplines),
      unsupported: sortKeys(unsupported),
    },
    findings: [...bySignature.values()].filter((f) => !knownDivergenceOf(f.signature)),
    known: [...bySignature.values()].flatMap((f) => {
      const k = knownDivergenceOf(f.signature);
      return k ? [{ ...f, known: k.id }] : [];
    }),
    timing,
  };
}

/** The end-of-run summary, as text lines. */
export function summaryText(r: FuzzReportJson): string[] {
  const t = r.totals;
  const p = r.plan;
  const shard = p.shard ? `, shard ${p.shard.index}/${p.shard.count}` : "";
  const lines = [
    `fuzz (${r.generator}, seed ${p.seed}${shard}, ${p.discipline}, modes ${
      p.modes.join(",") || "all"
    }, inject ${p.inject.join(",") || "none"}): ${t.cases} cases, ${t.steps} steps in ${
      r.timing.elapsedSeconds.toFixed(1)
    } s (${r.timing.casesPerSecond.toFixed(0)} cases/s, ${
      r.timing.stepsPerSecond.toFixed(0)
    } steps/s, ${r.timing.workers} workers)${t.interrupted ? " [interrupted]" : ""}`,
    `verdicts: ${t.pass} pass, ${t.divergences} diverge (${t.signatures} distinct findings, ${r.known.length} known signatures), ${t.unsupported} unsupported, ${t.crashes} crashed`,
  ];
  const mech = Object.entries(r.coverage.mechanisms);
  const fired = mech.filter(([, m]) => m.total > 0).map(([k, m]) => `${k}=${m.total}/${m.cases}`);
  const silent = mech.filter(([, m]) => m.total === 0).map(([k]) => k);
  lines.push(`mechanisms (total/cases): ${fired.join(" ")}`);
  lines.push(`mechanisms that never fired: ${silent.join(" ") || "none"}`);
  const kv = (m: Record<string, number>) =>
    Object.entries(m).map(([k, n]) => `${k}=${n}`).join(" ");
  lines.push(`#PF error codes (cases): ${kv(r.coverage.errorCodes) || "none"}`);
  lines.push(`modes: ${kv(r.coverage.modes)}; disciplines: ${kv(r.coverage.disciplines)}`);
  if (t.unsupported > 0) lines.push(`unsupported: ${kv(r.coverage.unsupported)}`);
  const known = new Map<string, number>();
  for (const k of r.known) known.set(k.known, (known.get(k.known) ?? 0) + k.cases);
  for (const [id, n] of known) lines.push(`known divergence ${id}: ${n} case(s)`);
  for (const f of r.findings) {
    lines.push(
      `finding ${f.signature}: ${f.cases} case(s), first seed ${f.firstSeed} (case ${f.firstIndex}) -> ${f.file}`,
    );
  }
  return lines;
}

const xml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A JUnit XML document: the corpus cases that failed, one test per finding signature. */
export function junitXml(r: FuzzReportJson): string {
  const cases: string[] = [];
  for (const u of r.corpus?.unexpected ?? []) {
    cases.push(
      `    <testcase classname="corpus" name="${xml(u)}"><failure message="unexpected result">${
        xml(u)
      }</failure></testcase>`,
    );
  }
  for (const f of r.findings) {
    cases.push(
      `    <testcase classname="fuzz" name="${xml(f.signature)}"><failure message="${
        xml(`${f.kind}, ${f.cases} case(s), seed ${f.firstSeed}`)
      }">${xml(`${f.file}\n${f.detail}`)}</failure></testcase>`,
    );
  }
  const failures = cases.length;
  cases.push(
    `    <testcase classname="fuzz" name="${r.totals.cases} generated cases, seed ${r.plan.seed}"/>`,
  );
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="shadow-mmu-fuzz" tests="${cases.length}" failures="${failures}">`,
    `  <testsuite name="fuzz seed ${r.plan.seed}" tests="${cases.length}" failures="${failures}">`,
    ...cases,
    `  </testsuite>`,
    `</testsuites>`,
    ``,
  ].join("\n");
}
