/**
 * `deno task corpus` end to end, in-process: `check` on the real corpus (exit 0) and on broken
 * files (exit 1, 2), `stats` text and JSON, `add` text and JSON, and usage errors (exit 2).
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../../src/cli/corpus.ts";
import { encodeCase, loadCaseFile } from "../../src/corpus/load_case.ts";
import { EXPECT_DIVERGENCE } from "../../src/diff/replay.ts";
import { FUZZ_GENERATOR } from "../../src/gen/fuzz_case.ts";
import { capture } from "../_helpers/capture.ts";

const CORPUS = fileURLToPath(new URL("../../corpus/", import.meta.url));
const SCRATCH = resolve(".tmp", "corpus-cli-test");

function corpusText(name: string, edit: (c: ReturnType<typeof load>) => void = () => {}): string {
  const c = load(name);
  edit(c);
  return encodeCase(c);
}

function load(name: string) {
  const l = loadCaseFile(join(CORPUS, name));
  if (!l.ok) throw l.error;
  return l.case;
}

Deno.test("cli: corpus check on the corpus exits 0 with a summary line; --json has one result per file", () => {
  const text = capture(() => main(["check", CORPUS]));
  equal(text.status, 0, text.err);
  equal(text.err, "");
  ok(
    /^corpus check: \d+ file\(s\): \d+ pass, \d+ diverge as expected, 0 unsupported, 0 invalid, 0 unexpected/
      .test(text.out),
    text.out,
  );
  const json = capture(() => main(["check", join(CORPUS, "pae"), "--json"]));
  equal(json.status, 0);
  const doc = JSON.parse(json.out) as {
    format: string;
    status: number;
    files: { status: string }[];
  };
  equal(doc.format, "shadow-mmu-corpus-check");
  equal(doc.status, 0);
  ok(
    doc.files.length >= 5 && doc.files.every((f) => f.status === "pass" || f.status === "expected"),
  );
  ok(doc.files.some((f) => f.status === "expected"), "the pae folder documents a KVM divergence");
  const verbose = capture(() => main(["check", join(CORPUS, "ia32e4"), "--verbose"]));
  equal(verbose.status, 0);
  const files = readdirSync(join(CORPUS, "ia32e4")).filter((n) => n.endsWith(".json")).length;
  ok(verbose.out.trimEnd().split("\n").length >= files + 1, "one line per file and the summary");
});

Deno.test("cli: corpus check exits 1 on an unexpected verdict and 2 on an invalid file, naming each", () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  const dir = join(SCRATCH, "check");
  mkdirSync(dir, { recursive: true });
  const smoke = "ia32e4/invlpg-syncs-unsync-pte.json";
  writeFileSync(join(dir, "ok.json"), corpusText(smoke));
  writeFileSync(
    join(dir, "tagged.json"),
    corpusText(smoke, (c) => void c.meta.tags.push(EXPECT_DIVERGENCE)),
  );
  const one = capture(() => main(["check", dir]));
  equal(one.status, 1);
  ok(
    one.err.includes("tagged.json: unexpected: as written: passed, expected a divergence"),
    one.err,
  );
  writeFileSync(join(dir, "bad.json"), corpusText(smoke).replace('"cpl": 0', '"cpl": 2'));
  const two = capture(() => main(["check", dir]));
  equal(two.status, 2);
  ok(/bad\.json: \$\.program\[\d+\]\.cpl: /.test(two.err), two.err);
  ok(
    two.out.includes(
      "3 file(s): 1 pass, 0 diverge as expected, 0 unsupported, 1 invalid, 1 unexpected",
    ),
  );
});

Deno.test("cli: corpus stats prints the same text twice and valid JSON", () => {
  const a = capture(() => main(["stats", CORPUS]));
  const b = capture(() => main(["stats", CORPUS]));
  equal(a.status, 0);
  equal(a.out, b.out);
  ok(a.out.startsWith("corpus stats: "));
  ok(a.out.includes("injected bugs covered: "));
  const json = capture(() => main(["stats", CORPUS, "--json"]));
  const s = JSON.parse(json.out) as { format: string; cases: number };
  equal(s.format, "shadow-mmu-corpus-stats");
  ok(s.cases >= 50);
});

Deno.test("cli: corpus add writes the case and reports duplicates; --json; exit 2 on an invalid input", () => {
  const dir = join(SCRATCH, "add");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const finding = join(dir, "finding--run-7.json");
  writeFileSync(
    finding,
    corpusText("pae/rsvd-pf-keeps-unsync-spte.json", (c) => {
      c.meta = {
        title: "fuzz",
        found: { by: "fuzz", seed: "7", generator: FUZZ_GENERATOR },
        tags: ["mode:pae"],
      };
    }),
  );
  const to = join(dir, "corpus");
  const r = capture(() => main(["add", finding, finding, "--to", to, "--budget", "2s"]));
  equal(r.status, 0, r.err);
  ok(
    /^added .*corpus\/pae\/observation-pae-load-ok-vs-pf-reserved-pt-.*\.json from /m.test(r.out),
    r.out,
  );
  ok(r.out.includes("known divergence kvm-rsvd-pf-keeps-unsync-spte: tagged expect:divergence"));
  ok(/^duplicate .*finding--run-7\.json: signature observation:pae:load:/m.test(r.out), r.out);
  ok(
    r.out.includes("corpus add: 2 input(s): 1 added, 1 duplicate, 0 skipped, 0 invalid, 0 failed"),
  );
  equal(capture(() => main(["check", to])).status, 0);

  const bad = join(dir, "bad.json");
  writeFileSync(bad, "{");
  const j = capture(() => main(["add", finding, bad, "--to", to, "--json"]));
  equal(j.status, 2);
  const doc = JSON.parse(j.out) as { status: number; results: { status: string }[] };
  deepStrictEqual(doc.results.map((x) => x.status), ["duplicate", "invalid"]);
});

Deno.test("cli: usage errors exit 2; --help exits 0", () => {
  for (
    const args of [
      [],
      ["bogus"],
      ["add"],
      ["add", "x.json", "--budget", "soon"],
      ["check", "--budget", "1s"],
      ["stats", "a", "b"],
      ["check", "--nope"],
    ]
  ) {
    const r = capture(() => main(args));
    equal(r.status, 2, args.join(" "));
    ok(r.err.includes("usage: deno task corpus"), args.join(" "));
  }
  const help = capture(() => main(["--help"]));
  equal(help.status, 0);
  ok(help.out.includes("corpus check"));
  equal(capture(() => main(["check", "--help"])).status, 0);
});
