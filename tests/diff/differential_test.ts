/**
 * The differential smoke test: every hand-written program of the corpus (tag `smoke`; and the
 * oracle's hand cases, tag `oracle`) runs through the oracle and the SUT with the invariant audit
 * after every step, and must pass (or diverge, when tagged `expect:divergence`, as the cases
 * tagged `kvm-divergence` do: places where KVM, and so the SUT, differs from the
 * architecture, kvm-shadow-mmu.md §4); every injected
 * bug makes its targeted programs diverge and turning it off makes them pass; and the
 * comparison contract itself detects what it must.
 *
 * @module
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadCaseFile } from "../../src/corpus/load_case.ts";
import { runDifferential } from "../../src/diff/differential.ts";
import { EXPECT_DIVERGENCE } from "../../src/diff/replay.ts";
import type { Case } from "../../src/model/case.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";
import { INJECTED_BUGS } from "../../src/shadow/bugs.ts";
import { divergenceSignature } from "../../src/diff/explain.ts";
import { KNOWN_DIVERGENCES, knownDivergenceOf } from "../../src/diff/known_divergences.ts";
import { buildCase, LA4, op, tables4 } from "../_helpers/case_builder.ts";
import { corpusCases } from "../_helpers/corpus_cases.ts";
import { bugsOf } from "../../src/corpus/expectation.ts";

const SMOKE = corpusCases("smoke");
const ORACLE = corpusCases("oracle");
/** Candidate KVM divergences of kvm-shadow-mmu.md §4 that the SUT, faithful to KVM, shows. */
const KVM_DIVERGENCES = corpusCases("kvm-divergence");
const MODES = ["disabled", "legacy32", "pae", "ia32e4", "ia32e5"];

/** Runs with the audit after every step; returns the verdict as one line of text. */
function verdict(c: Case): string {
  const r = runDifferential(c, { audit: kvm_mmu_audit });
  const v = r.verdict;
  if (v.status === "divergence") {
    const d = v.divergence;
    return `divergence at step ${d.step} (${d.kind}): ${d.detail} | SUT ${d.got} | allowed ${
      d.expected.join(" / ")
    }`;
  }
  return v.status === "unsupported" ? `unsupported: ${v.reason}` : "pass";
}

Deno.test("smoke: at least 30 hand-written programs covering paging off and the four paging modes", () => {
  ok(SMOKE.length >= 30, `${SMOKE.length} programs`);
  for (const mode of MODES) {
    const n = SMOKE.filter((s) => s.c.meta.tags.includes(`mode:${mode}`)).length;
    ok(n >= 2, `mode ${mode}: ${n} programs`);
  }
});

Deno.test("smoke: no program expects a divergence; every documented KVM divergence is tagged", () => {
  deepStrictEqual(SMOKE.filter((s) => s.c.meta.tags.includes(EXPECT_DIVERGENCE)), []);
  ok(KVM_DIVERGENCES.length >= 2);
  for (const { name, c } of KVM_DIVERGENCES) ok(c.meta.tags.includes(EXPECT_DIVERGENCE), name);
});

/** The directed scenarios of issue 5 every shadow MMU must survive, as corpus file names. */
const DIRECTED: Record<string, readonly string[]> = {
  legacy32: ["pd-edit-around-cr3-reload"],
  pae: ["pdpt-edit-around-cr3-reload"],
  ia32e4: ["top-table-edit-around-cr3-reload"],
  ia32e5: ["top-table-edit-around-cr3-reload"],
};
const DIRECTED_EVERY_MODE = [
  "shared-tables-different-rights",
  "large-page-aliased-different-rights",
  "cr0-wp-toggle-supervisor-write",
  "pte-write-then-invlpg",
  "dirty-log-around-writes",
  "mmio-to-ram-after-memslot",
];

Deno.test("directed: each paging mode has every directed scenario, paging off the two it can have", () => {
  const directed = new Set(corpusCases("directed").map((d) => d.name));
  const want = [
    ...Object.entries(DIRECTED).flatMap(([mode, own]) =>
      [...DIRECTED_EVERY_MODE, ...own].map((s) => `${mode}/${s}.json`)
    ),
    "disabled/dirty-log-around-writes.json",
    "disabled/mmio-to-ram-after-memslot.json",
  ];
  deepStrictEqual([...directed].sort(), want.sort());
  for (const { name, c } of corpusCases("directed")) {
    ok(c.meta.tags.includes(`mode:${name.split("/")[0]}`), name);
    ok((c.meta.notes ?? "").length > 200, `${name}: notes walk through the program`);
  }
});

for (const { name, c } of [...SMOKE, ...ORACLE, ...KVM_DIVERGENCES]) {
  const expect = c.meta.tags.includes(EXPECT_DIVERGENCE);
  Deno.test(`differential: ${name} ${expect ? "diverges as documented" : "passes"}`, () => {
    const v = verdict(c);
    if (expect) ok(v.startsWith("divergence"), v);
    else equal(v, "pass");
  });
}

const ALL = corpusCases();
for (const bug of INJECTED_BUGS) {
  Deno.test(`injected bug ${bug.name}: its corpus cases diverge with it on and pass with it off`, () => {
    // Hand-written programs tagged bug:NAME and the zoo's minimized reproducers (sut.inject).
    const targets = ALL.filter((s) => bugsOf(s.c).includes(bug.name));
    ok(targets.length >= 1, `no corpus case is tied to ${bug.name}`);
    const on = targets.map(({ name, c }) => {
      const injected = structuredClone(c);
      injected.sut.inject = [bug.name];
      return `${name}: ${verdict(injected)}`;
    });
    ok(on.some((v) => v.includes(": divergence")), on.join("\n"));
    for (const { name, c } of targets) {
      if (c.meta.tags.includes(EXPECT_DIVERGENCE)) continue;
      const off = structuredClone(c);
      off.sut.inject = [];
      equal(`${name}: ${verdict(off)}`, `${name}: pass`);
    }
  });
}

Deno.test("contract: an A bit the SUT sets in a reachable entry is adopted; elsewhere it is a divergence", () => {
  const c = buildCase({
    mode: "ia32e4",
    features: { pku: false },
    memory: [...tables4(), [0x4010n, 0x6007n], [0x8000n, 0x1200n]],
    program: [op.load(LA4), op.load(LA4), op.load(LA4)],
  });
  // After step 1, poke A into PT[2] (reachable from CR3: MAY_A) through the SUT's memory.
  let poke: bigint | null = 0x4010n;
  const r = runDifferential(c, {
    audit: (kvm) => {
      if (poke !== null) {
        const gfn = Number(poke >> 12n);
        kvm.host.page(kvm.ram.pfnOf(gfn))[Number(poke & 0xfffn) >>> 3]! |= 0x20n;
        kvm.ram.noteWrite(gfn); // as every SUT write to guest memory does
      }
      poke = poke === 0x4010n ? 0x8000n : null; // then a data word nothing maps as a table
      return [];
    },
  });
  deepStrictEqual(r.steps[1]!.adoptedA, ["0x4010: 0x6007 -> 0x6027"]);
  ok(r.verdict.status === "divergence", JSON.stringify(r.verdict));
  equal(r.verdict.divergence.kind, "memory");
  equal(r.verdict.divergence.step, 3);
  deepStrictEqual([r.verdict.divergence.expected, r.verdict.divergence.got], [
    ["0x1200"],
    "0x1220",
  ]);
});

Deno.test("contract: a dirty log may hold extra gfns, never fewer; an invariant finding diverges", () => {
  const c = buildCase({
    mode: "disabled",
    features: { pku: false },
    memslots: [{ slot: 0, baseGfn: "0x0", npages: 16, readOnly: false }],
    program: [
      { op: "dirtyLogEnable", slot: 0 },
      op.store(0x3000n, 1n),
      { op: "dirtyLogGetAndClear", slot: 0 },
    ],
  });
  let extra = false;
  const r = runDifferential(c, {
    audit: (kvm) => {
      const slot = kvm.memslots.byId(0)!;
      if (slot.dirty_bitmap && !extra) {
        slot.dirty_bitmap.add(9); // a page the guest never wrote: allowed
        extra = true;
      }
      return [];
    },
  });
  equal(r.verdict.status, "pass");
  const lost = runDifferential(c, {
    audit: (kvm) => {
      kvm.memslots.byId(0)!.dirty_bitmap?.clear(); // data loss
      return [];
    },
  });
  ok(lost.verdict.status === "divergence" && lost.verdict.divergence.kind === "observation");
  const inv = runDifferential(c, { audit: () => [{ invariant: "I-6a", detail: "test" }] });
  ok(inv.verdict.status === "divergence" && inv.verdict.divergence.kind === "invariant");
  equal(inv.verdict.divergence.step, 1);
});

Deno.test("contract: a case using CR4.PKE is unsupported (KVM hides PKU under shadow paging)", () => {
  const c = buildCase({ mode: "ia32e4", cr4: { pke: true }, memory: tables4() });
  const r = runDifferential(c);
  equal(r.verdict.status, "unsupported");
  equal(r.sut, null);
});

Deno.test("contract: an instruction fetch from MMIO is an emulation failure: unsupported, not a finding", () => {
  const c = buildCase({
    mode: "ia32e4",
    features: { pku: false },
    memory: [...tables4(), [0x4008n, 0x80_0007n]],
    memslots: [{ slot: 0, baseGfn: "0x0", npages: 0x100, readOnly: false }],
    program: [op.fetch(LA4)],
  });
  const r = runDifferential(c);
  ok(r.verdict.status === "unsupported" && r.verdict.step === 1, JSON.stringify(r.verdict));
});

Deno.test("injected bugs: every kvm.bug() switch in src/shadow is registered, and every registered one is used", () => {
  const used = new Set<string>();
  const shadow = fileURLToPath(new URL("../../src/shadow/", import.meta.url));
  for (const f of Deno.readDirSync(shadow)) {
    if (!f.name.endsWith(".ts")) continue;
    const text = Deno.readTextFileSync(`${shadow}${f.name}`);
    for (const m of text.matchAll(/\bbug\("([a-z0-9_]+)"\)/g)) used.add(m[1]!);
  }
  deepStrictEqual([...used].sort(), INJECTED_BUGS.map((b) => b.name).sort());
});

Deno.test("contract: the last step compares all of guest memory, so an unrecorded write is caught", () => {
  const c = buildCase({
    mode: "ia32e4",
    features: { pku: false },
    memory: [...tables4(), [0x8000n, 0x1200n]],
    program: [op.load(LA4), op.load(LA4), op.load(LA4)],
  });
  let poked = false;
  const r = runDifferential(c, {
    audit: (kvm) => {
      if (!poked) kvm.host.page(kvm.ram.pfnOf(8))[0]! |= 0x10000n; // no noteWrite
      poked = true;
      return [];
    },
  });
  ok(r.verdict.status === "divergence", JSON.stringify(r.verdict));
  deepStrictEqual([r.verdict.divergence.step, r.verdict.divergence.kind], [3, "memory"]);
});

Deno.test("known divergences: each example case diverges with a signature its entry matches", () => {
  ok(KNOWN_DIVERGENCES.length >= 3);
  for (const k of KNOWN_DIVERGENCES) {
    const l = loadCaseFile(fileURLToPath(new URL(`../../${k.example}`, import.meta.url)));
    ok(l.ok, k.example);
    ok(l.case.meta.tags.includes(EXPECT_DIVERGENCE), `${k.example} is tagged`);
    const r = runDifferential(l.case, { audit: kvm_mmu_audit });
    const sig = divergenceSignature(l.case, r);
    ok(sig !== null && k.pattern.test(sig), `${k.id}: ${sig}`);
    equal(knownDivergenceOf(sig!)?.id, k.id);
  }
  equal(knownDivergenceOf("observation:ia32e4:load:gpa-stale|mech=invlpg@walk|leaf=unsync"), null);
});
