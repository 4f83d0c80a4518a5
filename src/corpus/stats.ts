/**
 * `corpus stats`: what the corpus holds, counted without running anything: cases by guest mode
 * (the `mode:` tag, else the directory when it is named after a mode, else the initial paging
 * mode), by tag, by provenance (`meta.found.by`), cases that expect a divergence, the injected
 * bugs the corpus covers (`sut.inject` or a `bug:NAME` tag), and the median size. Keys are
 * sorted, so the same corpus gives the same output.
 *
 * @module
 */
import { basename, dirname } from "node:path";
import { GUEST_MODES } from "../gen/fuzz_case.ts";
import { INJECTED_BUGS } from "../shadow/bugs.ts";
import { bugsOf, expectsDivergence } from "./expectation.ts";
import { caseFilesIn, loadCaseFile } from "./load_case.ts";
import { initialPagingMode, taggedMode } from "./mode.ts";

/** The format name of `corpus stats --json`. */
export const STATS_FORMAT = "shadow-mmu-corpus-stats";
/** The version of that format. */
export const STATS_VERSION = 1;

/** The spread of a per-case count. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** What a corpus holds. */
export interface CorpusStats {
  format: typeof STATS_FORMAT;
  version: typeof STATS_VERSION;
  /** Case files found. */
  files: number;
  /** Of those, valid cases (the rest are counted here only). */
  cases: number;
  /** Files that are not valid cases, as shown. */
  invalid: string[];
  byMode: Record<string, number>;
  byTag: Record<string, number>;
  byFoundBy: Record<string, number>;
  /** Cases that must diverge (tagged `expect:divergence` or with `sut.inject`). */
  expectDivergence: number;
  /** Every injected bug of the SUT, with the number of cases tied to it (0: not covered). */
  injectedBugs: Record<string, number>;
  ops: Spread;
  pages: Spread;
}

/** The median, minimum and maximum of some counts (all 0 when there are none). */
export function spreadOf(values: readonly number[]): Spread {
  if (values.length === 0) return { median: 0, min: 0, max: 0 };
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]! };
}

function sortedCounts(counts: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...counts].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0));
}

function bump(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/** Counts the case files in `paths` (see the module doc); `show` names a file in the result. */
export function corpusStats(
  paths: readonly string[],
  show: (path: string) => string = (p) => p,
): CorpusStats {
  const files = caseFilesIn(paths);
  const modes = new Set<string>(GUEST_MODES);
  const byMode = new Map<string, number>();
  const byTag = new Map<string, number>();
  const byFoundBy = new Map<string, number>();
  const bugs = new Map<string, number>(INJECTED_BUGS.map((b) => [b.name, 0]));
  const invalid: string[] = [];
  const ops: number[] = [];
  const pages: number[] = [];
  let expectDivergence = 0;
  for (const file of files) {
    const loaded = loadCaseFile(file);
    if (!loaded.ok) {
      invalid.push(show(file));
      continue;
    }
    const c = loaded.case;
    const dir = basename(dirname(file));
    bump(byMode, taggedMode(c) ?? (modes.has(dir) ? dir : initialPagingMode(c)));
    for (const tag of new Set(c.meta.tags)) bump(byTag, tag);
    bump(byFoundBy, c.meta.found.by);
    if (expectsDivergence(c)) expectDivergence++;
    for (const bug of bugsOf(c)) bump(bugs, bug);
    ops.push(c.program.length);
    pages.push(c.memory.length);
  }
  return {
    format: STATS_FORMAT,
    version: STATS_VERSION,
    files: files.length,
    cases: files.length - invalid.length,
    invalid,
    byMode: sortedCounts(byMode),
    byTag: sortedCounts(byTag),
    byFoundBy: sortedCounts(byFoundBy),
    expectDivergence,
    injectedBugs: sortedCounts(bugs),
    ops: spreadOf(ops),
    pages: spreadOf(pages),
  };
}

function countsText(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? "none" : entries.map(([k, n]) => `${k} ${n}`).join(", ");
}

/** Tag counts, one line per tag prefix (`mode:`, `mechanism:`…; tags without one together). */
function tagLines(byTag: Record<string, number>): string[] {
  const groups = new Map<string, Record<string, number>>();
  for (const [tag, n] of Object.entries(byTag)) {
    const colon = tag.indexOf(":");
    const group = colon < 0 ? "" : tag.slice(0, colon + 1);
    const counts = groups.get(group) ?? {};
    counts[colon < 0 ? tag : tag.slice(colon + 1)] = n;
    groups.set(group, counts);
  }
  if (groups.size === 0) return ["  tags: none"];
  return [...groups].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([group, counts]) =>
    `  tags ${group === "" ? "(no prefix)" : group} ${countsText(counts)}`
  );
}

/** The stats as text, one aspect a line. */
export function statsText(s: CorpusStats): string[] {
  const covered = Object.values(s.injectedBugs).filter((n) => n > 0).length;
  const missing = Object.entries(s.injectedBugs).filter(([, n]) => n === 0).map(([k]) => k);
  const spread = (x: Spread) => `median ${x.median} (min ${x.min}, max ${x.max})`;
  return [
    `corpus stats: ${s.files} file(s), ${s.cases} valid case(s), ${s.invalid.length} invalid`,
    `  by mode:       ${countsText(s.byMode)}`,
    `  by found.by:   ${countsText(s.byFoundBy)}`,
    `  expect a divergence: ${s.expectDivergence}`,
    `  injected bugs covered: ${covered} of ${Object.keys(s.injectedBugs).length}: ${
      countsText(Object.fromEntries(Object.entries(s.injectedBugs).filter(([, n]) => n > 0)))
    }${missing.length > 0 ? `; not covered: ${missing.join(", ")}` : ""}`,
    `  ops per case:   ${spread(s.ops)}`,
    `  pages per case: ${spread(s.pages)}`,
    ...tagLines(s.byTag),
    ...s.invalid.map((f) => `  invalid: ${f}`),
  ];
}
