/**
 * The corner cases of `x86-paging-spec.md` §7, rows 1–76 (every non-EPT row), one named test per
 * row, each asserting the spec's outcome: the fault or translation, the error code, the A/D state
 * and, where the spec allows a set of outcomes, exactly that set.
 *
 * Unless a row says otherwise the setup is the spec's: 4-level paging, MAXPHYADDR 46, CPL 0,
 * EFER.NXE=1, CR0.WP=1, no SMEP/SMAP/PKE, every entry present, writable and user with A=D=0
 * (`tables4`: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000, frame 0x5000 for `LA4`).
 *
 * Most rows run through the reference machine, which gives the allowed set of a step. Rows about
 * things a case program cannot express (a stack access, an implicit supervisor access, an
 * unaligned access, PKS) drive the walker directly.
 *
 * @module
 */
import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { InitialStateError, walkContextOf } from "../../oracles/control_state.ts";
import { type MachineOptions, ReferenceMachine } from "../../oracles/machine.ts";
import {
  type Access,
  splitAccess,
  walk,
  type WalkContext,
  type WalkResult,
} from "../../oracles/walk.ts";
import { hex } from "../../src/model/hex.ts";
import {
  ADDR4,
  buildCase,
  type CaseSpec,
  decodeOp,
  LA4,
  type Mem,
  op,
  tables4,
} from "../_helpers/case_builder.ts";
import {
  allowed,
  allowedNext,
  PDE_VIA,
  PTE_VIA,
  run,
  selfMappedMachine,
} from "../_helpers/oracle_machine.ts";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const P = 1n, RW = 2n, US = 4n, A = 0x20n, D = 0x40n, PS = 0x80n, G = 0x100n;
const XD = 1n << 63n;
const key = (k: number): bigint => BigInt(k) << 59n;
/** PKRU with AD (bit 2k) and/or WD (bit 2k+1) set for key k. */
const pkru = (k: number, bits: { ad?: boolean; wd?: boolean }): number =>
  ((bits.ad ? 1 : 0) | (bits.wd ? 2 : 0)) << (2 * k);

/** The text of a #PF observation. */
const pf = (ec: number, la: bigint = LA4): string => `#PF ec=0x${ec.toString(16)} cr2=${hex(la)}`;
/** The text of a successful load (or fetch) and of a successful store. */
const loaded = (gpa: bigint, value = 0n): string => `ok gpa=${hex(gpa)} value=${hex(value)}`;
const stored = (gpa: bigint): string => `ok gpa=${hex(gpa)}`;

/** A 4-level spec with the standard tables, `extra` XORed into each level's flags. */
function std(
  extra: Parameters<typeof tables4>[0] = {},
  rest: Partial<CaseSpec> = {},
): CaseSpec {
  return { mode: "ia32e4", ...rest, memory: [...tables4(extra), ...(rest.memory ?? [])] };
}

function machineOf(spec: CaseSpec, options: MachineOptions = {}): ReferenceMachine {
  return new ReferenceMachine(buildCase(spec), options);
}

/** The allowed set of `o` as the first step of a fresh machine. */
function fresh(spec: CaseSpec, o: unknown): string[] {
  return allowedNext(machineOf(spec), o);
}

/** Runs `o` as the first step of a fresh machine, asserting it has exactly `want`; returns it. */
function only(spec: CaseSpec, o: unknown, want: string): ReferenceMachine {
  const m = machineOf(spec);
  const choices = m.allowed(decodeOp(o));
  deepStrictEqual(allowed(choices), [want]);
  m.commit(choices, 0);
  return m;
}

/** The word at `addr` has exactly the A and D bits given. */
function adState(m: ReferenceMachine, addr: bigint, want: { a: boolean; d: boolean }): void {
  const w = m.memory.readWord(addr);
  deepStrictEqual(
    { a: (w & A) !== 0n, d: (w & D) !== 0n },
    want,
    `A/D of the entry at ${hex(addr)} (0x${w.toString(16)})`,
  );
}

/** Walks one access directly (for accesses a case program cannot express). */
function walkIn(
  spec: CaseSpec,
  access: Partial<Access> & { la: bigint },
  tweak: (ctx: WalkContext) => WalkContext = (ctx) => ctx,
): WalkResult {
  const m = machineOf(spec);
  const ctx = tweak(walkContextOf(m.cpu, m.control(0)));
  const a: Access = { kind: "read", cpl: 0, implicitSupervisor: false, size: 8, ...access };
  return walk(ctx, a, (addr, bytes) => m.memory.read(addr, bytes));
}

/** A walk result that is a #PF with exactly this error code (no alternatives). */
function assertPf(r: WalkResult, ec: number): void {
  equal(r.kind, "pf", `expected #PF, got ${r.kind}`);
  if (r.kind !== "pf") return;
  equal(r.errorCode, ec);
  deepStrictEqual(r.alternatives, []);
}

/** PAE layout for LA_PAE = 0x0020_1008: PDPTE0 -> PD 0x2000, PD[1] -> PT 0x3000, PT[1] -> 0x5000. */
const LA_PAE = 0x0020_1008n;
const paeTables = (): Mem => [[0x1000n, 0x2001n], [0x2008n, 0x3007n], [0x3008n, 0x5007n]];

/** Legacy 32-bit layout for LA_32 = 0x0040_1008: PD[1] (0x1004) -> PT 0x2000, PT[1] -> 0x5000. */
const LA_32 = 0x0040_1008n;
const legacyTables = (pde = 0x2007n, pte = 0x5007n): Mem => [
  [0x1004n, pde, 4],
  [0x2004n, pte, 4],
];

/** The second page table T2 at 0xe000, whose entry for LA4 maps frame 0x6000. */
const T2 = 0xe000n;

// ---------------------------------------------------------------------------------------------
// §1.0 Canonical addresses (rows 1–6)
// ---------------------------------------------------------------------------------------------

const NONCANONICAL_48 = 0x0000_8000_0000_0000n;

Deno.test("§7 row 1: a non-canonical read is #GP(0), with no A bits and no CR2", () => {
  const m = machineOf(std());
  const choices = m.allowed(decodeOp(op.load(NONCANONICAL_48)));
  deepStrictEqual(allowed(choices), ["#GP(0)"]);
  deepStrictEqual(choices.outcomes[0]!.writes, []);
  m.commit(choices, 0);
  for (const addr of Object.values(ADDR4)) adState(m, addr, { a: false, d: false });
});

Deno.test("§7 row 2: a non-canonical stack reference is #SS(0)", () => {
  const r = walkIn(std(), { la: NONCANONICAL_48, kind: "write", viaSS: true });
  equal(r.kind, "ss");
});

Deno.test("§7 row 3: with LA57 the same address is canonical and walks PML5[0] -> PML4[256]", () => {
  const memory: Mem = [
    [0x1000n, 0x2007n], // PML5[0]
    [0x2800n, 0x3007n], // PML4[256]
    [0x3000n, 0x4007n], // PDPT[0]
    [0x4000n, 0x5007n], // PD[0]
    [0x5000n, 0x6007n], // PT[0]
  ];
  const m = only({ mode: "ia32e5", memory }, op.load(NONCANONICAL_48), loaded(0x6000n));
  for (const [addr] of memory) adState(m, addr, { a: true, d: false });
});

Deno.test("§7 row 4: with LA57, bit 56 set above zeros is #GP(0)", () => {
  deepStrictEqual(fresh({ mode: "ia32e5" }, op.load(0x0100_0000_0000_0000n)), ["#GP(0)"]);
});

Deno.test("§7 row 5: INVLPG of a non-canonical address is a no-op, not a fault", () => {
  const m = machineOf(std());
  const choices = m.allowed(decodeOp(op.invlpg(NONCANONICAL_48)));
  deepStrictEqual(allowed(choices), ["done"]);
  deepStrictEqual(choices.outcomes[0]!.invalidations, []);
});

Deno.test("§7 row 6: an 8-byte read at 0x7FFF_FFFF_FFFC leaves canonical space: #GP(0)", () => {
  equal(walkIn(std(), { la: 0x0000_7fff_ffff_fffcn, size: 8 }).kind, "gp");
  // The same read 4 bytes lower stays inside canonical space (and faults on the walk instead).
  equal(walkIn(std(), { la: 0x0000_7fff_ffff_fff8n, size: 8 }).kind, "pf");
});

// ---------------------------------------------------------------------------------------------
// §2 Reserved bits (rows 7–35)
// ---------------------------------------------------------------------------------------------

Deno.test("§7 row 7: PML4E bit 7 (PS) is reserved: ec=0x09", () => {
  only(std({ PML4: PS }), op.load(LA4), pf(0x09));
});

Deno.test("§7 row 8: PML4E bit 8 is ignored on Intel, reserved on AMD", () => {
  only(std({ PML4: 0x100n }), op.load(LA4), loaded(0x5008n));
  only(std({ PML4: 0x100n }, { vendor: "amd" }), op.load(LA4), pf(0x09));
});

Deno.test("§7 row 9: PDPTE PS=1 on a model without 1-GiB pages: ec=0x09", () => {
  const memory: Mem = [[ADDR4.PDPT, 0x4000_0087n]];
  only(std({}, { features: { gbPages: false }, memory }), op.load(LA4), pf(0x09));
});

Deno.test("§7 row 10: a 1-GiB PDPTE with bit 12 (PAT) set translates PDPTE[45:30] || LA[29:0]", () => {
  const memory: Mem = [[ADDR4.PDPT, 0x4000_1087n]];
  const m = only(std({}, { memory }), op.load(LA4), loaded(0x4020_1008n));
  adState(m, ADDR4.PDPT, { a: true, d: false });
});

Deno.test("§7 row 11: a 1-GiB PDPTE with bit 13 set: ec=0x09", () => {
  only(std({}, { memory: [[ADDR4.PDPT, 0x4000_2087n]] }), op.load(LA4), pf(0x09));
});

Deno.test("§7 row 12: a 2-MiB PDE with bit 20 set, written: ec=0x0B", () => {
  only(std({}, { memory: [[ADDR4.PD, 0x0030_0087n]] }), op.store(LA4, 1n), pf(0x0b));
});

Deno.test("§7 row 13: PTE bit 46 is reserved with M=46 and a frame bit with M=52", () => {
  const bit46 = 1n << 46n;
  only(std({ PT: bit46 }), op.load(LA4), pf(0x09));
  // The frame lies outside every memslot (MMIO), which reads as zero.
  only(std({ PT: bit46 }, { maxPhyAddr: 52 }), op.load(LA4), loaded(bit46 | 0x5008n));
});

Deno.test("§7 row 14: with NXE=0, XD in a PTE is reserved, so even a read faults: ec=0x09", () => {
  only(std({ PT: XD }, { efer: { nxe: false } }), op.load(LA4), pf(0x09));
});

Deno.test("§7 row 15: XD in a non-leaf PDE is ORed over the levels: fetch at CPL3 ec=0x15", () => {
  only(std({ PD: XD }), op.fetch(LA4, 3), pf(0x15));
});

Deno.test("§7 row 16: reserved bits are not checked in a not-present PTE: ec=0x00", () => {
  only(std({}, { memory: [[ADDR4.PT, 0xffff_ffff_ffff_fffen]] }), op.load(LA4), pf(0x00));
});

Deno.test("§7 row 17: a reserved PML4E bit stops the walk before a not-present PTE: ec=0x09", () => {
  only(std({ PML4: 1n << 51n, PT: P }), op.load(LA4), pf(0x09));
});

Deno.test("§7 row 18: a not-present PML4E stops the walk before a reserved PTE bit: ec=0x00", () => {
  only(std({ PML4: P, PT: 1n << 51n }), op.load(LA4), pf(0x00));
});

Deno.test("§7 row 19: PML4E U/S=0 above a not-present PTE at CPL3 is not-present: ec=0x04", () => {
  only(std({ PML4: US, PT: P }), op.load(LA4, 3), pf(0x04));
});

Deno.test("§7 row 20: with PKE=0 the key bits 62:59 are ignored, not reserved", () => {
  only(std({ PT: key(0xf) }), op.load(LA4), loaded(0x5008n));
  only(std({ PT: key(0xf) }), op.store(LA4, 1n), stored(0x5008n));
});

Deno.test("§7 row 21: PAE paging, PTE bit 59: bits 62:M are reserved in PAE: ec=0x09", () => {
  const memory: Mem = [...paeTables(), [0x3008n, 0x5007n | key(1)]];
  only({ mode: "pae", memory }, op.load(LA_PAE), pf(0x09, LA_PAE));
});

Deno.test("§7 row 22: MOV CR3 to a PDPT with a reserved bit in a present PDPTE: #GP(0), no change", () => {
  const m = machineOf({ mode: "pae", memory: [...paeTables(), [0x1020n, 0x2021n]] });
  const before = m.control(0);
  const choices = m.allowed(decodeOp(op.movCr3(0x1020n)));
  deepStrictEqual(allowed(choices), ["#GP(0)"]);
  m.commit(choices, 0);
  equal(m.control(0).cr3, 0x1000n);
  deepStrictEqual(m.control(0).pdpteRegs, before.pdpteRegs);
  only({ mode: "pae", memory: paeTables() }, op.load(LA_PAE), loaded(0x5008n, 0n));
});

Deno.test("§7 row 23: a reserved bit in a not-present PDPTE: MOV CR3 succeeds or #GP(0)", () => {
  deepStrictEqual(
    fresh({ mode: "pae", memory: [...paeTables(), [0x1020n, 0x2004n]] }, op.movCr3(0x1020n)),
    ["#GP(0)", "done"],
  );
});

Deno.test("§7 row 24: a PDPTE zeroed in memory takes effect only at the next PDPTE load", () => {
  // LA 0x1000: PDPTE0 -> PD 0x2000, PD[0] -> PT 0x3000, PT[1] -> 0x5000; PT[2] maps the PDPT page
  // at LA 0x2000, through which the guest zeroes PDPTE0.
  const memory: Mem = [[0x1000n, 0x2001n], [0x2000n, 0x3007n], [0x3008n, 0x5007n], [
    0x3010n,
    0x1007n,
  ]];
  const m = machineOf({ mode: "pae", memory });
  run(m, op.load(0x1000n), op.store(0x2000n, 0n));
  equal(m.memory.readWord(0x1000n), 0n);
  deepStrictEqual(allowedNext(m, op.load(0x1000n)), [loaded(0x5000n)]);
  run(m, op.movCr3(0x1000n));
  deepStrictEqual(allowedNext(m, op.load(0x1000n)), [pf(0x00, 0x1000n)]);
});

Deno.test("§7 row 25: a write through a not-present PDPTE register: ec=0x02", () => {
  only({ mode: "pae", memory: paeTables() }, op.store(0x4000_0000n, 1n), pf(0x02, 0x4000_0000n));
});

Deno.test("§7 row 26: PAE honours PDE.PS whatever CR4.PSE says: a 2-MiB page", () => {
  const memory: Mem = [...paeTables(), [0x2008n, 0x0040_0087n]];
  only({ mode: "pae", memory, cr4: { pse: false } }, op.load(LA_PAE), loaded(0x0040_1008n));
});

Deno.test("§7 row 27: AMD NPT reads PDPTEs from memory: no #GP at MOV CR3, ec=0x09 at access", () => {
  const memory: Mem = [...paeTables(), [0x1000n, 0x2021n]];
  const m = machineOf({ mode: "pae", vendor: "amd", memory }, { pdpteSource: "memory" });
  deepStrictEqual(allowed(run(m, op.movCr3(0x1000n))), ["done"]);
  deepStrictEqual(allowedNext(m, op.load(LA_PAE)), [pf(0x09, LA_PAE)]);
  // With PDPTE registers the same case cannot even start: its initial PDPTE load would #GP.
  throws(() => machineOf({ mode: "pae", vendor: "amd", memory }), InitialStateError);
});

Deno.test("§7 row 28: 32-bit with CR4.PSE=0 treats PDE bit 7 as a page-table pointer", () => {
  const memory = legacyTables(0x2087n);
  only({ mode: "legacy32", cr4: { pse: false }, memory }, op.load(LA_32), loaded(0x5008n));
});

Deno.test("§7 row 29: 32-bit with PSE, a 4-MiB PDE with bit 21 set: ec=0x09", () => {
  const memory = legacyTables(0x00a0_0087n);
  only({ mode: "legacy32", memory }, op.load(LA_32), pf(0x09, LA_32));
});

Deno.test("§7 row 30: PSE-36 with M=36, a 4-MiB PDE with bit 17 set: ec=0x09", () => {
  const memory = legacyTables(0x0082_0087n);
  only({ mode: "legacy32", maxPhyAddr: 36, memory }, op.load(LA_32), pf(0x09, LA_32));
});

Deno.test("§7 row 31: PSE-36 with M=40, PDE bit 17 becomes PA bit 36", () => {
  const memory = legacyTables(0x0082_0087n);
  const pa = (1n << 36n) | 0x0080_1008n;
  only({ mode: "legacy32", maxPhyAddr: 40, memory }, op.load(LA_32), loaded(pa));
});

Deno.test("§7 row 32: a 32-bit PTE has no reserved bits (11:8 set, PGE=0)", () => {
  const memory = legacyTables(0x2007n, 0x5f07n);
  only({ mode: "legacy32", memory }, op.load(LA_32), loaded(0x5008n));
});

Deno.test("§7 row 33: 32-bit paging, NXE=1, SMEP=0: a fetch fault has I/D=0 (PAE=0)", () => {
  const memory = legacyTables(0x2007n, 0x5006n);
  only({ mode: "legacy32", efer: { nxe: true }, memory }, op.fetch(LA_32), pf(0x00, LA_32));
});

Deno.test("§7 row 34: 4-level, NXE=0, SMEP=1: a not-present fetch has I/D from SMEP: ec=0x10", () => {
  only(std({ PT: P }, { efer: { nxe: false }, cr4: { smep: true } }), op.fetch(LA4), pf(0x10));
});

Deno.test("§7 row 35: NXE=0, SMEP=0: a not-present fetch has I/D=0: ec=0x00", () => {
  only(std({ PT: P }, { efer: { nxe: false } }), op.fetch(LA4), pf(0x00));
});

// ---------------------------------------------------------------------------------------------
// §3 Access rights (rows 36–58)
// ---------------------------------------------------------------------------------------------

Deno.test("§7 row 36: PDE U/S=0 makes a supervisor address: a CPL3 read gets ec=0x05", () => {
  only(std({ PD: US }), op.load(LA4, 3), pf(0x05));
});

Deno.test("§7 row 37: PDPTE R/W=0 makes the page read-only: a CPL3 write gets ec=0x07", () => {
  only(std({ PDPT: RW }), op.store(LA4, 1n, 3), pf(0x07));
});

Deno.test("§7 row 38: WP=0 lets CPL0 write a read-only supervisor page, and sets D", () => {
  const m = only(std({ PT: RW | US }, { cr0: { wp: false } }), op.store(LA4, 1n), stored(0x5008n));
  adState(m, ADDR4.PT, { a: true, d: true });
});

Deno.test("§7 row 39: WP=0, SMAP=0 lets CPL0 write a read-only user page, and sets D", () => {
  const m = only(std({ PT: RW }, { cr0: { wp: false } }), op.store(LA4, 1n), stored(0x5008n));
  adState(m, ADDR4.PT, { a: true, d: true });
});

Deno.test("§7 row 40: WP=1, a CPL0 write to a read-only supervisor page: ec=0x03", () => {
  only(std({ PT: RW | US }), op.store(LA4, 1n), pf(0x03));
});

Deno.test("§7 row 41: SMEP, a CPL0 fetch from a user page: ec=0x11", () => {
  only(std({}, { cr4: { smep: true } }), op.fetch(LA4), pf(0x11));
});

Deno.test("§7 row 42: SMEP, PML4E U/S=0 above PTE U/S=1 is a supervisor address: fetch ok", () => {
  only(std({ PML4: US }, { cr4: { smep: true } }), op.fetch(LA4), loaded(0x5008n));
});

Deno.test("§7 row 43: SMAP with AC=0, a CPL0 read of a user page: ec=0x01", () => {
  only(std({}, { cr4: { smap: true } }), op.load(LA4), pf(0x01));
});

Deno.test("§7 row 44: SMAP with AC=1, an explicit CPL0 read of a user page succeeds", () => {
  only(std({}, { cr4: { smap: true }, rflagsAc: true }), op.load(LA4), loaded(0x5008n));
});

Deno.test("§7 row 45: SMAP with AC=1, an implicit access (IDT) to a user page: ec=0x01", () => {
  const spec = std({}, { cr4: { smap: true }, rflagsAc: true });
  assertPf(walkIn(spec, { la: LA4, cpl: 0, implicitSupervisor: true }), 0x01);
});

Deno.test("§7 row 46: SMAP with AC=1, an implicit access (GDT) at CPL3: ec=0x01, U/S=0", () => {
  const spec = std({}, { cr4: { smap: true }, rflagsAc: true });
  assertPf(walkIn(spec, { la: LA4, cpl: 3, implicitSupervisor: true }), 0x01);
});

Deno.test("§7 row 47: SMAP does not cover fetches: a CPL0 fetch from a user page succeeds", () => {
  only(std({}, { cr4: { smap: true } }), op.fetch(LA4), loaded(0x5008n));
});

Deno.test("§7 row 48: SMAP, WP=0, AC=0: a CPL0 write to a writable user page: ec=0x03", () => {
  only(std({}, { cr4: { smap: true }, cr0: { wp: false } }), op.store(LA4, 1n), pf(0x03));
});

Deno.test("§7 row 49: SMAP, WP=0, AC=1: a CPL0 write to a read-only user page succeeds", () => {
  const spec = std({ PT: RW }, { cr4: { smap: true }, cr0: { wp: false }, rflagsAc: true });
  only(spec, op.store(LA4, 1n), stored(0x5008n));
});

const K = 5;
const pke = (pkruValue: number, rest: Partial<CaseSpec> = {}): Partial<CaseSpec> => ({
  ...rest,
  cr4: { pke: true, ...rest.cr4 },
  pkru: pkruValue,
});

Deno.test("§7 row 50: PKE, PKRU.AD[k]=1, a CPL0 read of a user page: ec=0x21", () => {
  only(std({ PT: key(K) }, pke(pkru(K, { ad: true }))), op.load(LA4), pf(0x21));
});

Deno.test("§7 row 51: PKE, PKRU.WD[k]=1: a CPL0 write succeeds with WP=0, ec=0x23 with WP=1", () => {
  const wd = pkru(K, { wd: true });
  only(std({ PT: key(K) }, pke(wd, { cr0: { wp: false } })), op.store(LA4, 1n), stored(0x5008n));
  only(std({ PT: key(K) }, pke(wd)), op.store(LA4, 1n), pf(0x23));
});

Deno.test("§7 row 52: PKE, WD[k]=1 and AD[k]=1, WP=0: AD still blocks a CPL0 write: ec=0x23", () => {
  const both = pkru(K, { ad: true, wd: true });
  only(std({ PT: key(K) }, pke(both, { cr0: { wp: false } })), op.store(LA4, 1n), pf(0x23));
});

Deno.test("§7 row 53: PKE, AD[k]=1: keys do not apply to fetches (CPL3 fetch ok)", () => {
  only(std({ PT: key(K) }, pke(pkru(K, { ad: true }))), op.fetch(LA4, 3), loaded(0x5008n));
});

Deno.test("§7 row 54: PKE, AD[k]=1, PDE U/S=0: keys apply to user addresses only", () => {
  only(std({ PD: US, PT: key(K) }, pke(pkru(K, { ad: true }))), op.load(LA4), loaded(0x5008n));
});

Deno.test("§7 row 55: PKE, WD[k]=1 on a read-only page, CPL3 write: ec=0x27 (PK still set)", () => {
  only(std({ PT: RW | key(K) }, pke(pkru(K, { wd: true }))), op.store(LA4, 1n, 3), pf(0x27));
});

Deno.test("§7 row 56: PKE in PAE mode (LMA=0) is ignored, even with PKRU all-deny", () => {
  const spec: CaseSpec = {
    mode: "pae",
    memory: paeTables(),
    cr4: { pke: true },
    pkru: 0xffff_ffff,
  };
  only(spec, op.load(LA_PAE), loaded(0x5008n));
  only(spec, op.store(LA_PAE, 1n), stored(0x5008n));
});

Deno.test("§7 row 57: the key comes from the leaf, not from a non-leaf PDE's bits 62:59", () => {
  const tables = { PD: key(2), PT: key(1) };
  only(std(tables, pke(pkru(2, { ad: true }))), op.load(LA4), loaded(0x5008n));
  only(std(tables, pke(pkru(1, { ad: true }))), op.load(LA4), pf(0x21));
});

Deno.test("§7 row 58: PKS, a supervisor page with PKRS.AD[k]=1, CPL0 read: ec=0x21", () => {
  // The case format has no CR4.PKS (spec: PKS is optional); the walker takes it in its context.
  const spec = std({ PT: US | key(3) });
  const pks = (ctx: WalkContext): WalkContext => ({
    ...ctx,
    pks: true,
    pkrs: pkru(3, { ad: true }),
  });
  assertPf(walkIn(spec, { la: LA4 }, pks), 0x21);
  equal(walkIn(spec, { la: LA4 }).kind, "ok", "without PKS the same read succeeds");
  // A user page is not subject to PKS.
  equal(walkIn(std({ PT: key(3) }), { la: LA4 }, pks).kind, "ok");
});

// ---------------------------------------------------------------------------------------------
// §5 Accessed and dirty flags (rows 59–61)
// ---------------------------------------------------------------------------------------------

Deno.test("§7 row 59: a fresh read sets A at every level and D nowhere", () => {
  const m = only(std(), op.load(LA4), loaded(0x5008n));
  for (const addr of Object.values(ADDR4)) adState(m, addr, { a: true, d: false });
});

Deno.test("§7 row 60: a rights fault leaves the leaf's A and D clear; upper A may be set", () => {
  const m = machineOf(std({ PT: RW }));
  const choices = m.allowed(decodeOp(op.store(LA4, 1n)));
  deepStrictEqual(allowed(choices), [pf(0x03)]);
  const committed = m.commit(choices, 0);
  adState(m, ADDR4.PT, { a: false, d: false });
  equal(m.accessedMayBeSet(0, ADDR4.PT, committed), false, "leaf A must stay clear (strict)");
  for (const upper of [ADDR4.PML4, ADDR4.PDPT, ADDR4.PD]) {
    equal(m.accessedMayBeSet(0, upper, committed), true, `upper A at ${hex(upper)} may be set`);
  }
});

Deno.test("§7 row 61: a write to a 2-MiB page sets D in the PDE only", () => {
  const memory: Mem = [[ADDR4.PD, 0x0020_0087n]];
  const m = only(std({}, { memory }), op.store(LA4, 1n), stored(0x0020_1008n));
  adState(m, ADDR4.PD, { a: true, d: true });
  adState(m, ADDR4.PDPT, { a: true, d: false });
  adState(m, ADDR4.PML4, { a: true, d: false });
});

// ---------------------------------------------------------------------------------------------
// §6 TLBs and paging-structure caches (rows 62–74); the guest edits its tables by stores.
// ---------------------------------------------------------------------------------------------

Deno.test("§7 row 62: PTE R/W 1->0 without INVLPG: the write may succeed or fault; after, only fault", () => {
  const m = selfMappedMachine();
  run(m, op.store(LA4, 1n), op.store(PTE_VIA, 0x5065n));
  deepStrictEqual(allowedNext(m, op.store(LA4, 2n)), [pf(0x03), stored(0x5008n)]);
  run(m, op.invlpg(LA4));
  deepStrictEqual(allowedNext(m, op.store(LA4, 2n)), [pf(0x03)]);
});

Deno.test("§7 row 63: PTE R/W 0->1 without INVLPG: one spurious ec=0x03, and the retry succeeds", () => {
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x5065n]] });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x5067n));
  const first = m.allowed(decodeOp(op.store(LA4, 1n)));
  deepStrictEqual(allowed(first), [pf(0x03), stored(0x5008n)]);
  m.commit(first, first.outcomes.findIndex((o) => o.observation.kind === "pf"));
  deepStrictEqual(allowedNext(m, op.store(LA4, 1n)), [stored(0x5008n)]);
});

Deno.test("§7 row 64: PTE P 0->1 without INVLPG: the read must succeed", () => {
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x5006n]] });
  deepStrictEqual(allowed(run(m, op.load(LA4))), [pf(0x00)]);
  run(m, op.store(PTE_VIA, 0x5067n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x5008n)]);
});

Deno.test("§7 row 65: PTE P 1->0 without INVLPG: the old translation or ec=0x00", () => {
  const m = selfMappedMachine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x5066n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [pf(0x00), loaded(0x5008n)]);
});

Deno.test("§7 row 66: PTE frame F1->F2 without INVLPG: data from F1 or F2, nothing else", () => {
  const m = selfMappedMachine({ memory: [[0x5008n, 0xf1n], [0x6008n, 0xf2n]] });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x5008n, 0xf1n), loaded(0x6008n, 0xf2n)]);
});

Deno.test("§7 row 67: a global page survives MOV CR3; a PGE toggle or INVLPG removes it", () => {
  const setup = () => {
    const m = selfMappedMachine({ cr4: { pge: true }, memory: [[ADDR4.PT, 0x5007n | G]] });
    run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n | G), op.movCr3(0x1000n));
    return m;
  };
  deepStrictEqual(allowedNext(setup(), op.load(LA4)), [loaded(0x5008n), loaded(0x6008n)]);
  const toggled = setup();
  run(toggled, op.writeCr4({ pge: false }), op.writeCr4({ pge: true }));
  deepStrictEqual(allowedNext(toggled, op.load(LA4)), [loaded(0x6008n)]);
  const invlpg = setup();
  run(invlpg, op.invlpg(LA4));
  deepStrictEqual(allowedNext(invlpg, op.load(LA4)), [loaded(0x6008n)]);
});

Deno.test("§7 row 68: G=1 only in a non-leaf PDE is not a global page: MOV CR3 flushes it", () => {
  const m = selfMappedMachine({ cr4: { pge: true }, memory: [[ADDR4.PD, 0x4007n | G]] });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n), op.movCr3(0x1000n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x6008n)]);
});

Deno.test("§7 row 69: PCIDE, MOV CR3 with bit 63 keeps the old translation; CR3 reads bit 63 = 0", () => {
  const m = selfMappedMachine({ cr4: { pcide: true } });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n), op.movCr3(0x1000n, true));
  equal(m.control(0).cr3, 0x1000n);
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x5008n), loaded(0x6008n)]);
});

Deno.test("§7 row 70: PCIDE, a no-flush switch to another PML4 under the same PCID may use the old space", () => {
  // A second hierarchy at 0x7000 maps LA4 to frame 0x6000.
  const second: Mem = [[0x7000n, 0x8067n], [0x8008n, 0x9067n], [0x9008n, 0xa067n], [
    0xa008n,
    0x6067n,
  ]];
  const m = selfMappedMachine({ cr4: { pcide: true }, memory: second });
  run(m, op.load(LA4), op.movCr3(0x7000n, true));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x5008n), loaded(0x6008n)]);
  const flushed = selfMappedMachine({ cr4: { pcide: true }, memory: second });
  run(flushed, op.load(LA4), op.movCr3(0x7000n));
  deepStrictEqual(allowedNext(flushed, op.load(LA4)), [loaded(0x6008n)]);
});

Deno.test("§7 row 71: a 2-MiB PDE replaced by a page-table pointer: old 2-MiB or new 4-KiB", () => {
  const m = selfMappedMachine({ memory: [[ADDR4.PD, 0x0020_00e7n]] });
  run(m, op.load(LA4), op.store(PDE_VIA, 0x4067n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x0020_1008n), loaded(0x5008n)]);
});

Deno.test("§7 row 72: INVLPG of another address flushes the PSC but may leave this TLB entry", () => {
  // The PDE moves from T1 (0x4000) to T2, and T1's PTE then changes to frame 0x7000 with A=0.
  // Without any invalidation a cached PDE may still lead to T1 (frame 0x7000, setting that A).
  // INVLPG of any address flushes every PSC entry, so only a full TLB entry for LA4 (0x5000) or
  // a fresh walk through T2 remain: a TLB entry built from T1's new PTE would have needed a walk
  // that set its A bit, and memory shows A=0. (With A=1 already in the new PTE such a walk leaves
  // no trace, and 0x7000 stays allowed: the spec's row assumes no such write.)
  const setup = () => {
    const m = selfMappedMachine({ memory: [[T2 + 8n, 0x6067n]] });
    run(m, op.load(LA4), op.store(PDE_VIA, T2 | 0x67n), op.store(PTE_VIA, 0x7007n));
    return m;
  };
  deepStrictEqual(allowedNext(setup(), op.load(LA4)), [
    loaded(0x5008n),
    loaded(0x6008n),
    loaded(0x7008n),
  ]);
  const m = setup();
  run(m, op.invlpg(LA4 + 0x1000n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [loaded(0x5008n), loaded(0x6008n)]);
});

Deno.test("§7 row 73: PDE T1->T2 without invalidation, then T1 cleared: T2, stale TLB, or ec=0x00", () => {
  const m = selfMappedMachine({ memory: [[T2 + 8n, 0x6067n]] });
  run(m, op.load(LA4), op.store(PDE_VIA, T2 | 0x67n), op.store(PTE_VIA, 0n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [pf(0x00), loaded(0x5008n), loaded(0x6008n)]);
});

Deno.test("§7 row 74: software clears PTE.A without invalidation: the read succeeds, A may stay 0", () => {
  const m = selfMappedMachine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x5007n));
  const choices = m.allowed(decodeOp(op.load(LA4)));
  deepStrictEqual(allowed(choices), [loaded(0x5008n)]);
  const setsPteA = (o: (typeof choices.outcomes)[number]) =>
    o.writes.some((w) => w.addr === ADDR4.PT && w.kind === "A");
  ok(choices.outcomes.some((o) => !setsPteA(o)), "a TLB hit leaves A at 0");
  ok(choices.outcomes.some(setsPteA), "a fresh walk sets A again");
});

// ---------------------------------------------------------------------------------------------
// Rows 75–76: read-modify-write and 32-bit wrap-around
// ---------------------------------------------------------------------------------------------

Deno.test("§7 row 75: a read-modify-write of a read-only user page at CPL3 is a write: ec=0x07", () => {
  // The program has no RMW op; an RMW faults as its write (W/R=1), which a store models.
  only(std({ PT: RW }), op.store(LA4, 1n, 3), pf(0x07));
  only(std({ PT: RW }), op.load(LA4, 3), loaded(0x5008n));
});

Deno.test("§7 row 76: a 4-byte read at 0xFFFF_FFFE in 32-bit paging wraps to page 0", () => {
  const m = machineOf({ mode: "legacy32", memory: legacyTables() });
  const mode = walkContextOf(m.cpu, m.control(0)).mode;
  deepStrictEqual(splitAccess(mode, 0xffff_fffen, 4), [
    { la: 0xffff_fffen, size: 2 },
    { la: 0n, size: 2 },
  ]);
  // No canonical check applies outside IA-32e mode: the read walks (and faults on PD[1023]).
  assertPf(walkIn({ mode: "legacy32", memory: legacyTables() }, { la: 0xffff_fffen, size: 4 }), 0);
});
