/**
 * Merging fuzz reports: the shards of a run (`report merge`, pieces that ran side by side) or a
 * report and its continuation (`fuzz --resume`, pieces that ran one after the other). The pieces
 * must come from the same generator and plan (seed, discipline, modes, injected bugs), from
 * shards of the same count, and cover disjoint case indices; then every count is a sum, each
 * signature's `cases` a sum and its first case the lowest `firstIndex`, so merging the shards of
 * a run gives the unsharded run's report (apart from `timing` and finding file names).
 *
 * Timing: rates are always the totals over `elapsedSeconds`. Side by side, `elapsedSeconds` is
 * the longest piece's (the wall clock) and `workers` the sum; one after the other,
 * `elapsedSeconds` is the sum and `workers` the largest piece's.
 *
 * @module
 */
import { COUNTERS } from "../shadow/stats.ts";
import {
  type CaseIndexSet,
  decodeIndexSet,
  encodeIndexSet,
  firstCommonIndex,
  unionOf,
} from "./case_index_set.ts";
import { type CorpusTally, type FuzzReportJson, sortKeys } from "./fuzz_report.ts";

/** A report and the name its errors use. */
export interface ReportPiece {
  readonly file: string;
  readonly report: FuzzReportJson;
}

/** Pieces that cannot be merged; the message names the file and the JSON path. */
export class MergeError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "MergeError";
  }
}

/**
 * The set of case indices a report covers; `file` names it in the error.
 *
 * @throws {MergeError} when two of its ranges overlap (`validateReport` rejects that already).
 */
export function completedSet(r: FuzzReportJson, file: string): number[] {
  const decoded = decodeIndexSet(r.completed);
  if ("set" in decoded) return decoded.set;
  throw new MergeError(
    `${file}: $.completed.ranges[${decoded.overlap}]: repeats a case index of an earlier range`,
  );
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Checks that `piece` can be merged with `first`: same generator and plan, shards of one count. */
function checkCompatible(first: ReportPiece, piece: ReportPiece): void {
  const a = first.report, b = piece.report;
  const fields: [string, unknown, unknown][] = [
    ["$.generator", a.generator, b.generator],
    ["$.plan.seed", a.plan.seed, b.plan.seed],
    ["$.plan.discipline", a.plan.discipline, b.plan.discipline],
    ["$.plan.modes", a.plan.modes, b.plan.modes],
    ["$.plan.inject", a.plan.inject, b.plan.inject],
    ["$.plan.vcpus", a.plan.vcpus, b.plan.vcpus],
    ["$.plan.host32", a.plan.host32, b.plan.host32],
  ];
  if (a.plan.shard && b.plan.shard) {
    fields.push(["$.plan.shard.count", a.plan.shard.count, b.plan.shard.count]);
  }
  for (const [path, x, y] of fields) {
    if (!same(x, y)) {
      throw new MergeError(
        `${piece.file}: ${path}: ${JSON.stringify(y)} differs from ${first.file}'s ${
          JSON.stringify(x)
        }; only shards or resumed pieces of one run can be merged`,
      );
    }
  }
}

/** The sets of the pieces, checked pairwise disjoint. */
function disjointSets(pieces: readonly ReportPiece[]): CaseIndexSet[] {
  const sets = pieces.map((p) => completedSet(p.report, p.file));
  for (let i = 0; i < sets.length; i++) {
    for (let j = 0; j < i; j++) {
      const common = firstCommonIndex(sets[j]!, sets[i]!);
      if (common !== null) {
        throw new MergeError(
          `${pieces[i]!.file}: $.completed: case ${common} is also in ${pieces[j]!.file}; ` +
            `the pieces overlap (the same shard twice, or a report merged with its own resume)`,
        );
      }
    }
  }
  return sets;
}

/** The corpus tally: every piece replays the same corpus, so equal tallies are kept as one. */
function mergeCorpus(tallies: readonly (CorpusTally | null)[]): CorpusTally | null {
  const present = tallies.filter((t): t is CorpusTally => t !== null);
  if (present.length === 0) return null;
  if (present.every((t) => same(t, present[0]))) return present[0]!;
  // Tallies that differ (pieces of different checkouts): the largest counts and every unexpected case.
  return {
    cases: Math.max(...present.map((t) => t.cases)),
    pass: Math.max(...present.map((t) => t.pass)),
    expected: Math.max(...present.map((t) => t.expected)),
    unsupported: Math.max(...present.map((t) => t.unsupported)),
    unexpected: [...new Set(present.flatMap((t) => t.unexpected))].sort(),
  };
}

type SignatureEntry = FuzzReportJson["known"][number] | FuzzReportJson["findings"][number];

/** Signatures by name: cases summed, the lowest first case kept; a finding anywhere stays one. */
function mergeSignatures(
  reports: readonly FuzzReportJson[],
): Pick<FuzzReportJson, "findings" | "known"> {
  const merged = new Map<string, { entry: SignatureEntry; finding: boolean }>();
  for (const r of reports) {
    for (const [list, finding] of [[r.findings, true], [r.known, false]] as const) {
      for (const s of list) {
        const m = merged.get(s.signature);
        if (!m) {
          merged.set(s.signature, { entry: { ...s }, finding });
          continue;
        }
        const cases = m.entry.cases + s.cases;
        if (s.firstIndex < m.entry.firstIndex) m.entry = { ...s };
        m.entry.cases = cases;
        m.finding ||= finding;
      }
    }
  }
  const all = [...merged.values()].sort((a, b) => a.entry.firstIndex - b.entry.firstIndex);
  const findings = all.filter((m) => m.finding).map(({ entry }) => {
    const { known: _, ...rest } = entry as SignatureEntry & { known?: string };
    return rest;
  });
  const known = all.flatMap(({ entry, finding }) =>
    !finding && "known" in entry ? [entry as FuzzReportJson["known"][number]] : []
  );
  return { findings, known };
}

/** Coverage maps added key by key. */
function mergeCoverage(reports: readonly FuzzReportJson[]): FuzzReportJson["coverage"] {
  const mechanisms: FuzzReportJson["coverage"]["mechanisms"] = {};
  COUNTERS.forEach((c) => (mechanisms[c] = { total: 0, cases: 0 }));
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
  };
  const errorCodes: Record<string, number> = {}, modes: Record<string, number> = {};
  const disciplines: Record<string, number> = {}, unsupported: Record<string, number> = {};
  for (const r of reports) {
    for (const [k, m] of Object.entries(r.coverage.mechanisms)) {
      const into = (mechanisms[k] ??= { total: 0, cases: 0 });
      into.total += m.total;
      into.cases += m.cases;
    }
    add(errorCodes, r.coverage.errorCodes);
    add(modes, r.coverage.modes);
    add(disciplines, r.coverage.disciplines);
    add(unsupported, r.coverage.unsupported);
  }
  return {
    mechanisms,
    errorCodes: sortKeys(errorCodes),
    modes: sortKeys(modes),
    disciplines: sortKeys(disciplines),
    unsupported: sortKeys(unsupported),
  };
}

/**
 * Merges reports of one run. `how`: "parallel" for pieces that ran side by side (shards),
 * "sequential" for pieces that ran one after the other (a report, then its resume; the last
 * piece's budget and interruption then describe the merged report).
 *
 * @throws {MergeError} when the pieces are of different runs or overlap.
 */
export function mergeReports(
  pieces: readonly ReportPiece[],
  how: "parallel" | "sequential",
): FuzzReportJson {
  const first = pieces[0];
  if (!first) throw new MergeError("nothing to merge");
  pieces.forEach((p) => checkCompatible(first, p));
  const sets = disjointSets(pieces);
  const reports = pieces.map((p) => p.report);
  const last = reports[reports.length - 1]!;
  const sum = (f: (r: FuzzReportJson) => number) => reports.reduce((n, r) => n + f(r), 0);

  const shards = reports.map((r) => r.plan.shard);
  const shard = shards.every((s) => same(s, shards[0])) ? shards[0]! : null;
  const budgets = reports.map((r) => r.plan.runs);
  const runs = how === "sequential"
    ? last.plan.runs
    : budgets.some((n) => n === null)
    ? null
    : Math.max(...(budgets as number[]));
  const strides = reports.flatMap((r) => [r.completed.stride, r.plan.shard?.count ?? 1]);
  const completed = encodeIndexSet(sets.reduce((u, s) => unionOf(u, s), [] as number[]), strides);

  const signatures = mergeSignatures(reports);
  const totals: FuzzReportJson["totals"] = {
    cases: sum((r) => r.totals.cases),
    steps: sum((r) => r.totals.steps),
    pass: sum((r) => r.totals.pass),
    divergences: sum((r) => r.totals.divergences),
    unsupported: sum((r) => r.totals.unsupported),
    crashes: sum((r) => r.totals.crashes),
    signatures: signatures.findings.length,
    interrupted: how === "sequential"
      ? last.totals.interrupted
      : reports.some((r) => r.totals.interrupted),
  };
  const elapsed = how === "parallel"
    ? Math.max(...reports.map((r) => r.timing.elapsedSeconds))
    : sum((r) => r.timing.elapsedSeconds);
  const workers = how === "parallel"
    ? sum((r) => r.timing.workers)
    : Math.max(...reports.map((r) => r.timing.workers));
  return {
    format: first.report.format,
    version: first.report.version,
    generator: first.report.generator,
    plan: { ...first.report.plan, runs, shard },
    completed,
    corpus: mergeCorpus(reports.map((r) => r.corpus)),
    totals,
    coverage: mergeCoverage(reports),
    ...signatures,
    timing: {
      elapsedSeconds: elapsed,
      casesPerSecond: totals.cases / Math.max(elapsed, 1e-3),
      stepsPerSecond: totals.steps / Math.max(elapsed, 1e-3),
      workers,
    },
  };
}
