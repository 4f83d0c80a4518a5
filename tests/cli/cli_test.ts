/**
 * The replay and fuzz commands, run in-process: exit codes, the text and JSON outputs, and clean
 * errors for invalid files.
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { main as replay } from "../../src/cli/replay.ts";
import { capture } from "../_helpers/capture.ts";
import { corpusCases } from "../_helpers/corpus_cases.ts";

const SCRATCH = ".tmp/cli_test";

Deno.test("replay: the corpus runs on both sides, one line per step, a verdict per case, exit 0", () => {
  const r = capture(() => replay(corpusCases("oracle").map((c) => c.file)));
  equal(r.status, 0, r.err);
  match(r.out, /pae\/pdpte-edit-needs-reload\.json: PAE.*oracle \+ SUT\)/);
  match(r.out, /#7 cpu0 load la=0x1000 cpl0 -> ok gpa=0x8000/);
  match(r.out, /verdict: pass/);
  match(r.out, /sut counters: pf_taken=\d+/);
  // The PSE-36 case documents a divergence where the SUT is faithful to KVM (expect:divergence).
  match(
    r.out,
    /legacy32\/pse36[^\n]*\n(.*\n)*?\s+verdict: DIVERGENCE at step 3 \(invariant\): I-8/,
  );
});

Deno.test("replay --events: the SUT's event log under each step, next to the oracle's walk", () => {
  const r = capture(() =>
    replay(["corpus/ia32e4/invlpg-syncs-unsync-pte.json", "--events", "--trace"])
  );
  equal(r.status, 0, r.err);
  match(
    r.out,
    /#3 cpu0 store [^\n]*\n\s+sut: cpu0 #PF exit cr2=0x401f4080 ec=0x3\n\s+sut: vm unsync sp#3/,
  );
  match(r.out, /walk PT {3}@0x4fa0 = 0x4027 \(memory\)/);
});

Deno.test("replay: an unexpected divergence exits 1; --oracle-only runs the oracle alone", () => {
  mkdirSync(SCRATCH, { recursive: true });
  const c = JSON.parse(Deno.readTextFileSync("corpus/legacy32/pse36-4mib-page.json"));
  c.meta.tags = [];
  writeFileSync(`${SCRATCH}/untagged.json`, JSON.stringify(c));
  equal(capture(() => replay([`${SCRATCH}/untagged.json`])).status, 1);
  const o = capture(() => replay([`${SCRATCH}/untagged.json`, "--oracle-only"]));
  equal(o.status, 0, o.err);
  match(o.out, /oracle only\)/);
  match(o.out, /#5 cpu0 load la=0x401008 cpl0 -> ok gpa=0x7008/);
});

Deno.test("replay --json: one stable document with every step and its allowed outcomes", () => {
  const r = capture(() =>
    replay(["corpus/ia32e4/pte-edit-stale-until-invlpg.json", "--json", "--trace"])
  );
  equal(r.status, 0, r.err);
  const doc = JSON.parse(r.out);
  equal(doc.format, "shadow-mmu-replay");
  equal(doc.version, 2);
  equal(doc.cases[0].replay.sides, "both");
  equal(doc.cases[0].replay.verdict.status, "pass");
  const steps = doc.cases[0].replay.steps;
  equal(steps[2].sut.kind, "observation");
  equal(steps[2].allowed[steps[2].committed].observation.gpa, steps[2].sut.observation.gpa);
  equal(steps.length, 7);
  deepStrictEqual(
    steps[2].allowed.map((
      o: { via: string; observation: { gpa: string } },
    ) => [o.via, o.observation.gpa]),
    [
      ["walk", "0x6008"],
      ["tlb", "0x5008"],
    ],
  );
  deepStrictEqual(
    steps[0].allowed[0].writes.map((w: { kind: string; addr: string }) => `${w.kind}@${w.addr}`),
    [
      "A@0x1000",
      "A@0x2008",
      "A@0x3008",
      "A@0x4008",
    ],
  );
  equal(steps[2].allowed[1].trace[3].source, "snapshot");
});

Deno.test("replay: an invalid file names the file and the JSON path, exit 2, other files still run", () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  mkdirSync(SCRATCH, { recursive: true });
  const bad = JSON.parse(Deno.readTextFileSync("corpus/ia32e5/la57-high-address.json"));
  bad.program[1].la = "0x12345"; // not 8-byte aligned
  bad.cpu.maxPhyAddr = 60;
  writeFileSync(`${SCRATCH}/bad.json`, JSON.stringify(bad));
  writeFileSync(`${SCRATCH}/broken.json`, "{ not json");
  Deno.copyFileSync("corpus/pae/pdpte-edit-needs-reload.json", `${SCRATCH}/good.json`);
  const r = capture(() => replay([SCRATCH]));
  equal(r.status, 2);
  match(r.err, /bad\.json: \$\.cpu\.maxPhyAddr: /);
  match(r.err, /bad\.json: \$\.program\[1\]\.la: expected an 8-byte aligned linear address/);
  match(r.err, /broken\.json: \$: invalid JSON/);
  ok(!/at .*\.ts:\d+/.test(r.err), "no stack trace");
  match(r.out, /good\.json: PAE/);
});

Deno.test("replay: an impossible initial state (PAE PDPTE with reserved bits) is an input error", () => {
  mkdirSync(SCRATCH, { recursive: true });
  const c = JSON.parse(Deno.readTextFileSync("corpus/pae/pdpte-edit-needs-reload.json"));
  c.memory[0].words["0"] = "0x2021"; // PDPTE0: P=1 with bit 5 (reserved in PAE PDPTEs)
  writeFileSync(`${SCRATCH}/pdpte.json`, JSON.stringify(c));
  const r = capture(() => replay([`${SCRATCH}/pdpte.json`]));
  equal(r.status, 2);
  match(r.err, /pdpte\.json: \$\.control\.cr3: Cannot load PDPTE registers .*PDPTE0 = 0x2021/);
});

Deno.test("replay: usage errors exit 2 with the usage text", () => {
  equal(capture(() => replay([])).status, 2);
  const r = capture(() => replay(["--nope"]));
  equal(r.status, 2);
  match(r.err, /usage: deno task replay/);
});
