/**
 * The exhaustive sweep (`src/sweep/`, `deno task sweep`): the enumeration is deterministic, has
 * the size worked out here by hand from its dimensions and pruning rules, and every case it
 * builds is a valid case with the combination's state in it; slices of every mode pass on the
 * unmodified SUT; an injected bug the permission space reaches is found; the command's exit
 * status, report and finding files.
 */
import { deepStrictEqual, equal, match, notStrictEqual, ok } from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { main as sweep } from "../../src/cli/sweep.ts";
import { encodeCase, parseCase } from "../../src/corpus/load_case.ts";
import { runDifferential } from "../../src/diff/differential.ts";
import { divergenceSignature } from "../../src/diff/explain.ts";
import { Case } from "../../src/model/case.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";
import { runSweep } from "../../src/sweep/run_sweep.ts";
import { sweepCase } from "../../src/sweep/sweep_case.ts";
import { type SweepCombination, sweepCombinations } from "../../src/sweep/sweep_combinations.ts";
import { SWEEP_MODES, sweepLayout, type SweepMode } from "../../src/sweep/sweep_layout.ts";
import { capture } from "../_helpers/capture.ts";

const SCRATCH = ".tmp/sweep_test";

// ---------------------------------------------------------------------------------------------
// The size of the space, worked out by hand from the dimensions (not from the loops).
// ---------------------------------------------------------------------------------------------

// Access sequences and controls (rule C1): WP doubles a sequence with a CPL0 write, SMEP one
// with a fetch, SMAP/AC triples one with a CPL0 read or write. Accesses by what they bring:
// r = read/0 (SMAP), w = write/0 (SMAP, WP), f = fetch/0 and fetch/3 (SMEP), n = read/3, write/3.
const ONCE = 3 /* r */ + 6 /* w */ + 2 * 2 /* f */ + 1 * 2; /* n */
const TWICE = 4 * 1 /* nn */ + 4 * 3 /* nr, rn */ + 4 * 6 /* nw, wn */ + 8 * 2 /* nf, fn */ +
  1 * 3 /* rr */ + 2 * 6 /* rw, wr */ + 4 * 6 /* rf, fr */ + 1 * 6 /* ww */ +
  4 * 12 /* wf, fw */ + 4 * 2; /* ff */
/** Control states summed over the sequences, and over those with a data access (rule K1). */
const CONTROLS = ONCE + TWICE;
const DATA_CONTROLS = CONTROLS - 2 * 2 /* f once */ - 4 * 2; /* ff */

/**
 * Entry pairs under one NXE value. `plainSmall`/`rsvdSmall`: extra bits of a PTE or a table
 * PDE that are not / are reserved, the address bit (MMIO) among the plain ones; `plainLarge`/
 * `rsvdLarge` for a 2-MiB PDE. Not-present stand-ins: 2 (rule E3); reserved entries: 2 flag
 * sets each (E5); a table PDE has no D (E4).
 */
function entryPairs(nxe: boolean, extras: {
  plainSmall: number;
  rsvdSmall: number;
  plainLarge: number;
  rsvdLarge: number;
}): number {
  const np = 2;
  const xdReserved = nxe ? 0 : 1; // with NXE=0 a set XD is one more reserved bit
  const leafFlags = nxe ? 32 : 16; // W U A D XD, XD only with NXE=1
  const tableFlags = nxe ? 16 : 8; // W U A XD
  // PTEs under a PDE with no extra bit: every flag set with no extra or a plain one, and the
  // reserved ones; under a PDE with the (ignored) extra bit: no PTE extra.
  const ptesAlone = np + leafFlags * (1 + extras.plainSmall) +
    2 * (extras.rsvdSmall + xdReserved);
  const ptesUnderExtra = np + leafFlags;
  // A table PDE: no extra (PTEs with extras), the address bit (page table in MMIO: no PTE), the
  // ignored bit (PTEs without extras); or reserved (no PTE).
  const tables = tableFlags * (ptesAlone + 1 + ptesUnderExtra * (extras.plainSmall - 1)) +
    2 * (extras.rsvdSmall + xdReserved);
  const large = leafFlags * (1 + extras.plainLarge) + 2 * (extras.rsvdLarge + xdReserved);
  return np + tables + large;
}

/** Entry pairs where the walk ends at a present user page with no extra bit (rule K1). */
function userLeaves(nxe: boolean): number {
  const table = nxe ? 8 : 4; // table PDE with U: W A XD
  const pte = nxe ? 16 : 8; // PTE with P U: W A D XD
  return table * pte + pte; // 4-KiB pages, 2-MiB pages (the same flags)
}

const IA32E = { plainSmall: 2, rsvdSmall: 2, plainLarge: 3, rsvdLarge: 4 }; // 45 52 | 46 51 (+12 | 13 20)
const PAE = { plainSmall: 2, rsvdSmall: 3, plainLarge: 3, rsvdLarge: 5 }; // 11 45 | 46 52 62 (+12 | 13 20)

const EXPECTED: Record<SweepMode, { entries: [number, number]; pke: number; total: number }> = {
  ia32e4: {
    entries: [entryPairs(true, IA32E), entryPairs(false, IA32E)],
    pke: (userLeaves(true) + userLeaves(false)) * DATA_CONTROLS * 4,
    total: 0,
  },
  ia32e5: {
    entries: [entryPairs(true, IA32E), entryPairs(false, IA32E)],
    pke: (userLeaves(true) + userLeaves(false)) * DATA_CONTROLS * 4,
    total: 0,
  },
  pae: { entries: [entryPairs(true, PAE), entryPairs(false, PAE)], pke: 0, total: 0 },
};
for (const e of Object.values(EXPECTED)) {
  e.total = (e.entries[0] + e.entries[1]) * CONTROLS + e.pke;
}

Deno.test("sweepCombinations() has the size derived from its dimensions, with unique names", () => {
  equal(CONTROLS, 172);
  // The figures README.md quotes.
  deepStrictEqual(EXPECTED.ia32e4.entries, [2334, 682]);
  equal(EXPECTED.ia32e4.total, 636_512);
  equal(EXPECTED.ia32e5.total, 636_512);
  deepStrictEqual(EXPECTED.pae.entries, [2370, 702]);
  equal(EXPECTED.pae.total, 528_384);
  for (const mode of SWEEP_MODES) {
    // Entry pairs by identity (cheap), then checked distinct by value.
    const pairs = [new Map<object, Set<object | null>>(), new Map<object, Set<object | null>>()];
    const names = new Set<string>();
    let total = 0, pke = 0;
    for (const k of sweepCombinations(mode)) {
      equal(k.index, total++);
      names.add(k.name);
      if (k.pke !== null) pke++;
      else {
        const byPde = pairs[k.nxe ? 0 : 1]!;
        if (!byPde.has(k.pde)) byPde.set(k.pde, new Set());
        byPde.get(k.pde)!.add(k.pte);
      }
    }
    const want = EXPECTED[mode];
    const sizes = pairs.map((m) => [...m.values()].reduce((n, s) => n + s.size, 0));
    deepStrictEqual(sizes, want.entries, `${mode} entry pairs`);
    for (const m of pairs) {
      const values = [...m].flatMap(([pde, ptes]) =>
        [...ptes].map((pte) =>
          `${(pde as { value: bigint }).value}/${(pte as { value: bigint } | null)?.value}`
        )
      );
      equal(new Set(values).size, values.length, `${mode}: two entry pairs with the same values`);
    }
    equal(pke, want.pke, `${mode} PKE=1 combinations`);
    equal(total, want.total, `${mode} combinations`);
    equal(names.size, total, `${mode}: two combinations with the same name`);
  }
});

Deno.test("sweepCombinations() is deterministic, with names that say every dimension", () => {
  const first = [...sweepCombinations("ia32e4")].map((k) => k.name);
  let i = 0;
  for (const k of sweepCombinations("ia32e4")) equal(k.name, first[i++]);
  equal(i, first.length);
  const pattern =
    /^ia32e4 pde=\S+ pte=\S+( (rsvd|addr|ign|pat)=(pde|pte):\d+)? access=(read|write|fetch) cpl=[03]( then=(read|write|fetch) cpl=[03])? wp=[01] nxe=[01] smep=[01] smap=(0|ac0|ac1) pke=(0|ad[01]wd[01])$/;
  for (const name of first.filter((_, i) => i % 101 === 0)) match(name, pattern);
  const names = new Set(first);
  // Rule E5: a reserved PTE has two flag sets; C1: no CPL0 write, so WP=1 and SMAP=1 AC=0.
  ok(names.has(
    "ia32e4 pde=P|W|U|A pte=P|W|U|A|D|XD rsvd=pte:51 access=write cpl=3 then=fetch cpl=0 wp=1 nxe=1 smep=0 smap=ac0 pke=0",
  ));
  ok(
    !names.has(
      "ia32e4 pde=P|W|U|A pte=P|U|A|D rsvd=pte:51 access=write cpl=3 then=fetch cpl=0 wp=1 nxe=1 smep=0 smap=ac0 pke=0",
    ),
  );
  ok(names.has(
    "ia32e4 pde=P|U|A pte=P|W|U|A|D access=write cpl=0 wp=1 nxe=0 smep=1 smap=ac1 pke=ad0wd1",
  ));
  // Rule E4: no D in a PDE that points at a page table; E2: no PTE under a 2-MiB PDE.
  ok(!first.some((n) => /pde=\S*\bD\b\S* pte=[^-]/.test(n)));
  ok(!first.some((n) => /pde=\S*PS pte=[^-]/.test(n)));
});

/** Reads the 64-bit word at `addr` of a case's memory. */
function word(c: Case, addr: bigint): bigint {
  const page = c.memory.find((p) => p.gfn === addr >> 12n);
  return page?.words[String(Number((addr & 0xfffn) >> 3n))] ?? 0n;
}

Deno.test("sweepCase() builds a valid case holding exactly the combination's state", () => {
  for (const mode of SWEEP_MODES) {
    const l = sweepLayout(mode);
    let n = 0;
    for (const k of sweepCombinations(mode)) {
      if (k.index % 397 !== 0) continue;
      n++;
      const c = sweepCase(k, { inject: ["invlpg_no_sync"] });
      deepStrictEqual(Case.parse(JSON.parse(encodeCase(c))), c, k.name);
      equal(c.control.cr0.pg, true);
      equal(c.control.cr4.pae, true);
      equal(c.control.efer.lme, mode !== "pae");
      equal(c.control.cr4.la57, mode === "ia32e5");
      equal(c.control.efer.nxe, k.nxe);
      equal(c.control.cr0.wp, k.wp);
      equal(c.control.cr4.smep, k.smep);
      equal(c.control.cr4.smap, k.smap !== "off");
      equal(c.control.rflagsAc, k.smap === "ac1");
      equal(c.control.cr4.pke, k.pke !== null);
      deepStrictEqual(c.sut.inject, ["invlpg_no_sync"]);
      equal(word(c, l.pdeAddr), k.pde.value);
      if (k.pte) equal(word(c, (k.pde.value & 0x3fff_ffff_f000n) | l.ptIndex << 3n), k.pte.value);
      for (const e of l.fixed) equal(word(c, e.addr), e.value);
      deepStrictEqual(
        c.program.map((op) => [op.op, "cpl" in op ? op.cpl : -1, "la" in op ? op.la : -1n]),
        k.accesses.map((a) => [
          { read: "load", write: "store", fetch: "fetch" }[a.kind],
          a.cpl,
          l.la,
        ]),
      );
      equal(c.meta.title, k.name);
    }
    ok(n > 1000, `${mode}: ${n} cases checked`);
  }
  // Each case stands alone: building one twice gives equal, separate objects.
  const k = sweepCombinations("ia32e4").next().value!;
  const a = sweepCase(k);
  const b = sweepCase(k);
  deepStrictEqual(a, b);
  notStrictEqual(a.memory, b.memory);
  notStrictEqual(a.program, b.program);
});

Deno.test("sweepLayout() places one canonical address, its tables and frames in one memslot", () => {
  for (const mode of SWEEP_MODES) {
    const l = sweepLayout(mode);
    const top = mode === "ia32e5" ? 56n : mode === "ia32e4" ? 47n : 31n;
    const width = mode === "pae" ? 32n : 64n;
    const high = l.la >> top;
    ok(high === 0n || high === (1n << (width - top)) - 1n, `${mode}: LA not canonical`);
    const slot = (pa: bigint) =>
      pa >> 12n >= l.slotBase && pa >> 12n < l.slotBase + BigInt(l.slotPages);
    for (
      const pa of [
        l.cr3,
        l.pdeAddr,
        l.ptBase,
        l.frame4k,
        l.frame2m,
        ...l.fixed.map((e) => e.addr),
      ]
    ) {
      ok(slot(pa), `${mode}: 0x${pa.toString(16)} outside the memslot`);
    }
    ok(!slot(l.frame4k | 1n << 45n), `${mode}: the address bit must lead to MMIO`);
    equal(l.frame2m & 0x1f_ffffn, 0n);
  }
});

// ---------------------------------------------------------------------------------------------
// Running it.
// ---------------------------------------------------------------------------------------------

Deno.test("runSweep() passes a slice of every mode on the unmodified SUT", () => {
  const slices = [
    { mode: "ia32e4", limit: 1500 },
    { mode: "ia32e4", stride: 331 },
    { mode: "ia32e5", stride: 499 },
    { mode: "pae", stride: 401 },
  ] as const;
  for (const s of slices) {
    const r = runSweep(s);
    const what = JSON.stringify(s);
    equal(r.combinations, r.planned, what);
    ok(r.combinations >= 1000, what);
    equal(r.pass + r.known + r.unsupported + r.divergences, r.combinations, what);
    deepStrictEqual(
      r.findings.map((f) => `${f.signature}: ${f.combination}`),
      [],
      `${what}: divergences on the unmodified SUT`,
    );
    ok(r.pass > r.combinations / 2, what);
    ok(r.combinationsPerSecond > 0);
  }
});

Deno.test("runSweep() counts PKE=1 and MMIO fetches as unsupported, not as findings", () => {
  // The first PKE=1 combination (after all PKE=0 ones), and the first fetch from a PTE whose
  // frame has address bit 45 (outside the memslot: MMIO, where KVM's emulator fails).
  let pke: SweepCombination | null = null;
  let mmio: SweepCombination | null = null;
  for (const k of sweepCombinations("ia32e4")) {
    if (!mmio && /^\S+ pde=P pte=P addr=pte:45 access=fetch cpl=0 wp/.test(k.name)) mmio = k;
    if (k.pke !== null) {
      pke = k;
      break;
    }
  }
  for (const [k, reason] of [[pke!, /PKE/], [mmio!, /fetch from MMIO/]] as const) {
    // Index 0 (a not-present PDE: a #PF on both sides) and the combination itself.
    const r = runSweep({ mode: "ia32e4", stride: k.index, limit: 2 });
    equal(r.combinations, 2);
    equal(r.pass, 1);
    equal(r.unsupported, 1, k.name);
    match(Object.keys(r.unsupportedReasons)[0]!, reason);
  }
});

Deno.test("runSweep() finds the injected bug wp0_spte_keeps_exec_under_smep, and stops there", () => {
  const bug = "wp0_spte_keeps_exec_under_smep";
  const r = runSweep({ mode: "ia32e4", inject: [bug], stopAtFirst: true });
  ok(r.stopped);
  equal(r.findings.length, 1);
  ok(r.firstFinding !== null && r.firstFinding.combinations === r.combinations);
  ok(r.combinations < 5000, `found only after ${r.combinations} combinations`);
  const f = r.findings[0]!;
  match(f.combination, /wp=0 .*smep=1/);
  // The finding is a replayable case: it diverges with its signature, and passes without the bug.
  const loaded = parseCase(f.caseText, "finding.json");
  if (!loaded.ok) throw loaded.error;
  const c = loaded.case;
  equal(c.meta.signature, f.signature);
  equal(c.meta.found.by, "sweep");
  const run = (x: Case) => runDifferential(x, { audit: kvm_mmu_audit });
  equal(divergenceSignature(c, run(c)), f.signature);
  c.sut.inject = [];
  equal(run(c).verdict.status, "pass");
});

Deno.test("runSweep() rejects an unknown bug and a bad stride", () => {
  let threw = false;
  try {
    runSweep({ mode: "pae", inject: ["no_such_bug"], limit: 1 });
  } catch (e: unknown) {
    threw = e instanceof RangeError;
  }
  ok(threw);
  threw = false;
  try {
    runSweep({ mode: "pae", stride: 0 });
  } catch (e: unknown) {
    threw = e instanceof RangeError;
  }
  ok(threw);
});

// ---------------------------------------------------------------------------------------------
// The command.
// ---------------------------------------------------------------------------------------------

Deno.test("sweep: --help exits 0, usage errors exit 2", () => {
  const help = capture(() => sweep(["--help"]));
  equal(help.status, 0);
  match(help.out, /usage: deno task sweep/);
  for (
    const args of [
      ["--mode", "legacy32"],
      ["--inject", "nope"],
      ["--limit", "0"],
      ["--limit", "x"],
      ["--bogus"],
      ["extra"],
    ]
  ) {
    const r = capture(() => sweep(args));
    equal(r.status, 2, args.join(" "));
    match(r.err, /^sweep: /);
  }
});

Deno.test("sweep: a clean slice exits 0 and writes the report; a bug exits 1 with a case file", () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  const clean = capture(() =>
    sweep([
      "--mode",
      "pae",
      "--mode",
      "ia32e5",
      "--limit",
      "300",
      "--json",
      `${SCRATCH}/clean.json`,
      "--out",
      `${SCRATCH}/findings`,
      "--quiet",
    ])
  );
  equal(clean.status, 0, clean.err);
  match(clean.out, /^sweep pae: 300 combinations \(of 300 planned, space 528384\): \d+ pass/m);
  match(clean.out, /^sweep ia32e5: 300 combinations .* combinations\/s$/m);
  const report = JSON.parse(readFileSync(`${SCRATCH}/clean.json`, "utf8"));
  equal(report.format, "shadow-mmu-sweep-report");
  equal(report.version, 1);
  deepStrictEqual(report.modes.map((m: { mode: string }) => m.mode), ["pae", "ia32e5"]);
  equal(report.modes[0].combinations, 300);
  deepStrictEqual(report.findings, []);
  equal(report.timing.modes.length, 2);

  const buggy = capture(() =>
    sweep([
      "--mode",
      "ia32e4",
      "--inject",
      "wp0_spte_keeps_exec_under_smep",
      "--stop-at-first",
      "--json",
      `${SCRATCH}/bug.json`,
      "--out",
      `${SCRATCH}/findings`,
      "--quiet",
    ])
  );
  equal(buggy.status, 1, buggy.err);
  match(buggy.out, /first finding after \d+ combination\(s\).*\(stopped there\)/);
  const files = readdirSync(`${SCRATCH}/findings`);
  equal(files.length, 1);
  match(files[0]!, /--sweep-ia32e4-inject-wp0_spte_keeps_exec_under_smep\.json$/);
  const bug = JSON.parse(readFileSync(`${SCRATCH}/bug.json`, "utf8"));
  equal(bug.findings.length, 1);
  equal(bug.findings[0].file, `${SCRATCH}/findings/${files[0]}`);
  const loaded = parseCase(readFileSync(`${SCRATCH}/findings/${files[0]}`, "utf8"), files[0]!);
  ok(loaded.ok);
  // Apart from timing, the report depends only on the plan.
  const again = capture(() =>
    sweep([
      "--mode",
      "ia32e4",
      "--inject",
      "wp0_spte_keeps_exec_under_smep",
      "--stop-at-first",
      "--json",
      `${SCRATCH}/bug2.json`,
      "--out",
      `${SCRATCH}/findings`,
      "--quiet",
    ])
  );
  equal(again.status, 1);
  const bug2 = JSON.parse(readFileSync(`${SCRATCH}/bug2.json`, "utf8"));
  deepStrictEqual({ ...bug2, timing: null }, { ...bug, timing: null });
});
