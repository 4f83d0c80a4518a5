/**
 * `corpus add`: findings are minimized, deduplicated by signature against the corpus and each
 * other, given provenance and tags, and written as `<corpus>/<mode>/<slug>.json` without ever
 * replacing a file; a known KVM divergence is tagged `expect:divergence`, anything else comes
 * with a warning. Also the pieces: slugs, the no-overwrite write, the fast-check version in
 * `meta.found`, and `corpus stats`.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { addFindings, type AddResult, todayUtc } from "../../src/corpus/add.ts";
import { checkCaseFile } from "../../src/corpus/check.ts";
import { caseFilesIn, encodeCase, loadCaseFile, parseCase } from "../../src/corpus/load_case.ts";
import { expectsDivergence } from "../../src/corpus/expectation.ts";
import { candidateName, SLUG_MAX, slugOf } from "../../src/corpus/slug.ts";
import { runCase } from "../../src/corpus/run_case.ts";
import { corpusStats, spreadOf, statsText } from "../../src/corpus/stats.ts";
import { writeNewFile } from "../../src/corpus/write_new.ts";
import { EXPECT_DIVERGENCE } from "../../src/diff/replay.ts";
import { FAST_CHECK_VERSION, FUZZ_GENERATOR } from "../../src/gen/fuzz_case.ts";
import type { Case } from "../../src/model/case.ts";
import { INJECTED_BUGS } from "../../src/shadow/bugs.ts";

const CORPUS = fileURLToPath(new URL("../../corpus/", import.meta.url));
const SCRATCH = join(".tmp", "corpus-add-test");
const TODAY = "2025-01-02";
const KNOWN = "pae/rsvd-pf-keeps-unsync-spte.json";
const SMOKE_BUG = "ia32e4/invlpg-syncs-unsync-pte.json";

function corpusCase(name: string): Case {
  const l = loadCaseFile(join(CORPUS, name));
  if (!l.ok) throw l.error;
  return l.case;
}

/** A corpus case dressed as a fuzz finding: no signature, no documentation tags, no date. */
function asFinding(name: string, inject: string[] = []): Case {
  const c = structuredClone(corpusCase(name));
  const mode = c.meta.tags.find((t) => t.startsWith("mode:"));
  c.meta = {
    title: "fuzz finding",
    found: { by: "fuzz", seed: "42", generator: FUZZ_GENERATOR },
    tags: [...(mode ? [mode] : []), "discipline:strict"],
  };
  c.sut.inject = inject;
  return c;
}

/** A fresh scratch directory. */
function scratch(name: string): string {
  const dir = join(SCRATCH, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function writeCase(dir: string, name: string, c: Case): string {
  const file = join(dir, name);
  writeFileSync(file, encodeCase(c));
  return file;
}

function added(r: AddResult | undefined): Extract<AddResult, { status: "added" }> {
  ok(r?.status === "added", JSON.stringify(r));
  return r;
}

Deno.test("add: a known KVM divergence is minimized, tagged expect:divergence, given provenance and filed by mode", () => {
  const dir = scratch("known");
  const finding = writeCase(dir, "finding--run-1.json", asFinding(KNOWN));
  const to = join(dir, "corpus");
  const [r] = addFindings([finding], { to, budgetMs: 5000, today: TODAY });
  const a = added(r);
  equal(a.known, "kvm-rsvd-pf-keeps-unsync-spte");
  equal(a.warning, null);
  equal(a.exhausted, false);
  ok(a.to.startsWith(join(to, "pae") + "/"), a.to);
  equal(basename(a.to), `${slugOf(a.signature)}.json`);
  const l = loadCaseFile(a.to);
  ok(l.ok);
  const c = l.case;
  equal(c.meta.signature, a.signature);
  ok(c.meta.signature === corpusCase(KNOWN).meta.signature, c.meta.signature);
  deepStrictEqual(c.meta.tags, [
    "mode:pae",
    "discipline:strict",
    "kvm-divergence",
    EXPECT_DIVERGENCE,
  ]);
  ok(c.meta.found.by === "fuzz" || c.meta.found.by === "minimize");
  deepStrictEqual({ ...c.meta.found, by: "-" }, {
    by: "-",
    seed: "42",
    generator: FUZZ_GENERATOR,
    date: TODAY,
    fastCheck: FAST_CHECK_VERSION,
  });
  ok(c.meta.notes?.startsWith("Imported from finding--run-1.json: minimized from "));
  ok(c.meta.notes?.includes("Known divergence kvm-rsvd-pf-keeps-unsync-spte"));
  equal(checkCaseFile(a.to).status, "expected");
  // The file is the canonical encoding of a valid case.
  equal(readFileSync(a.to, "utf8"), encodeCase(c));
});

Deno.test("add: duplicates by signature are skipped, against the corpus and against earlier inputs", () => {
  const dir = scratch("dupes");
  const to = join(dir, "corpus");
  cpSync(CORPUS, to, { recursive: true });
  const one = writeCase(dir, "one.json", asFinding(KNOWN));
  const [r] = addFindings([one], {
    to,
    budgetMs: 2000,
    today: TODAY,
    show: (p) => relative(to, p),
  });
  ok(r?.status === "duplicate", JSON.stringify(r));
  equal(r.of, KNOWN);

  const empty = join(dir, "empty-corpus");
  const two = writeCase(dir, "two.json", asFinding(KNOWN));
  const rs = addFindings([one, two], { to: empty, budgetMs: 2000, today: TODAY });
  const first = added(rs[0]);
  ok(rs[1]?.status === "duplicate" && rs[1].of === first.to, JSON.stringify(rs[1]));
  // A later run sees the added case as part of the corpus.
  const again = addFindings([two], { to: empty, budgetMs: 2000, today: TODAY });
  ok(again[0]?.status === "duplicate" && again[0].of === first.to);
});

Deno.test("add: an undocumented divergence is imported with a warning that corpus check will fail", () => {
  const dir = scratch("unknown");
  const finding = writeCase(dir, "finding.json", asFinding(KNOWN));
  const [r] = addFindings([finding], {
    to: join(dir, "corpus"),
    budgetMs: 2000,
    today: TODAY,
    knownOf: () => null,
  });
  const a = added(r);
  equal(a.known, null);
  ok(
    a.warning?.includes("corpus check") && a.warning.includes("not a known divergence"),
    a.warning!,
  );
  const l = loadCaseFile(a.to);
  ok(l.ok && !l.case.meta.tags.includes(EXPECT_DIVERGENCE));
  equal(checkCaseFile(a.to).status, "unexpected");
});

Deno.test("add: a finding with injected bugs keeps only the bugs it needs, and checks on and off", () => {
  const dir = scratch("injected");
  // A bug that changes nothing in this program.
  const idle = INJECTED_BUGS.map((b) => b.name).find((n) =>
    n !== "invlpg_no_sync" && runCase(asFinding(SMOKE_BUG, [n])).status === "pass"
  )!;
  ok(idle !== undefined);
  const finding = writeCase(dir, "f.json", asFinding(SMOKE_BUG, ["invlpg_no_sync", idle]));
  const [r] = addFindings([finding], { to: join(dir, "corpus"), budgetMs: 5000, today: TODAY });
  const a = added(r);
  equal(a.warning, null);
  ok(a.to.includes(`${join(dir, "corpus", "ia32e4")}/`), a.to);
  const l = loadCaseFile(a.to);
  ok(l.ok);
  deepStrictEqual(l.case.sut.inject, ["invlpg_no_sync"]);
  equal(l.case.meta.found.by, "minimize");
  ok(a.after.ops <= a.before.ops);
  const check = checkCaseFile(a.to);
  equal(check.status, "expected");
  deepStrictEqual(check.runs.map((x) => x.got.status), ["divergence", "pass"]);
});

Deno.test("add: never overwrites a file (numeric suffix); invalid and passing inputs are reported, not written", () => {
  const dir = scratch("collide");
  const to = join(dir, "corpus");
  const signature = corpusCase(KNOWN).meta.signature!;
  const taken = join(to, "pae", `${slugOf(signature)}.json`);
  mkdirSync(join(to, "pae"), { recursive: true });
  writeFileSync(taken, "not a case: must stay as it is\n");
  const bad = join(dir, "bad.json");
  writeFileSync(bad, '{"format": "shadow-mmu-case", "version": 1, "cpu": 5}');
  const passing = writeCase(dir, "pass.json", asFinding(SMOKE_BUG));
  const finding = writeCase(dir, "f.json", asFinding(KNOWN));
  const rs = addFindings([bad, passing, finding], { to, budgetMs: 2000, today: TODAY });
  ok(rs[0]?.status === "invalid" && rs[0].problems[0]?.path === "$.cpu", JSON.stringify(rs[0]));
  ok(rs[1]?.status === "skipped" && rs[1].reason.includes("does not diverge"));
  equal(added(rs[2]).to, join(to, "pae", `${slugOf(signature)}-2.json`));
  equal(readFileSync(taken, "utf8"), "not a case: must stay as it is\n");
});

Deno.test("add: the same finding and date give the same file", () => {
  const dir = scratch("determinism");
  const finding = writeCase(dir, "f.json", asFinding(KNOWN));
  const texts = ["a", "b"].map((d) => {
    const [r] = addFindings([finding], { to: join(dir, d), budgetMs: 5000, today: TODAY });
    return readFileSync(added(r).to, "utf8");
  });
  equal(texts[0], texts[1]);
  ok(/^\d{4}-\d{2}-\d{2}$/.test(todayUtc()));
});

Deno.test("slugs are filesystem-safe, bounded, and cut at a separator", () => {
  equal(
    slugOf("observation:pae:load:ok-vs-pf:reserved@PT|mech=none@walk|leaf=unsync"),
    "observation-pae-load-ok-vs-pf-reserved-pt-mech-none-walk-leaf-unsync",
  );
  equal(slugOf("../../etc/passwd"), "etc-passwd");
  equal(slugOf(""), "finding");
  equal(slugOf("..."), "finding");
  for (const sig of ["a".repeat(300), `${"word-".repeat(40)}end`, "harness-exception:x/y\\z\0"]) {
    const s = slugOf(sig);
    ok(s.length <= SLUG_MAX && /^[a-z0-9][a-z0-9_.-]*$/.test(s) && !s.includes(".."), s);
    ok(!/[-_.]$/.test(s), s);
  }
  equal(slugOf(`${"word-".repeat(40)}end`), "word-".repeat(16).slice(0, -1));
  deepStrictEqual([1, 2, 3].map((n) => candidateName("x", n)), ["x.json", "x-2.json", "x-3.json"]);
});

Deno.test("writeNewFile takes the first free name and leaves no temporary file", () => {
  const dir = scratch("write-new");
  const name = (n: number) => candidateName("f", n);
  equal(writeNewFile(dir, name, "1"), join(dir, "f.json"));
  equal(writeNewFile(dir, name, "2"), join(dir, "f-2.json"));
  equal(readFileSync(join(dir, "f.json"), "utf8"), "1");
  deepStrictEqual(Deno.readDirSync(dir).toArray().map((e) => e.name).sort(), [
    "f-2.json",
    "f.json",
  ]);
  ok(!existsSync(join(dir, "f-3.json")));
});

Deno.test("provenance: meta.found.fastCheck round-trips; the version is the one deno.json imports", () => {
  const c = structuredClone(corpusCase(KNOWN));
  c.meta.found = { ...c.meta.found, fastCheck: FAST_CHECK_VERSION, date: TODAY };
  const text = encodeCase(c);
  const back = parseCase(text, "x.json");
  ok(back.ok);
  deepStrictEqual(back.case, c);
  equal(encodeCase(back.case), text);
  const config = JSON.parse(
    readFileSync(fileURLToPath(new URL("../../deno.json", import.meta.url)), "utf8"),
  ) as { imports: Record<string, string> };
  equal(config.imports["fast-check"], `npm:fast-check@${FAST_CHECK_VERSION}`);
  const bad = parseCase(
    text.replace(`"fastCheck": "${FAST_CHECK_VERSION}"`, '"fastCheck": 4'),
    "y",
  );
  ok(!bad.ok && bad.error.problems[0]?.path === "$.meta.found.fastCheck");
});

Deno.test("stats: deterministic counts by mode, tag and provenance, bugs covered, medians", () => {
  const a = corpusStats([CORPUS], (p) => relative(CORPUS, p));
  deepStrictEqual(corpusStats([CORPUS], (p) => relative(CORPUS, p)), a);
  deepStrictEqual(statsText(a), statsText(corpusStats([CORPUS], (p) => relative(CORPUS, p))));
  equal(a.cases, a.files - a.invalid.length);
  const sum = (r: Record<string, number>) => Object.values(r).reduce((x, y) => x + y, 0);
  equal(sum(a.byMode), a.cases);
  equal(sum(a.byFoundBy), a.cases);
  // Cases that must diverge as written: tagged expect:divergence, or with injected bugs on.
  const must = caseFilesIn([CORPUS]).filter((f) => {
    const l = loadCaseFile(f);
    return l.ok && expectsDivergence(l.case);
  });
  equal(a.expectDivergence, must.length);
  ok(a.byTag[EXPECT_DIVERGENCE]! <= a.expectDivergence);
  deepStrictEqual(Object.keys(a.injectedBugs), INJECTED_BUGS.map((b) => b.name).sort());
  ok(Object.values(a.injectedBugs).every((n) => n >= 1), JSON.stringify(a.injectedBugs));
  ok(a.ops.min <= a.ops.median && a.ops.median <= a.ops.max);
  deepStrictEqual(Object.keys(a.byMode), Object.keys(a.byMode).sort());
  deepStrictEqual(spreadOf([]), { median: 0, min: 0, max: 0 });
  deepStrictEqual(spreadOf([5, 1, 3]), { median: 3, min: 1, max: 5 });
  deepStrictEqual(spreadOf([4, 1, 2, 3]), { median: 2.5, min: 1, max: 4 });
});

Deno.test("stats: a mode comes from the tag, else the folder, else the initial paging mode", () => {
  const dir = scratch("stats");
  const c = structuredClone(corpusCase(KNOWN));
  c.meta.tags = [];
  mkdirSync(join(dir, "legacy32-pse"), { recursive: true });
  mkdirSync(join(dir, "misc"), { recursive: true });
  writeCase(join(dir, "legacy32-pse"), "a.json", c);
  writeCase(join(dir, "misc"), "b.json", c);
  const tagged = structuredClone(c);
  tagged.meta.tags = ["mode:ia32e5"];
  writeCase(join(dir, "misc"), "c.json", tagged);
  writeFileSync(join(dir, "misc", "d.json"), "{");
  const s = corpusStats([dir], (p) => relative(dir, p));
  deepStrictEqual(s.byMode, { "ia32e5": 1, "legacy32-pse": 1, "pae": 1 });
  deepStrictEqual(s.invalid, ["misc/d.json"]);
  equal(s.files, 4);
});
