/**
 * The fuzz command, in-process: usage errors, the report's determinism across worker counts,
 * finding an injected bug (written atomically as a valid, replayable case, then minimized next
 * to it), and a clean stop
 * (the same path SIGINT/SIGTERM take) that keeps every finding it reported.
 *
 * @module
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { main as fuzz } from "../../src/cli/fuzz.ts";
import { captureAsync, type Captured } from "../_helpers/capture.ts";
import { loadCaseFile } from "../../src/corpus/load_case.ts";
import { runDifferential } from "../../src/diff/differential.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";
import { signatureOf } from "../../src/minimize/minimize.ts";

const SCRATCH = ".tmp/fuzz_test";

/** Runs the fuzz main with console output captured. */
function capture(args: string[], abort?: AbortSignal): Promise<Captured> {
  return captureAsync(() => fuzz(args, abort ? { abort } : {}));
}

function reportWithoutTiming(path: string): unknown {
  const r = JSON.parse(readFileSync(path, "utf8"));
  delete r.timing;
  return r;
}

Deno.test("fuzz: usage errors exit 2 and name the flag", async () => {
  for (
    const [args, re] of [
      [["--discipline", "lax"], /--discipline must be/],
      [["--runs", "-3"], /--runs/],
      [["--runs", "1.5"], /--runs must be an integer ≥ 0/],
      [["--mode", "ia32e6"], /unknown --mode "ia32e6"/],
      [["--inject", "nope"], /unknown --inject "nope"/],
      [["--workers", "0"], /--workers must be an integer ≥ 1/],
      [["--vcpus", "5"], /--vcpus must be 1, 2, 3 or 4/],
      [["--vcpus", "0"], /--vcpus must be 1, 2, 3 or 4/],
      [["--bogus"], /bogus/],
    ] as const
  ) {
    const r = await capture([...args]);
    equal(r.status, 2, args.join(" "));
    match(r.err, re);
  }
});

Deno.test("fuzz: the same seed and runs give the same report with 1 and 2 workers", async () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  const common = ["--seed", "11", "--runs", "24", "--corpus", "none", "--quiet"];
  const a = await capture([
    ...common,
    "--workers",
    "1",
    "--out",
    `${SCRATCH}/a`,
    "--json",
    `${SCRATCH}/a.json`,
  ]);
  const b = await capture([
    ...common,
    "--workers",
    "2",
    "--out",
    `${SCRATCH}/b`,
    "--json",
    `${SCRATCH}/b.json`,
  ]);
  equal(a.status, b.status);
  const ra = reportWithoutTiming(`${SCRATCH}/a.json`) as Record<string, unknown>;
  const rb = reportWithoutTiming(`${SCRATCH}/b.json`) as Record<string, unknown>;
  // Finding files live in different --out directories; everything else must be identical.
  const strip = (r: Record<string, unknown>) =>
    JSON.stringify(r).replaceAll(`${SCRATCH}/a`, "OUT").replaceAll(`${SCRATCH}/b`, "OUT");
  equal(strip(ra), strip(rb));
  equal((ra.totals as { cases: number }).cases, 24);
});

Deno.test("fuzz --inject: finds the bug, writes a replayable case, JSON and JUnit reports", async () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  const r = await capture([
    "--seed",
    "1",
    "--runs",
    "16",
    "--workers",
    "1",
    "--corpus",
    "none",
    "--inject",
    "prefetch_ignores_accessed",
    "--out",
    `${SCRATCH}/found`,
    "--json",
    `${SCRATCH}/r.json`,
    "--junit",
    `${SCRATCH}/r.xml`,
  ]);
  equal(r.status, 1, r.err);
  match(r.err, /^finding: /m);
  const files = readdirSync(`${SCRATCH}/found`);
  ok(files.length >= 1);
  let causedByTheBug = 0;
  for (const f of files) {
    const l = loadCaseFile(`${SCRATCH}/found/${f}`);
    ok(l.ok, f);
    deepStrictEqual(l.case.sut.inject, ["prefetch_ignores_accessed"]);
    ok(l.case.meta.signature && l.case.meta.found.seed, "signature and seed recorded");
    const v = runDifferential(l.case, { audit: kvm_mmu_audit }).verdict;
    equal(v.status, "divergence", `${f} replays as a divergence`);
    l.case.sut.inject = [];
    if (runDifferential(l.case, { audit: kvm_mmu_audit }).verdict.status === "pass") {
      causedByTheBug++;
    }
  }
  ok(causedByTheBug >= 1, "at least one finding passes with the bug switched off");
  // Each finding is kept as found and, next to it, minimized with the same signature.
  const originals = files.filter((f) => !f.endsWith(".min.json"));
  deepStrictEqual(
    files.filter((f) => f.endsWith(".min.json")).sort(),
    originals.map((f) => f.replace(/\.json$/, ".min.json")).sort(),
  );
  for (const f of originals) {
    const a = loadCaseFile(`${SCRATCH}/found/${f}`),
      b = loadCaseFile(`${SCRATCH}/found/${f.replace(/\.json$/, ".min.json")}`);
    ok(a.ok && b.ok);
    equal(signatureOf(b.case), signatureOf(a.case), f);
    ok(b.case.program.length <= a.case.program.length, f);
    equal(b.case.meta.found.by, "minimize");
  }
  match(r.err, /^minimized: \d+ -> \d+ ops/m);
  const report = JSON.parse(readFileSync(`${SCRATCH}/r.json`, "utf8"));
  ok(report.findings.length >= 1);
  match(
    readFileSync(`${SCRATCH}/r.xml`, "utf8"),
    /<testsuites name="shadow-mmu-fuzz" tests="\d+" failures="[1-9]/,
  );
});

Deno.test("fuzz: a stopped run keeps every finding it reported, each a valid case", async () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 4000);
  const r = await capture([
    "--seed",
    "5",
    "--time",
    "120",
    "--workers",
    "2",
    "--corpus",
    "none",
    "--inject",
    "prefetch_ignores_accessed",
    "--out",
    `${SCRATCH}/stopped`,
  ], stop.signal);
  clearTimeout(timer);
  match(r.out, /\[interrupted\]/);
  const reported = [...r.err.matchAll(/^finding: .* -> (.*)$/gm)].map((m) => m[1]!);
  ok(reported.length >= 1, r.err);
  for (const file of reported) ok(loadCaseFile(file).ok, file);
  equal(readdirSync(`${SCRATCH}/stopped`).filter((f) => f.endsWith(".tmp")).length, 0);
});
