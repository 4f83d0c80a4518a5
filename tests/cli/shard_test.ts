/**
 * Nightly operation, in-process: the shards of a run (`fuzz --shard K/N`) partition its cases
 * and `report merge` of them gives the unsharded run's report; a run stopped early and resumed
 * (`fuzz --resume`) gives the uninterrupted run's report; reports that cannot be merged or
 * resumed exit 2 with the file and the JSON path.
 *
 * @module
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { main as fuzz } from "../../src/cli/fuzz.ts";
import { main as report } from "../../src/cli/report.ts";
import type { FuzzReportJson } from "../../src/cli/fuzz_report.ts";
import { completedSet } from "../../src/cli/report_merge.ts";
import { capture, captureAsync, type Captured } from "../_helpers/capture.ts";

const SCRATCH = ".tmp/shard_test";
/** A run with findings and known divergences in its first 60 cases (not minimized: fast). */
const RUN = [
  "--minimize",
  "0",
  "--seed",
  "3",
  "--inject",
  "prefetch_ignores_accessed",
  "--corpus",
  "none",
  "--quiet",
  "--workers",
  "1",
];

/** Runs the fuzz main with console output captured; `stopAtFinding` aborts at the first one. */
function run(args: string[], stopAtFinding = false): Promise<Captured> {
  const stop = new AbortController();
  return captureAsync(() => {
    if (stopAtFinding) {
      const captured = console.error;
      console.error = (...a: unknown[]) => {
        captured(...a);
        if (String(a[0]).startsWith("finding: ")) stop.abort();
      };
    }
    return fuzz([...RUN, ...args], { abort: stop.signal });
  });
}

function read(path: string): FuzzReportJson {
  return JSON.parse(readFileSync(path, "utf8"));
}

/** A report as text without what legitimately differs: timing and the finding files' names. */
function comparable(path: string): string {
  const r = read(path) as Partial<FuzzReportJson>;
  delete r.timing;
  for (const s of [...(r.findings ?? []), ...(r.known ?? [])]) s.file = "";
  return JSON.stringify(r, null, 1);
}

let baseline: Promise<string> | null = null;

/** The uninterrupted, unsharded run of 60 cases (once per file). */
function unsharded(): Promise<string> {
  baseline ??= (async () => {
    rmSync(SCRATCH, { recursive: true, force: true });
    const r = await run([
      "--runs",
      "60",
      "--out",
      `${SCRATCH}/all`,
      "--json",
      `${SCRATCH}/all.json`,
    ]);
    equal(r.status, 1, r.err);
    const all = read(`${SCRATCH}/all.json`);
    ok(all.findings.length >= 2 && all.known.length >= 1, "findings and known signatures");
    deepStrictEqual(all.completed, { stride: 1, ranges: [[0, 60]] });
    return `${SCRATCH}/all.json`;
  })();
  return baseline;
}

Deno.test("shards: 3 shards partition the run and merge into the unsharded report", async () => {
  const all = await unsharded();
  const shards: string[] = [];
  for (const k of [1, 2, 3]) {
    const json = `${SCRATCH}/shard-${k}.json`;
    const r = await run([
      "--runs",
      "60",
      "--shard",
      `${k}/3`,
      "--out",
      `${SCRATCH}/s`,
      "--json",
      json,
    ]);
    ok(r.status <= 1, r.err);
    shards.push(json);
    const s = read(json);
    deepStrictEqual(s.plan.shard, { index: k, count: 3 });
    deepStrictEqual(s.completed, { stride: 3, ranges: [[k - 1, 57 + k]] }, "one strided range");
    for (const f of s.findings) match(f.file, new RegExp(`--run-3-shard-${k}-of-3\\.json$`));
  }
  // The case sets: pairwise disjoint, each of its residue, together the unsharded run's.
  const sets = shards.map((f) => completedSet(read(f), f));
  sets.forEach((set, k) => ok(set.every((i) => i % 3 === k), `shard ${k + 1}/3`));
  const union = sets.flat().sort((a, b) => a - b);
  equal(new Set(union).size, union.length, "disjoint");
  deepStrictEqual(union, completedSet(read(all), all));
  // Three shards writing to one --out never share a finding file.
  const names = readdirSync(`${SCRATCH}/s`);
  equal(names.length, shards.reduce((n, f) => n + read(f).findings.length, 0));

  const m = capture(() =>
    report(["merge", ...shards, "--json", `${SCRATCH}/merged.json`, "--junit", `${SCRATCH}/m.xml`])
  );
  equal(m.status, 1, m.err);
  match(m.out, /^fuzz \(shadow-fuzz@\d+, seed 3, mixed/);
  equal(comparable(`${SCRATCH}/merged.json`), comparable(all));
  const merged = read(`${SCRATCH}/merged.json`);
  equal(merged.timing.workers, 3);
  const partial = capture(() => report(["merge", shards[0]!, shards[2]!]));
  match(partial.err, /warning: shard\(s\) 2 of 3 missing/);
  match(readFileSync(`${SCRATCH}/m.xml`, "utf8"), /failures="[1-9]/);
});

Deno.test("resume: a shorter run continued to 60 cases gives the uninterrupted report", async () => {
  const all = await unsharded();
  const first = await run([
    "--runs",
    "20",
    "--out",
    `${SCRATCH}/r`,
    "--json",
    `${SCRATCH}/r20.json`,
  ]);
  ok(first.status <= 1, first.err);
  const next = await run([
    "--runs",
    "60",
    "--resume",
    `${SCRATCH}/r20.json`,
    "--out",
    `${SCRATCH}/r`,
    "--json",
    `${SCRATCH}/r60.json`,
  ]);
  equal(next.status, 1, next.err);
  equal(comparable(`${SCRATCH}/r60.json`), comparable(all));
});

Deno.test("resume: a run stopped at its first finding and resumed gives the same report", async () => {
  const all = await unsharded();
  const stopped = await run(
    ["--runs", "60", "--out", `${SCRATCH}/i`, "--json", `${SCRATCH}/i1.json`],
    true,
  );
  match(stopped.out, /\[interrupted\]/);
  const partial = read(`${SCRATCH}/i1.json`);
  ok(partial.totals.interrupted && partial.totals.cases < 60, `${partial.totals.cases} cases`);
  // Seed, plan and shard come from the report.
  const resumed = await captureAsync(() =>
    fuzz([
      "--resume",
      `${SCRATCH}/i1.json`,
      "--runs",
      "60",
      "--workers",
      "1",
      "--corpus",
      "none",
      "--quiet",
      "--out",
      `${SCRATCH}/i`,
      "--json",
      `${SCRATCH}/i2.json`,
    ])
  );
  equal(resumed.status, 1, resumed.err);
  equal(comparable(`${SCRATCH}/i2.json`), comparable(all));
});

Deno.test("report merge and --resume: pieces of other runs, overlaps and bad files exit 2", async () => {
  const all = await unsharded();
  const other = `${SCRATCH}/other-seed.json`;
  const o = await captureAsync(() =>
    fuzz([
      "--seed",
      "4",
      "--runs",
      "6",
      "--shard",
      "2/3",
      "--workers",
      "1",
      "--corpus",
      "none",
      "--quiet",
      "--out",
      `${SCRATCH}/o`,
      "--json",
      other,
    ])
  );
  ok(o.status <= 1, o.err);
  const corrupt = `${SCRATCH}/corrupt.json`;
  writeFileSync(corrupt, readFileSync(all, "utf8").slice(0, 200));
  const wrongType = `${SCRATCH}/wrong-type.json`;
  const w = read(all) as unknown as { totals: { cases: unknown } };
  w.totals.cases = "60";
  writeFileSync(wrongType, JSON.stringify(w));
  // The other run's cases as if they were shard 2/4: same seed, another shard count.
  const of4 = read(other);
  equal(of4.totals.cases, 2);
  of4.plan.shard = { index: 2, count: 4 };
  of4.completed = { stride: 4, ranges: [[1, 2], [5, 6]] };
  writeFileSync(`${SCRATCH}/of-4.json`, JSON.stringify(of4));

  for (
    const [files, re] of [
      [[all, all], /all\.json: \$\.completed: case 0 is also in .*all\.json/],
      [[all, other], /other-seed\.json: \$\.plan\.seed: 4 differs from .*all\.json's 3/],
      [[all, corrupt], /corrupt\.json: \$: invalid JSON/],
      [[wrongType], /wrong-type\.json: \$\.totals\.cases: expected a number/],
      [[other, `${SCRATCH}/of-4.json`], /of-4\.json: \$\.plan\.shard\.count: 4 differs/],
      [[`${SCRATCH}/missing.json`], /missing\.json: \$: cannot read file/],
    ] as const
  ) {
    const r = capture(() => report(["merge", ...files]));
    equal(r.status, 2, files.join(" "));
    match(r.err, re);
  }
  equal(capture(() => report(["merge"])).status, 2);
  equal(capture(() => report(["split", all])).status, 2);

  for (
    const [args, re] of [
      [["--shard", "0/3"], /--shard K\/N needs 1 ≤ K ≤ N, got "0\/3"/],
      [["--shard", "4/3"], /got "4\/3"/],
      [["--shard", "x"], /--shard must be K\/N/],
      [["--resume", all, "--seed", "4"], /all\.json: \$\.plan\.seed: 3, but --seed is 4/],
      [["--resume", other, "--shard", "1/3"], /\$\.plan\.shard: 2\/3, but --shard is 1\/3/],
      [["--resume", wrongType], /wrong-type\.json: \$\.totals\.cases: expected a number/],
    ] as const
  ) {
    const r = await captureAsync(() => fuzz([...args, "--runs", "1", "--corpus", "none"]));
    equal(r.status, 2, args.join(" "));
    match(r.err, re);
  }
});
