/**
 * Divergence explanations and signatures on real diverging cases: the hand programs of
 * the corpus (tag `smoke`) tagged `bug:<name>` run with that bug injected (with and without the audit),
 * and the documented KVM divergences (`expect:divergence`); plus the signature's "what
 * differs" rules on doctored steps, and `deno task replay` showing the side-by-side block.
 *
 * @module
 */
import { deepStrictEqual, equal, match, notEqual, ok } from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { main as replay } from "../../src/cli/replay.ts";
import {
  type DiffResult,
  type DiffStep,
  type DivergenceKind,
  runDifferential,
} from "../../src/diff/differential.ts";
import {
  type DivergenceExplanation,
  divergenceSignature,
  explainDivergence,
  explanationText,
} from "../../src/diff/explain.ts";
import { EXPECT_DIVERGENCE, replayCase } from "../../src/diff/replay.ts";
import type { Case } from "../../src/model/case.ts";
import type { SutStep } from "../../src/shadow/machine.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";
import { capture } from "../_helpers/capture.ts";
import { corpusCases } from "../_helpers/corpus_cases.ts";

/** The smoke programs aimed at an injected bug, with that bug switched on. */
const BUGS = corpusCases("smoke").flatMap(({ name, c }) =>
  c.meta.tags.filter((t) => t.startsWith("bug:")).map((t) => ({
    bug: t.slice(4),
    name,
    c: { ...c, sut: { ...c.sut, inject: [t.slice(4)] } },
  }))
);

/** The documented KVM divergences (the SUT is faithful to KVM there). */
const KVM = corpusCases()
  .filter(({ c }) => c.meta.tags.includes(EXPECT_DIVERGENCE));

function explain(c: Case, audit: boolean): DivergenceExplanation {
  const e = explainDivergence(c, runDifferential(c, audit ? { audit: kvm_mmu_audit } : {}));
  ok(e, "the case must diverge");
  return e;
}

/** What the signature rule gives for each bug's program, without the audit (module doc). */
const EXPECTED_BUG_SIGNATURES: Record<string, string> = {
  prefetch_ignores_accessed: "memory:ia32e4:load:-A@PT|mech=prefetched_sptes@walk|leaf=synced",
  invlpg_no_sync: "observation:ia32e4:load:gpa-stale|mech=invlpg@walk|leaf=unsync",
  cr3_flush_skips_sync: "observation:ia32e4:load:gpa-stale|mech=sp_unsync@walk|leaf=unsync",
  wp0_spte_keeps_exec_under_smep:
    "observation:ia32e4:fetch:ok-vs-pf:rights-smep@PT|mech=none@tlb|leaf=synced",
  unsync_no_write_protect_on_sync: "observation:ia32e4:load:gpa-stale|mech=invlpg@walk|leaf=synced",
};

const EXPECTED_KVM_SIGNATURES: Record<string, string> = {
  "ia32e5/two-vcpus-emulated-pde-write-before-zap.json":
    "observation:ia32e5:fetch:ok-vs-pf:not-present@PT|mech=prefetched_sptes@walk|leaf=synced|racing=emulated-store",
  "ia32e4/nxe-clear-xd-becomes-reserved.json":
    "observation:ia32e4:load:ok-vs-pf:reserved-xd@PT|mech=sp_reused@walk|leaf=synced",
  "legacy32/smap-wp0-kernel-spte-outlives-pte.json":
    "observation:legacy32:store:ok-vs-pf:rights-smap@PT|mech=pf_mmio_spte_created@tlb|leaf=unsync",
  "ia32e4/smap-wp0-ac-write-then-read.json":
    "observation:ia32e4:load:ok-vs-pf:rights-smap@PT|mech=none@tlb|leaf=synced",
  "legacy32/pse36-4mib-page.json":
    "observation:legacy32:load:gpa-stale|mech=sp_reused@walk|leaf=synced",
  "legacy32/nxe-fetch-fault-id-bit.json":
    "observation:legacy32:fetch:ec:+I|mech=walk_addr_generic@exit",
  "ia32e4/mmio-cache-write-dirties-new-pte.json":
    "memory:ia32e4:store:+A+D@PT|mech=sp_unsync,mmio_cache_hits@emulate|leaf=unsync",
  "ia32e4/mmio-cache-store-skips-not-present-pte.json":
    "observation:ia32e4:store:ok-vs-pf:not-present@PT|mech=prefetched_sptes,mmio_cache_hits@emulate|leaf=mmio-unsync",
  "ia32e4/mmio-store-wp0-no-dirty.json":
    "memory:ia32e4:store:-D@PT|mech=mmio_cache_hits@emulate|leaf=mmio",
  "legacy32/mmio-spte-overwrite-writes-page-directory.json":
    "invariant:legacy32:store:I-6a,I-9|mech=mmio_spte_replaced@exit",
  "legacy32/mmio-spte-overwrite-skips-write-protect.json":
    "invariant:legacy32:store:I-6a|mech=mmio_spte_replaced@exit",
  "legacy32/two-vcpus-cr4-pse-differ.json":
    "observation:legacy32:load:ok-vs-pf:not-present-ps-ignored@PT|mech=emulated_writes@walk|leaf=synced|modes=mixed",
  "legacy32/sync-refreshes-stale-mmio-spte-store.json":
    "memory:legacy32:store:data|mech=pf_mmio_spte_created,mmio_cache_hits@emulate|leaf=mmio-ram",
  "legacy32/sync-refreshes-stale-mmio-spte.json":
    "observation:legacy32:load:value|mech=pf_mmio_spte_created,mmio_cache_hits@emulate|leaf=mmio-ram",
  "pae/two-vcpus-nxe-differ-prefetched-xd-spte.json":
    "observation:pae:load:ok-vs-pf:not-present@PT|mech=prefetched_sptes@walk|leaf=unsync|modes=mixed",
  "legacy32/two-vcpus-not-present-pf-during-sync.json":
    "observation:legacy32:load:ok-vs-pf:not-present@PT|mech=none@walk|leaf=syncing|after=pf-not-present",
  "pae/smap-wp0-kernel-spte-stale-unsync-translation.json":
    "observation:pae:load:ok-vs-pf:rights-smap@PT|mech=prefetched_sptes,sp_reused@walk|leaf=unsync",
  "ia32e4/not-present-pf-then-pcid-round-trip-keeps-spte.json":
    "observation:ia32e4:load:ok-vs-pf:not-present@PT|mech=pf_mmio_spte_created@walk|leaf=unsync|after=pf-not-present",
  "legacy32/two-vcpus-cr4-pse-differ-direct-sp.json":
    "observation:legacy32:load:gpa|mech=prefetched_sptes@exit|leaf=direct|modes=mixed",
  "pae/not-present-pf-keeps-unsync-spte.json":
    "observation:pae:load:ok-vs-pf:not-present@PT|mech=none@walk|leaf=unsync|after=pf-not-present",
  "pae/stale-mmio-spte-store-no-dirty.json":
    "memory:pae:store:-D@PT|mech=pf_mmio_spte_created,mmio_cache_hits@emulate|leaf=mmio-ram",
  "legacy32/not-present-pf-keeps-unsync-mmio-spte.json":
    "observation:legacy32:load:ok-vs-pf:not-present@PT|mech=sp_unsync,mmio_cache_hits@emulate|leaf=mmio-unsync|after=pf-not-present",
  "pae/rsvd-pf-keeps-unsync-spte.json":
    "observation:pae:load:ok-vs-pf:reserved@PT|mech=none@walk|leaf=unsync|after=pf-rsvd",
  "legacy32/not-present-pf-keeps-spte-skips-accessed.json":
    "memory:legacy32:load:-A@PT|mech=dirty_log_harvests@walk|leaf=unsync|after=pf-not-present",
  "legacy32/not-present-pf-keeps-prefetched-spte.json":
    "observation:legacy32:load:gpa|mech=pf_retry@walk|leaf=unsync|after=pf-not-present",
  "legacy32/prefetch-over-mmio-spte-skips-write-protect.json":
    "invariant:legacy32:load:I-6b|mech=mmio_spte_replaced@exit",
};

/** No address, value or other number beyond a mode name's or an invariant tag's digits. */
function assertNoNumbers(sig: string): void {
  ok(!/0x/i.test(sig), sig);
  ok(!/\d{3,}/.test(sig), sig);
  ok(!/[0-9a-f]{5,}/i.test(sig.replace(/[a-z_]+/g, "")), sig);
}

Deno.test("explain: the five injected bugs and the documented KVM divergences are all covered", () => {
  deepStrictEqual(BUGS.map((b) => b.bug).sort(), Object.keys(EXPECTED_BUG_SIGNATURES).sort());
  deepStrictEqual(KVM.map((k) => k.name).sort(), Object.keys(EXPECTED_KVM_SIGNATURES).sort());
});

Deno.test("explain: signatures have no numbers, are stable across runs, and tell the bugs apart", () => {
  for (const audit of [false, true]) {
    const sigs = new Map<string, string>();
    for (const { bug, c } of BUGS) {
      const a = explain(c, audit).signature;
      const b = explain(c, audit).signature;
      equal(a, b, `${bug}: the signature is not stable`);
      equal(divergenceSignature(c, runDifferential(c, audit ? { audit: kvm_mmu_audit } : {})), a);
      assertNoNumbers(a);
      match(a, /^(observation|memory|invariant|sut-failure):ia32e4:[a-zA-Z0-9]+:[^|]+\|mech=/);
      if (!audit) equal(a, EXPECTED_BUG_SIGNATURES[bug], bug);
      sigs.set(bug, a);
    }
    equal(new Set(sigs.values()).size, BUGS.length, [...sigs.values()].join("\n"));
  }
  for (const { name, c } of KVM) {
    // Some documented divergences are caught by the audit before the guest can see them.
    const visible = runDifferential(c).verdict.status === "divergence";
    for (const audit of [false, true]) {
      if (!audit && !visible) continue;
      const s = explain(c, audit).signature;
      assertNoNumbers(s);
      equal(s, explain(c, audit).signature);
      if (audit === !visible) equal(s, EXPECTED_KVM_SIGNATURES[name], name);
    }
  }
});

Deno.test("explain: with the audit, an invariant divergence names the invariant and its SPTEs", () => {
  const prefetch = BUGS.find((b) => b.bug === "prefetch_ignores_accessed")!;
  const e = explain(prefetch.c, true);
  equal(e.kind, "invariant");
  match(e.signature, /^invariant:ia32e4:load:I-8\|mech=prefetched_sptes@exit$/);
  ok(e.flagged.length > 0);
  match(e.flagged[0]!.decoded, /^\[1\] leaf 4K P U pfn=0x[0-9a-f]+ gfn=0x21/);
  match(e.flagged[0]!.sp, /^sp#\d+ gfn=0x4 L1 q0 indirect acc=uwx/);
  const unsync = BUGS.find((b) => b.bug === "unsync_no_write_protect_on_sync")!;
  // The MOV CR3's exit syncs at the VM entry that follows it, so the audit flags that step.
  match(
    explain(unsync.c, true).signature,
    /^invariant:ia32e4:movCr3:I-6b\|mech=sync_spte_dropped@/,
  );
  // A divergence on a non-access op has no walks but still names the flagged SPTE.
  const nxe = KVM.find((k) => k.name.startsWith("ia32e4/nxe"))!;
  const n = explain(nxe.c, true);
  equal(n.signature, "invariant:ia32e4:writeEfer:I-8m|mech=sp_reused@none");
  deepStrictEqual([n.oracleWalk, n.spteWalk], [[], []]);
  match(n.flagged[0]!.decoded, /leaf 4K .*NX/);
});

Deno.test("explain: both walks, level by level, for the mode; the SUT walk names the leaf", () => {
  for (const { bug, c } of BUGS) {
    const e = explain(c, false);
    equal(e.mode, "ia32e4");
    deepStrictEqual(e.oracleWalk.map((w) => w.level), ["PML4", "PDPT", "PD", "PT"], bug);
    deepStrictEqual(e.spteWalk.map((w) => w.level), [4, 3, 2, 1], bug);
    for (const w of e.spteWalk.slice(0, 3)) match(w.decoded, /^table P W U A -> sp#\d+$/, bug);
    match(e.spteWalk[3]!.decoded, /^leaf 4K P .*pfn=0x[0-9a-f]+ gfn=0x[0-9a-f]+ shadows gfn=/, bug);
    match(e.spteWalk[3]!.sp, /^sp#\d+ gfn=0x4 L1 q0 indirect acc=uwx/, bug);
    match(e.root, /^sp#\d+ gfn=0x1 L4 q0 indirect/);
    ok(e.mechanisms.at(-1)!.includes("(diverging step)"));
    ok(e.events.length > 0 && e.events.length <= 30);
    ok(e.events.every((l) => /^#\d+ (vm|cpu\d+) /.test(l)));
  }
  const unsync = explain(BUGS.find((b) => b.bug === "invlpg_no_sync")!.c, false);
  match(unsync.spteWalk[3]!.sp, / unsync$/);
  match(unsync.oracleWalk[3]!.decoded, /^P W U A D -> 0x11000$/);
  match(unsync.spteWalk[3]!.decoded, /gfn=0x10 /); // the stale SPTE
  match(unsync.tlb, /^pcid 0: pfn=0x[0-9a-f]+ gfn=0x10 U X$/);
  // 32-bit paging under PAE-format shadow tables: the pae_root entry, then a 2 MiB leaf for half
  // of the 4 MiB page the SUT kept after CR4.PSE was cleared.
  const pse = explain(KVM.find((k) => k.name.startsWith("legacy32/pse36"))!.c, false);
  equal(pse.mode, "legacy32");
  deepStrictEqual(pse.oracleWalk.map((w) => w.level), ["PD", "PT"]);
  deepStrictEqual(pse.spteWalk.map((w) => w.level), [3, 2]);
  match(pse.spteWalk[0]!.decoded, /^pae_root entry -> sp#\d+$/);
  equal(pse.spteWalk[0]!.sp, "pae_root");
  match(pse.spteWalk[1]!.decoded, /^leaf 2M /);
  match(pse.spteWalk[1]!.sp, / 4-byte$/);
});

Deno.test("explain: other paging modes give their number of shadow levels", () => {
  const smoke = new Map(corpusCases("smoke").map(({ name, c }) => [name, c]));
  const cases: [string, string, number[]][] = [
    ["legacy32/pte-edit-unsync-invlpg.json", "legacy32", [3, 2, 1]],
    ["pae/pte-edit-cr3-sync-roots.json", "pae", [3, 2, 1]],
    ["ia32e5/pte-edit-invlpg.json", "ia32e5", [5, 4, 3, 2, 1]],
  ];
  for (const [name, mode, levels] of cases) {
    const base = smoke.get(name)!;
    const bug = name.includes("cr3") ? "cr3_flush_skips_sync" : "invlpg_no_sync";
    const e = explain({ ...base, sut: { ...base.sut, inject: [bug] } }, false);
    equal(e.mode, mode, name);
    deepStrictEqual(e.spteWalk.map((w) => w.level), levels, name);
    match(e.spteWalk.at(-1)!.decoded, /^leaf 4K /, name);
    match(e.signature, new RegExp(`^observation:${mode}:load:gpa-stale\\|mech=`), name);
    equal(e.oracleWalk.length, mode === "legacy32" ? 2 : mode === "pae" ? 3 : 5, name);
  }
});

Deno.test("explain: the text block puts the oracle and the SUT side by side, levels aligned", () => {
  const e = explain(BUGS.find((b) => b.bug === "invlpg_no_sync")!.c, false);
  const text = explanationText(e);
  equal(text[0], `divergence ${e.signature}`);
  equal(text[1], "step 6 (observation, ia32e4): load la=0x40010000 cpl0 cpu0");
  match(text[2]!, /^oracle +\| SUT$/);
  match(text[3]!, /^allowed: ok gpa=0x11000 value=0xda7a00000011 +\| got: +ok gpa=0x10000 /);
  const bar = text[2]!.indexOf("|");
  ok(text.slice(2).filter((l) => l.includes(" | ")).every((l) => l.indexOf(" | ") === bar - 1));
  const pt = text.findIndex((l) => /^ {2}PT +@0x4080 = 0x11067 \(memory\)/.test(l));
  ok(pt > 0, text.join("\n"));
  match(text[pt]!, / \| {3}L1 @0x[0-9a-f]+ = 0x[0-9a-f]{16} leaf 4K /);
  match(text[pt + 1]!, /P W U A D -> 0x11000 +\| +in sp#\d+ gfn=0x4 L1 .* unsync$/);
  ok(text.some((l) => /^ {2}#5 invlpg la=0x40010000 cpu0: invlpg=1$/.test(l)));
  ok(text.some((l) => /^ {2}#3 vm unsync sp#3 /.test(l)));
});

/** The last step of a real run, doctored: the SUT did `sut` instead (a `kind` divergence). */
function doctor(
  r: DiffResult,
  index: number,
  sut: SutStep,
  kind: DivergenceKind,
  extra: { expected?: string[]; got?: string; detail?: string } = {},
): DiffResult {
  const s: DiffStep = { ...r.steps[index]!, sut, committed: null };
  return {
    verdict: {
      status: "divergence",
      divergence: {
        step: s.choices.step,
        kind,
        expected: extra.expected ?? [],
        got: extra.got ?? "",
        detail: extra.detail ?? "",
      },
    },
    steps: [...r.steps.slice(0, index), s],
    sut: r.sut,
    schedule: r.schedule,
    scheduleEntries: r.scheduleEntries,
  };
}

Deno.test("explain: what differs, for each kind of result", () => {
  const smap = KVM.find((k) => k.name.startsWith("ia32e4/smap-wp0"))!.c;
  const rs = runDifferential(smap); // step 5: the oracle allows only #PF ec=0x1
  const i = rs.steps.length - 1;
  const pf = (errorCode: number, cr2 = 0x4001_2000n): SutStep => ({
    kind: "observation",
    observation: { kind: "pf", errorCode, cr2 },
  });
  const sig = (r: DiffResult) => divergenceSignature(smap, r)!.split("|")[0];
  equal(sig(doctor(rs, i, pf(0x3), "observation")), "observation:ia32e4:load:ec:+W");
  equal(sig(doctor(rs, i, pf(0x8), "observation")), "observation:ia32e4:load:ec:+RSVD-P");
  equal(sig(doctor(rs, i, pf(0x1, 0x5000n), "observation")), "observation:ia32e4:load:cr2");
  const gp: SutStep = { kind: "observation", observation: { kind: "gp" } };
  equal(sig(doctor(rs, i, gp, "observation")), "observation:ia32e4:load:gp-vs-pf");
  // Step 1 of the same case: the oracle allows only ok gpa=0x12000.
  equal(sig(doctor(rs, 0, pf(0x0), "observation")), "observation:ia32e4:load:pf-vs-ok:not-present");
  equal(sig(doctor(rs, 0, pf(0x9), "observation")), "observation:ia32e4:load:pf-vs-ok:reserved");
  const value: SutStep = {
    kind: "observation",
    observation: { kind: "ok", gpa: 0x12000n, value: 0x5n },
  };
  equal(sig(doctor(rs, 0, value, "observation")), "observation:ia32e4:load:value");
  const elsewhere: SutStep = {
    kind: "observation",
    observation: { kind: "ok", gpa: 0x13000n, value: 0x5n },
  };
  equal(sig(doctor(rs, 0, elsewhere, "observation")), "observation:ia32e4:load:gpa");
  const thrown: SutStep = {
    kind: "failure",
    reason: "exception",
    detail: "sptep 0x10a008 is not in a shadow page (L2)\n    at sptep_to_sp (mmu.ts:43:9)",
  };
  equal(
    sig(doctor(rs, i, thrown, "sut-failure")),
    "sut-failure:ia32e4:load:exception:sptep-n-is-not-in-a-shadow-page-ln",
  );
  const livelock: SutStep = { kind: "failure", reason: "livelock", detail: "read of 0x1 …" };
  equal(
    divergenceSignature(smap, doctor(rs, i, livelock, "sut-failure")),
    "sut-failure:ia32e4:load:livelock|mech=none@tlb",
  );
  // A data word nobody walked, then both halves of a 32-bit paging entry word.
  const data = doctor(rs, i, { kind: "observation", observation: { kind: "done" } }, "memory", {
    expected: ["0x0"],
    got: "0x1",
    detail: "load 0x40012000: guest memory at 0x12000 differs",
  });
  equal(sig(data), "memory:ia32e4:load:data");
  const pse = KVM.find((k) => k.name.startsWith("legacy32/pse36"))!.c;
  const rp = runDifferential(pse);
  // Step 1 walked PD entry 1 at 0x1004 (the high half of the word at 0x1000).
  const pd = doctor(rp, 0, { kind: "observation", observation: { kind: "done" } }, "memory", {
    expected: ["0x4020e700000000"],
    got: "0x4020a700000001",
    detail: "load 0x401008: guest memory at 0x1000 differs",
  });
  equal(divergenceSignature(pse, pd)!.split("|")[0], "memory:legacy32:load:data,-D@PD");
  // Not a divergence: no explanation.
  const pass = corpusCases("smoke")[0]!.c;
  const r = runDifferential(pass);
  equal(r.verdict.status, "pass");
  equal(explainDivergence(pass, r), null);
  equal(divergenceSignature(pass, r), null);
});

Deno.test("explain: a dirty log missing a page", () => {
  const { c } = corpusCases("smoke").find((s) => s.name === "ia32e4/dirty-log-data-slot.json")!;
  const r = runDifferential(c);
  const i = r.steps.findIndex((s) =>
    s.choices.op.op === "dirtyLogGetAndClear" &&
    s.choices.outcomes.some((o) => o.observation.kind === "dirtyLog" && o.observation.gfns.length)
  );
  ok(i >= 0);
  const slot = (r.steps[i]!.choices.op as { slot: number }).slot;
  const empty: SutStep = { kind: "observation", observation: { kind: "dirtyLog", slot, gfns: [] } };
  match(
    divergenceSignature(c, doctor(r, i, empty, "observation"))!,
    /^observation:ia32e4:dirtyLogGetAndClear:dirtylog-missing\|mech=[a-z_,]+@none$/,
  );
});

Deno.test("explain: replayCase adds the explanation to a diverging case's JSON report", () => {
  const { c } = BUGS.find((b) => b.bug === "invlpg_no_sync")!;
  const rep = replayCase(c);
  equal(rep.verdict.status, "divergence");
  equal(rep.divergence?.signature, EXPECTED_BUG_SIGNATURES.invlpg_no_sync);
  equal(rep.divergence?.step, 6);
  // Plain JSON: it survives a round trip unchanged.
  deepStrictEqual(JSON.parse(JSON.stringify(rep.divergence)), rep.divergence);
  equal(replayCase(corpusCases("smoke")[0]!.c).divergence, undefined);
});

Deno.test("replay: an injected-bug case shows the side-by-side block after the verdict", () => {
  const scratch = ".tmp/explain_test";
  mkdirSync(scratch, { recursive: true });
  const json = JSON.parse(
    Deno.readTextFileSync("corpus/ia32e4/invlpg-syncs-unsync-pte.json"),
  );
  json.sut = { ...json.sut, inject: ["invlpg_no_sync"] };
  writeFileSync(`${scratch}/invlpg-no-sync.json`, JSON.stringify(json));
  const r = capture(() => replay([`${scratch}/invlpg-no-sync.json`]));
  equal(r.status, 0, r.err); // injected bugs are expected to diverge
  match(
    r.out,
    /verdict: DIVERGENCE at step 6 \(observation\)[^\n]*\n {4}SUT: [^\n]*\n {4}allowed: [^\n]*\n {4}divergence observation:ia32e4:load:gpa-stale\|mech=invlpg@walk\|leaf=unsync\n {4}step 6 /,
  );
  match(r.out, /\n {4}oracle +\| SUT\n/);
  match(
    r.out,
    /\n {6}PT +@0x4080 = 0x11067 \(memory\) +\| {3}L1 @0x[0-9a-f]+ = 0x[0-9a-f]+ leaf 4K /,
  );
  match(r.out, /in sp#3 gfn=0x4 L1 q0 indirect acc=uwx unsync/);
  const j = capture(() => replay([`${scratch}/invlpg-no-sync.json`, "--json"]));
  const doc = JSON.parse(j.out);
  equal(doc.cases[0].replay.divergence.signature, EXPECTED_BUG_SIGNATURES.invlpg_no_sync);
  equal(doc.cases[0].replay.divergence.spteWalk.length, 4);
  notEqual(doc.cases[0].replay.divergence.oracleWalk.length, 0);
  // A passing case has no block.
  const p = capture(() => replay(["corpus/ia32e4/invlpg-syncs-unsync-pte.json"]));
  equal(p.status, 0, p.err);
  ok(!/\n {4}divergence /.test(p.out));
});

Deno.test("replay: a race reproducer names the choices of its schedule, the rest is 'go on'", () => {
  const r = capture(() => replay(["corpus/disabled/bug-split-spte-set-low-first.json"]));
  equal(r.status, 0, r.err);
  match(
    r.out,
    /\n {2}schedule: 15 entries, 1 choice [^\n]*:\n {4}entry 14: cpu0 starts \$\.program\[3\] \(store la=0x1000 cpl0 value=0x0\) on top of \$\.program\[2\] \(store la=0x1000 cpl0 value=0x0\) at __set_spte:high\n {2}verdict: DIVERGENCE/,
  );
  const doc = JSON.parse(
    capture(() => replay(["corpus/disabled/bug-split-spte-set-low-first.json", "--json"])).out,
  );
  const s = doc.cases[0].replay.schedule;
  equal(s.entries, 15);
  deepStrictEqual(s.choices.map((c: { entry: number }) => c.entry), [14]);
  // A sequential case has no schedule.
  const q = JSON.parse(
    capture(() => replay(["corpus/ia32e4/invlpg-syncs-unsync-pte.json", "--json"])).out,
  );
  equal(q.cases[0].replay.schedule, undefined);
});
