/**
 * `corpus check` over the whole of `corpus/`, recursively, one test step per case file: every
 * folder (one per guest mode, `corpus/<mode>/`, and any other added later) is replayed on both sides with the SUT's audit and must
 * behave as each case documents. Then the check's own rules, on variants of corpus cases: what
 * a case expects (`expect:divergence`, `sut.inject`, `bug:NAME` tags), the runs that check an
 * injected bug on and off, invalid tags and impossible initial states, and the exit status.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  checkCase,
  checkCaseFile,
  checkCorpus,
  exitStatusOf,
  failureLine,
  type FileCheck,
  statusLine,
} from "../../src/corpus/check.ts";
import { encodeCase, loadCaseFile } from "../../src/corpus/load_case.ts";
import { EXPECT_DIVERGENCE } from "../../src/diff/replay.ts";
import type { Case } from "../../src/model/case.ts";
import { INJECTED_BUGS } from "../../src/shadow/bugs.ts";

const CORPUS = fileURLToPath(new URL("../../corpus/", import.meta.url));
const SCRATCH = join(".tmp", "corpus-check-test");

/** Every `*.json` file under `dir` except schemas, found without `caseFilesIn`. */
function jsonFilesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((p) => p.endsWith(".json") && !p.endsWith(".schema.json"))
    .map((p) => join(dir, p))
    .sort();
}

function corpusCase(name: string): Case {
  const l = loadCaseFile(join(CORPUS, name));
  if (!l.ok) throw l.error;
  return l.case;
}

/** A copy of `c` with its tags and injected bugs replaced. */
function variant(c: Case, tags: string[], inject: string[] = []): Case {
  const v = structuredClone(c);
  v.meta.tags = tags;
  v.sut.inject = inject;
  return v;
}

const runsOf = (f: FileCheck) =>
  f.runs.map((r) => `${r.label}: ${r.got.status}${r.ok ? "" : " (wrong)"}`);

const FILES = jsonFilesUnder(CORPUS);
const CHECKS: FileCheck[] = [];

Deno.test("corpus check: every case file under corpus/, in every folder, behaves as it documents", async (t) => {
  ok(FILES.length >= 50, `${FILES.length} case files under corpus/`);
  for (const file of FILES) {
    const shown = relative(CORPUS, file);
    await t.step(shown, () => {
      const r = checkCaseFile(file, shown);
      CHECKS.push(r);
      ok(r.status !== "invalid" && r.status !== "unexpected", statusLine(r));
      equal(failureLine(r), null);
      ok(r.runs.length >= 1 && r.runs.every((run) => run.ok), statusLine(r));
    });
  }
});

Deno.test("corpus check: checkCorpus finds the same files as a plain directory walk, in every folder", () => {
  const r = checkCorpus([CORPUS], (p) => relative(CORPUS, p));
  deepStrictEqual(r.files.map((f) => f.file), FILES.map((f) => relative(CORPUS, f)));
  const folders = new Set(FILES.map((f) => relative(CORPUS, f).split("/")[0]));
  for (const d of ["disabled", "legacy32", "pae", "ia32e4", "ia32e5"]) ok(folders.has(d), d);
  equal(r.status, 0, r.files.map(failureLine).filter((l) => l !== null).join("\n"));
  equal(r.summary.files, FILES.length);
  equal(r.summary.pass + r.summary.expected + r.summary.unsupported, FILES.length);
  ok(r.summary.expected >= 10, JSON.stringify(r.summary));
});

Deno.test("corpus check: every injected bug is switched on by some corpus case, which passes with it off", () => {
  const checks = CHECKS.length > 0
    ? CHECKS
    : FILES.map((f) => checkCaseFile(f, relative(CORPUS, f)));
  for (const bug of INJECTED_BUGS) {
    const on = checks.filter((f) =>
      f.runs.some((r) => r.inject.includes(bug.name) && r.expect === "divergence" && r.ok)
    );
    ok(on.length >= 1, `no corpus case checks ${bug.name}`);
    for (const f of on) {
      const off = f.runs.find((r) => !r.inject.includes(bug.name));
      ok(off?.ok && off.got.status === "pass", `${f.file}: ${statusLine(f)}`);
    }
  }
});

Deno.test("corpus check: a bug:NAME case diverges with the bug on and passes with it off", () => {
  const c = corpusCase("ia32e4/invlpg-syncs-unsync-pte.json");
  const tagged = checkCase(c, "tagged.json");
  equal(tagged.status, "pass");
  deepStrictEqual(runsOf(tagged), ["as written: pass", "with bug invlpg_no_sync: divergence"]);

  // The same bug as sut.inject: the case diverges as written and passes without it.
  const injected = checkCase(variant(c, ["smoke"], ["invlpg_no_sync"]), "injected.json");
  equal(injected.status, "expected");
  deepStrictEqual(runsOf(injected), ["as written: divergence", "without sut.inject: pass"]);

  // Tied to a bug it does not catch: unexpected, and the line says which run.
  const wrongBug = checkCase(variant(c, ["bug:cr3_flush_skips_sync"]), "wrong-bug.json");
  equal(wrongBug.status, "unexpected", statusLine(wrongBug));
  ok(
    /^wrong-bug\.json: unexpected: with bug cr3_flush_skips_sync: passed, expected a divergence$/
      .test(failureLine(wrongBug)!),
    failureLine(wrongBug)!,
  );
});

Deno.test("corpus check: expect:divergence must diverge; a documented divergence with a bug on diverges both ways", () => {
  const passing = corpusCase("ia32e4/invlpg-syncs-unsync-pte.json");
  const r = checkCase(variant(passing, [EXPECT_DIVERGENCE]), "tagged.json");
  equal(r.status, "unexpected");
  ok(failureLine(r)!.includes("as written: passed, expected a divergence"), failureLine(r)!);

  const kvm = corpusCase("pae/rsvd-pf-keeps-unsync-spte.json");
  equal(checkCase(kvm, "kvm.json").status, "expected");
  const untagged = checkCase(variant(kvm, ["mode:pae"]), "untagged.json");
  equal(untagged.status, "unexpected");
  ok(/^untagged\.json: unexpected: as written: diverged at step \d+ /.test(failureLine(untagged)!));
  const both = checkCase(variant(kvm, [EXPECT_DIVERGENCE], ["invlpg_no_sync"]), "both.json");
  equal(both.status, "expected", statusLine(both));
  deepStrictEqual(runsOf(both), ["as written: divergence", "without sut.inject: divergence"]);
});

Deno.test("corpus check: an unknown bug tag and an impossible initial state are invalid, at a JSON path", () => {
  const c = corpusCase("ia32e4/invlpg-syncs-unsync-pte.json");
  const r = checkCase(variant(c, ["smoke", "bug:no_such_bug"]), "bug.json");
  equal(r.status, "invalid");
  deepStrictEqual(r.problems.map((p) => p.path), ["$.meta.tags[1]"]);
  ok(
    failureLine(r)!.startsWith(
      'bug.json: $.meta.tags[1]: tag names an unknown injected bug "no_such_bug"',
    ),
  );

  // A PAE PDPTE with a reserved bit (bit 1) cannot be loaded at the initial MOV CR3.
  const pae = corpusCase("pae/pdpte-edit-reload.json");
  const bad = structuredClone(pae);
  bad.memory.find((p) => p.gfn === pae.control.cr3 >> 12n)!.words["0"]! |= 0x2n;
  const s = checkCase(bad, "pdpte.json");
  equal(s.status, "invalid");
  deepStrictEqual(s.problems.map((p) => p.path), ["$.control.cr3"]);
});

Deno.test("corpus check: files in a directory each get a result; exit 2 for an invalid one, else 1 for an unexpected one", () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  const dir = join(SCRATCH, "mixed");
  mkdirSync(join(dir, "deeper"), { recursive: true });
  const c = corpusCase("ia32e4/invlpg-syncs-unsync-pte.json");
  writeFileSync(join(dir, "a-pass.json"), encodeCase(c));
  writeFileSync(
    join(dir, "deeper", "b-unexpected.json"),
    encodeCase(variant(c, [EXPECT_DIVERGENCE])),
  );
  writeFileSync(join(dir, "c-invalid.json"), '{"format": "shadow-mmu-case"');
  writeFileSync(join(dir, "case.schema.json"), "{}");
  writeFileSync(join(dir, "notes.txt"), "not a case");
  const r = checkCorpus([dir], (p) => relative(dir, p));
  deepStrictEqual(r.files.map((f) => [f.file, f.status]), [
    ["a-pass.json", "pass"],
    ["c-invalid.json", "invalid"],
    ["deeper/b-unexpected.json", "unexpected"],
  ]);
  equal(r.status, 2);
  deepStrictEqual(
    { ...r.summary },
    { files: 3, pass: 1, expected: 0, unsupported: 0, invalid: 1, unexpected: 1, bugRuns: 1 },
  );
  equal(exitStatusOf(r.files.filter((f) => f.status !== "invalid")), 1);
  equal(exitStatusOf(r.files.filter((f) => f.status === "pass")), 0);
  ok(failureLine(r.files[1]!)!.startsWith("c-invalid.json: $: invalid JSON: "));
  // A missing file is invalid too, and does not stop the others.
  const missing = checkCorpus([join(dir, "nope.json"), join(dir, "a-pass.json")]);
  deepStrictEqual(missing.files.map((f) => f.status), ["invalid", "pass"]);
  ok(missing.files[0]!.problems[0]!.message.startsWith("cannot read file"));
});
