/**
 * The minimizer's contract, on real diverging cases (documented KVM divergences found by the
 * fuzzer and smoke programs with an injected bug): the result diverges with the same
 * signature, is never larger, is 1-minimal in ops, and minimizing it again changes nothing.
 */
import { deepStrictEqual, equal, notEqual, ok, throws } from "node:assert/strict";
import { encodeCase, loadCaseFile } from "../../src/corpus/load_case.ts";
import type { Case } from "../../src/model/case.ts";
import { budgetOf, ddmin } from "../../src/minimize/ddmin.ts";
import { caseSize, minimizeCase, signatureOf } from "../../src/minimize/minimize.ts";
import { runDifferential } from "../../src/diff/differential.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";

function load(path: string): Case {
  const l = loadCaseFile(path);
  if (!l.ok) throw l.error;
  return l.case;
}

function withBug(path: string, bug: string): Case {
  const c = load(path);
  c.sut.inject = [bug];
  return c;
}

const INPUTS: readonly { name: string; c: Case }[] = [
  {
    name: "KVM divergence as the fuzzer found it (25 ops)",
    c: load("tests/minimize/fixtures/pae-not-present-pf-unminimized.json"),
  },
  {
    name: "candidate KVM bug as the fuzzer found it (36 ops, 2 vCPUs, memslot add)",
    c: load("tests/minimize/fixtures/legacy32-sync-mmio-unminimized.json"),
  },
  {
    name: "injected invlpg_no_sync",
    c: withBug("corpus/ia32e4/invlpg-syncs-unsync-pte.json", "invlpg_no_sync"),
  },
  {
    name: "injected prefetch_ignores_accessed",
    c: withBug(
      "corpus/ia32e4/prefetch-skips-unaccessed-pte.json",
      "prefetch_ignores_accessed",
    ),
  },
];

for (const { name, c } of INPUTS) {
  Deno.test(`minimize: ${name}: same signature, not larger, 1-minimal, a fixed point`, () => {
    const sig = signatureOf(c);
    ok(sig !== "pass" && sig !== "unsupported", sig);
    const r = minimizeCase(c, { budgetMs: 60_000 });
    equal(r.exhausted, false);
    equal(r.signature, sig);
    equal(signatureOf(r.case), sig);
    const before = caseSize(c), after = caseSize(r.case);
    ok(after.ops <= before.ops && after.pages <= before.pages && after.words <= before.words);
    ok(after.ops < before.ops, `${before.ops} -> ${after.ops} ops`);
    for (let i = 0; i < r.case.program.length; i++) {
      const without = structuredClone(r.case);
      without.program.splice(i, 1);
      notEqual(signatureOf(without), sig, `op ${i} can be removed`);
    }
    const again = minimizeCase(r.case, { budgetMs: 60_000 });
    equal(encodeCase(again.case), encodeCase(r.case));
  });
}

Deno.test("minimize: deterministic (same case, same result)", () => {
  const c = INPUTS[0]!.c;
  equal(encodeCase(minimizeCase(c).case), encodeCase(minimizeCase(c).case));
});

Deno.test("minimize: a case that passes is refused", () => {
  throws(
    () => minimizeCase(load("corpus/ia32e4/invlpg-syncs-unsync-pte.json")),
    /does not diverge/,
  );
});

Deno.test("ddmin: finds the 1-minimal failing subset and respects its budget", () => {
  const items = Array.from({ length: 40 }, (_, i) => i);
  const fails = (xs: readonly number[]) => xs.includes(3) && xs.includes(17) && xs.includes(31);
  deepStrictEqual(ddmin(items, fails, budgetOf(10_000, 60_000)), [3, 17, 31]);
  let calls = 0;
  const b = budgetOf(5, 60_000);
  ddmin(items, (xs) => (calls++, fails(xs)), b);
  equal(calls, 5);
  ok(b.exhausted);
  deepStrictEqual(ddmin([7], () => true, budgetOf(10, 60_000)), []);
});

/** The entries of `c`'s schedule that are choices (not what the scheduler does without one). */
function choices(c: Case): number {
  const r = runDifferential(c, { audit: kvm_mmu_audit });
  return (r.scheduleEntries ?? []).filter((e) => e.thread !== e.dflt).length;
}

Deno.test("minimize: a race the fuzzer found keeps its few choices while its ops go", () => {
  // flush_after_mmu_unlock as the fuzzer found it: 28 ops, 2 vCPUs, a schedule of 89 entries
  // of which 7 are choices (preemptions).
  const c = load("tests/minimize/fixtures/flush-after-unlock-race-unminimized.json");
  const sig = signatureOf(c);
  equal(choices(c), 7);
  const r = minimizeCase(c, { budgetMs: 60_000 });
  equal(r.exhausted, false);
  equal(signatureOf(r.case), sig);
  // Positional entries would pin every later choice to whatever step it lands on once an op or
  // an earlier choice goes; anchored to their op and step, the choices that matter survive.
  ok(r.after.ops <= 6, `${r.before.ops} -> ${r.after.ops} ops`);
  ok(choices(r.case) <= 3, `${choices(r.case)} choices left`);
  ok(r.after.schedule < r.before.schedule);
  // The bug is what it shows: with it off, the minimized case passes.
  equal(signatureOf({ ...r.case, sut: { ...r.case.sut, inject: [] } }), "pass");
});
