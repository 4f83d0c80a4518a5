/**
 * The efficacy benchmark, in the size CI can afford (the "1-seed, 5-bug smoke
 * version"): five bugs of the zoo are found by fuzzing within a case cap, each first finding is
 * caused by its bug (the minimized reproducer diverges with it on and passes with it off), the
 * control run has no false positive, the figures are deterministic under a case cap, and the
 * command's table, JSON and SVG are well formed. The full measurement (`deno task efficacy
 * --budget 60 --seeds 5`) is not run here.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { efficacySvg } from "../../src/efficacy/svg.ts";
import { measureEfficacy, median } from "../../src/efficacy/efficacy.ts";
import { hunt } from "../../src/efficacy/hunt.ts";
import { efficacyTable, main } from "../../src/cli/efficacy.ts";
import { parseCase } from "../../src/corpus/load_case.ts";
import { runCase } from "../../src/corpus/run_case.ts";
import { capture } from "../_helpers/capture.ts";

const SMOKE_BUGS = [
  "walker_error_drops_user_bit",
  "prefetch_ignores_accessed",
  "unsync_no_write_protect_on_sync",
  "track_write_skips_zap",
  "dirty_log_enable_no_write_protect",
];

Deno.test("efficacy: five zoo bugs found in seed 1, each caused by its bug, no false positive", () => {
  const report = measureEfficacy({
    bugs: SMOKE_BUGS,
    seeds: 1,
    budgetMs: 120_000,
    minimizeMs: 3000,
    control: true,
    maxCases: 1500,
  });
  equal(report.falsePositives, 0);
  equal(report.control.length, 1);
  ok(report.control[0]!.cases === 1500, "the control ran to its case cap");
  for (const r of report.runs) {
    ok(r.found, `${r.bug} not found in ${r.cases} cases`);
    ok(r.minimized && r.size && r.minimized.ops <= r.size.ops, r.bug!);
    const loaded = parseCase(r.caseText!, r.bug!);
    ok(loaded.ok);
    deepStrictEqual(loaded.case.sut.inject, [r.bug]);
    equal(runCase(loaded.case).status, "divergence", `${r.bug}: the reproducer diverges`);
    const off = { ...loaded.case, sut: { ...loaded.case.sut, inject: [] } };
    equal(runCase(off).status, "pass", `${r.bug}: the reproducer passes without the bug`);
  }
  deepStrictEqual(report.bugs.map((b) => [b.bug, b.found]), SMOKE_BUGS.map((b) => [b, 1]));
  const table = efficacyTable(report);
  for (const b of SMOKE_BUGS) ok(table.some((l) => l.startsWith(`| ${b} `)), b);
  ok(table.some((l) => l.startsWith("5/5 bugs found")), table.join("\n"));
  const svg = efficacySvg(report);
  ok(svg.startsWith("<svg ") && svg.trimEnd().endsWith("</svg>"));
  equal(svg.match(/<path /g)?.length, 2, "one curve for the seed, one for the mean");
});

Deno.test("efficacy: under a case cap a hunt is deterministic, and the control finds nothing", () => {
  const a = hunt({ bug: "prefetch_ignores_accessed", seed: 2, budgetMs: 60_000, maxCases: 400 });
  const b = hunt({ bug: "prefetch_ignores_accessed", seed: 2, budgetMs: 60_000, maxCases: 400 });
  ok(a.finding !== null);
  deepStrictEqual(
    [a.cases, a.finding.index, a.finding.signature, a.finding.caseText],
    [b.cases, b.finding!.index, b.finding!.signature, b.finding!.caseText],
  );
  const none = hunt({ bug: null, seed: 2, budgetMs: 60_000, maxCases: 300 });
  equal(none.finding, null);
  equal(none.cases, 300);
});

Deno.test("efficacy: median", () => {
  equal(median([]), null);
  equal(median([3]), 3);
  equal(median([4, 1, 3]), 3);
  equal(median([4, 1, 3, 2]), 2.5);
});

Deno.test("efficacy: usage errors exit 2, --help and --list exit 0", () => {
  for (
    const args of [
      ["--bugs", "no_such_bug"],
      ["--seeds", "0"],
      ["--budget", "soon"],
      ["--sweep", "legacy32"],
      ["--max-cases", "-1"],
      ["extra"],
    ]
  ) {
    const r = capture(() => main(args));
    equal(r.status, 2, args.join(" "));
    ok(r.err.includes("usage: deno task efficacy"), r.err);
  }
  equal(capture(() => main(["--help"])).status, 0);
  const list = capture(() => main(["--list"]));
  equal(list.status, 0);
  ok(list.out.includes("invalidate_pcid_keeps_prev_roots:"), list.out);
});
