/**
 * Exhaustive check of the reference walker for 4-level paging, in the spirit of kvm-unit-tests
 * x86/access.c: plain loops enumerate every legal combination (`ac_test_bump`), a legality rule
 * prunes the rest (`ac_test_legal`), and an independent, table-driven derivation written here from
 * the spec's rules predicts the outcome (`ac_emulate_access`).
 *
 * Nothing from `oracles/` is used except the walker under test (`walk`) and the function that
 * turns a control state into its walk context (`walkContextOf`). The reserved-bit table, the rights
 * decision table, the error-code table and the A/D rules below are transcribed from
 * `/work/shared/docs/x86-paging-spec.md` (§1.3, §2.1, §3.2–§3.4, §4.1–§4.2, §5.1).
 *
 * Dimensions:
 * - PML4E and PDPTE fixed: present, R/W, U/S, A (0x27).
 * - PDE flags {P, R/W, U/S, A, D, XD, PS} (128) and PTE flags {P, R/W, U/S, A, D, XD} (64).
 * - At most one "extra" bit over both entries, from a short list per entry: bit 45 (a valid
 *   address bit, M-1), bit 46 (= M, reserved), bit 51 (reserved), bit 52 (ignored), and for a
 *   2-MiB PDE bit 12 (PAT, not reserved) and each of bits 13..20 (reserved). With EFER.NXE=0 an
 *   XD bit that is set is a reserved bit too, so it takes the one extra-bit slot.
 * - The PTE is enumerated only when the walk reaches it (PDE present, no reserved bit, PS=0);
 *   otherwise a single fixed PTE stands in for all of them.
 * - Accesses {read, write, fetch} x {CPL0, CPL3}, explicit (not implicit supervisor).
 * - Controls CR0.WP x EFER.NXE x CR4.SMEP x {SMAP off, SMAP on AC=0, SMAP on AC=1} x
 *   {PKE off (PKRU all-deny, to show it is ignored), PKE on with PKRU.AD[k]/WD[k] in 4 combos}.
 *   k is the leaf's key (bits 62:59); every other key gets the opposite AD/WD, and a non-leaf PDE
 *   carries a different key in bits 62:59, so reading the key from the wrong place shows.
 *
 * @module
 */
import { ok } from "node:assert/strict";
import { type VcpuControl, walkContextOf } from "../../oracles/control_state.ts";
import { type Access, walk, type WalkContext, type WalkResult } from "../../oracles/walk.ts";
import type { CpuModel } from "../../src/model/case.ts";

// ---------------------------------------------------------------------------------------------
// Spec facts, written here (not imported from oracles/).
// ---------------------------------------------------------------------------------------------

/** `bit(n)` and `bits(h, l)` as in spec §0.1. */
const bit = (n: number): bigint => 1n << BigInt(n);
const bits = (h: number, l: number): bigint =>
  h < l ? 0n : ((1n << BigInt(h - l + 1)) - 1n) << BigInt(l);

/** MAXPHYADDR of the modelled CPU. */
const M = 46;

const CPU: CpuModel = {
  maxPhyAddr: M,
  vendor: "intel",
  features: {
    nx: true,
    pse: true,
    pse36: true,
    gbPages: true,
    smep: true,
    smap: true,
    pku: true,
    la57: true,
    pcid: true,
  },
};

/** Entry bit positions (spec §1.3 entry layout). */
const F = { P: 0, RW: 1, US: 2, A: 5, D: 6, PS: 7, XD: 63 } as const;
const has = (e: bigint, n: number): boolean => (e & bit(n)) !== 0n;

/** The kinds of entry whose reserved bits differ (spec §2.1, 4-level, Intel, 1-GiB pages). */
type EntryKind = "PML4E" | "PDPTE" | "PDE" | "PDE-2M" | "PTE";

/** Spec §2.1 "4-level and 5-level paging" reserved-bit table, with NX = NXE ? 0 : bit(63). */
function reservedTable(nxe: boolean): Record<EntryKind, bigint> {
  const nx = nxe ? 0n : bit(63);
  return {
    "PML4E": bits(51, M) | nx | bit(7), // + bit 8 on AMD only
    "PDPTE": bits(51, M) | nx, // 1-GiB pages supported; PS=0 in this test
    "PDE": bits(51, M) | nx,
    "PDE-2M": bits(51, M) | nx | bits(20, 13),
    "PTE": bits(51, M) | nx,
  };
}
const RESERVED = { on: reservedTable(true), off: reservedTable(false) };

/** Error-code bits (spec §4.1). */
const EC = { P: 1, W: 2, U: 4, RSVD: 8, ID: 16, PK: 32 } as const;

// ---------------------------------------------------------------------------------------------
// The fixed layout: one linear address, its four tables, the frames.
// ---------------------------------------------------------------------------------------------

/** Index into each table (spec §1.3 "Indices"); PML4 index bit 8 makes LA[47]=1 (upper half). */
const IDX = { pml4: 0x1a3n, pdpt: 0x0c5n, pd: 0x15en, pt: 0x07bn } as const;
const OFFSET = 0x9d8n;
const LA = 0xffff_0000_0000_0000n | IDX.pml4 << 39n | IDX.pdpt << 30n | IDX.pd << 21n |
  IDX.pt << 12n | OFFSET;

const CR3 = 0x0000_0000_0001_0000n;
const PDPT_BASE = 0x0000_1111_2222_3000n;
const PD_BASE = 0x0000_0333_4444_5000n;
const PT_BASE = 0x0000_0555_6666_7000n;
const FRAME_4K = 0x0000_1234_5678_9000n;
const FRAME_2M = 0x0000_1abc_dee0_0000n;

/** The leaf's protection key k, and a different key placed in a non-leaf PDE's bits 62:59. */
const LEAF_KEY = 11;
const NONLEAF_PDE_KEY = 6;
const keyBits = (k: number): bigint => BigInt(k) << 59n;

/** Entry address = table base | index * 8 (spec §0.1, §1.3). */
const PML4E_ADDR = CR3 | IDX.pml4 << 3n;
const PML4E = PDPT_BASE | 0x27n;
const PDPTE_ADDR = PDPT_BASE | IDX.pdpt << 3n;
const PDPTE = PD_BASE | 0x27n;
const PDE_ADDR = PD_BASE | IDX.pd << 3n;

// ---------------------------------------------------------------------------------------------
// Enumeration (ac_test_bump / ac_test_legal).
// ---------------------------------------------------------------------------------------------

const PDE_FLAGS = [F.P, F.RW, F.US, F.A, F.D, F.XD, F.PS] as const;
const PTE_FLAGS = [F.P, F.RW, F.US, F.A, F.D, F.XD] as const;
const FLAG_NAME: Record<number, string> = {
  0: "p",
  1: "rw",
  2: "us",
  5: "a",
  6: "d",
  7: "ps",
  63: "nx",
};

/** Extra bits tried one at a time: a valid address bit, reserved bits, an ignored bit, PAT. */
const EXTRA_SMALL = [45, 46, 51, 52] as const;
const EXTRA_2M = [45, 46, 51, 52, 12, 13, 14, 15, 16, 17, 18, 19, 20] as const;

/** A PTE that stands for "any PTE" when the walk never reaches it: A=0, so a stray use shows. */
const UNUSED_PTE = FRAME_4K | keyBits(LEAF_KEY) | bit(F.P) | bit(F.RW) | bit(F.US);

/** One combination of entries, and the memory that holds it. */
interface EntryCombo {
  readonly pde: bigint;
  readonly pte: bigint;
  /** Where the PTE lives (spec §1.3: the PDE's bits M-1:12, plus the PT index). */
  readonly pteAddr: bigint;
  readonly pteUsed: boolean;
  readonly pdeExtra: number | null;
  readonly pteExtra: number | null;
  readonly mem: Map<bigint, bigint>;
}

function flagsValue(mask: number, flags: readonly number[]): bigint {
  let v = 0n;
  flags.forEach((f, i) => {
    if (mask & (1 << i)) v |= bit(f);
  });
  return v;
}

/** The PDE is a valid non-leaf entry, so the walk goes on to the PTE (spec §1.7, §2.1). */
function reachesPte(pde: bigint, nxe: boolean): boolean {
  if (!has(pde, F.P) || has(pde, F.PS)) return false;
  return (pde & RESERVED[nxe ? "on" : "off"]["PDE"]) === 0n;
}

/**
 * Every legal entry combination under one EFER.NXE value. Legal: at most one extra bit over
 * the entries the walk reads (or could read), where an XD bit set while NXE=0 counts as one.
 */
function entryCombos(nxe: boolean): EntryCombo[] {
  const out: EntryCombo[] = [];
  const slot = (e: bigint, extra: number | null) =>
    (extra === null ? 0 : 1) + (!nxe && has(e, F.XD) ? 1 : 0);
  const memory = (pde: bigint, pteAddr: bigint, pte: bigint) =>
    new Map([[PML4E_ADDR, PML4E], [PDPTE_ADDR, PDPTE], [PDE_ADDR, pde], [pteAddr, pte]]);
  for (let pm = 0; pm < 1 << PDE_FLAGS.length; pm++) {
    const flags = flagsValue(pm, PDE_FLAGS);
    const large = has(flags, F.PS);
    const body = large ? FRAME_2M | keyBits(LEAF_KEY) : PT_BASE | keyBits(NONLEAF_PDE_KEY);
    for (const pdeExtra of [null, ...(large ? EXTRA_2M : EXTRA_SMALL)]) {
      const pde = flags | body | (pdeExtra === null ? 0n : bit(pdeExtra));
      const pdeSlots = slot(pde, pdeExtra);
      if (pdeSlots > 1) continue;
      const pteAddr = (pde & bits(M - 1, 12)) | IDX.pt << 3n;
      if (!reachesPte(pde, nxe)) {
        out.push({
          pde,
          pte: UNUSED_PTE,
          pteAddr,
          pteUsed: false,
          pdeExtra,
          pteExtra: null,
          mem: memory(pde, pteAddr, UNUSED_PTE),
        });
        continue;
      }
      for (let tm = 0; tm < 1 << PTE_FLAGS.length; tm++) {
        for (const pteExtra of [null, ...EXTRA_SMALL]) {
          const pte = flagsValue(tm, PTE_FLAGS) | FRAME_4K | keyBits(LEAF_KEY) |
            (pteExtra === null ? 0n : bit(pteExtra));
          if (pdeSlots + slot(pte, pteExtra) > 1) continue;
          out.push({
            pde,
            pte,
            pteAddr,
            pteUsed: true,
            pdeExtra,
            pteExtra,
            mem: memory(pde, pteAddr, pte),
          });
        }
      }
    }
  }
  return out;
}

/** The control dimensions of one combination. */
interface Controls {
  readonly wp: boolean;
  readonly nxe: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  readonly ac: boolean;
  readonly pke: boolean;
  /** PKRU.AD[k] and PKRU.WD[k] for the leaf's key (only meaningful with PKE). */
  readonly ad: boolean;
  readonly wd: boolean;
}

const SMAP_STATES = [
  { smap: false, ac: false },
  { smap: true, ac: false },
  { smap: true, ac: true },
] as const;
const PKE_STATES = [
  { pke: false, ad: false, wd: false },
  { pke: true, ad: false, wd: false },
  { pke: true, ad: false, wd: true },
  { pke: true, ad: true, wd: false },
  { pke: true, ad: true, wd: true },
] as const;

/** Every control combination for one NXE value and a subset of the PKE states. */
function controlCombos(nxe: boolean, pke: "off" | "on"): Controls[] {
  const out: Controls[] = [];
  for (const wp of [false, true]) {
    for (const smep of [false, true]) {
      for (const s of SMAP_STATES) {
        for (const k of PKE_STATES) {
          if (k.pke !== (pke === "on")) continue;
          out.push({ wp, nxe, smep, ...s, ...k });
        }
      }
    }
  }
  return out;
}

/** PKRU: key k gets (AD, WD); every other key the opposite. PKE off: all-deny (must be ignored). */
function pkruOf(c: Controls): number {
  if (!c.pke) return 0xffff_ffff;
  let pkru = 0;
  for (let key = 0; key < 16; key++) {
    const ad = key === LEAF_KEY ? c.ad : !c.ad;
    const wd = key === LEAF_KEY ? c.wd : !c.wd;
    pkru |= ((ad ? 1 : 0) | (wd ? 2 : 0)) << (2 * key);
  }
  return pkru >>> 0;
}

function contextOf(c: Controls): WalkContext {
  const ctl: VcpuControl = {
    cr0: { pg: true, wp: c.wp },
    cr3: CR3,
    cr4: {
      pse: false,
      pae: true,
      pge: false,
      smep: c.smep,
      smap: c.smap,
      pke: c.pke,
      la57: false,
      pcide: false,
    },
    efer: { lme: true, nxe: c.nxe },
    pkru: pkruOf(c),
    rflagsAc: c.ac,
    pdpteRegs: null,
  };
  return walkContextOf(CPU, ctl);
}

type Kind = "read" | "write" | "fetch";
const ACCESSES: readonly Access[] = (["read", "write", "fetch"] as const).flatMap((kind) =>
  ([0, 3] as const).map((cpl) => ({ la: LA, kind, cpl, implicitSupervisor: false }))
);

// ---------------------------------------------------------------------------------------------
// The independent derivation (ac_emulate_access), from the spec's rules.
// ---------------------------------------------------------------------------------------------

/** What the walk part of the spec (§1.7, §2, §3.2) gives for one entry combination. */
type Stage =
  | { readonly fault: "not-present" | "reserved" }
  | {
    readonly fault: null;
    /** Combined rights (§3.2): AND of R/W, AND of U/S, OR of XD (XD only with NXE). */
    readonly w: boolean;
    readonly u: boolean;
    readonly xd: boolean;
    /** The leaf's bits 62:59. */
    readonly key: number;
    readonly pa: bigint;
    readonly pageShift: number;
    /** §5.1 on success: A into every entry used whose A is clear; D into the leaf on a write. */
    readonly aWrites: readonly string[];
    readonly leafName: string;
    readonly leafDirty: boolean;
  };

const LEVELS = [
  { name: "pml4e", shift: 39n },
  { name: "pdpte", shift: 30n },
  { name: "pde", shift: 21n },
  { name: "pte", shift: 12n },
] as const;

/** Walks `mem` top-down: the first not-present or reserved entry stops it (spec §4.2 item 2). */
function deriveWalk(mem: Map<bigint, bigint>, nxe: boolean): Stage {
  const rsvd = RESERVED[nxe ? "on" : "off"];
  let base = CR3 & bits(M - 1, 12);
  let w = true, u = true, xd = false;
  const aWrites: string[] = [];
  for (const level of LEVELS) {
    const index = (LA >> level.shift) & 0x1ffn;
    const e = mem.get(base | index << 3n) ?? 0n;
    if (!has(e, F.P)) return { fault: "not-present" };
    const leaf = level.name === "pte" || (level.name === "pde" && has(e, F.PS));
    const kind: EntryKind = level.name === "pml4e"
      ? "PML4E"
      : level.name === "pdpte"
      ? "PDPTE"
      : level.name === "pde"
      ? (leaf ? "PDE-2M" : "PDE")
      : "PTE";
    if ((e & rsvd[kind]) !== 0n) return { fault: "reserved" };
    w &&= has(e, F.RW);
    u &&= has(e, F.US);
    xd ||= nxe && has(e, F.XD);
    if (!has(e, F.A)) aWrites.push(`A:${level.name}`);
    if (leaf) {
      const shift = level.shift;
      const pa = (e & bits(M - 1, Number(shift))) | (LA & ((1n << shift) - 1n));
      return {
        fault: null,
        w,
        u,
        xd,
        key: Number((e >> 59n) & 0xfn),
        pa,
        pageShift: Number(shift),
        aWrites,
        leafName: level.name,
        leafDirty: has(e, F.D),
      };
    }
    base = e & bits(M - 1, 12);
  }
  throw new Error("unreachable: the PTE level is always a leaf");
}

type Mode = "user" | "supervisor";
interface Rights {
  readonly w: boolean;
  readonly u: boolean;
  readonly xd: boolean;
}
/** SMAP blocks explicit supervisor data accesses to user addresses unless AC=1 (spec §3.3). */
const smapBlocks = (c: Controls): boolean => c.smap && !c.ac;

/** Spec §3.3 decision table, "Allowed iff" column (keys not included). */
const ALLOWED: Record<Mode, Record<Kind, (r: Rights, c: Controls) => boolean>> = {
  user: {
    read: (r) => r.u,
    write: (r) => r.u && r.w, // CR0.WP irrelevant
    fetch: (r) => r.u && !r.xd,
  },
  supervisor: {
    read: (r, c) => !r.u || !smapBlocks(c),
    write: (r, c) => (!r.u || !smapBlocks(c)) && (r.w || !c.wp),
    fetch: (r, c) => !r.xd && !(r.u && c.smep),
  },
};

/** Spec §3.3 decision table, "Protection-key check" column (PKS is off in this model). */
const KEY_BLOCKS: Record<Mode, Record<Kind, (r: Rights, c: Controls) => boolean>> = {
  user: {
    read: (r, c) => r.u && c.pke && c.ad,
    write: (r, c) => r.u && c.pke && (c.ad || c.wd),
    fetch: () => false,
  },
  supervisor: {
    read: (r, c) => r.u && c.pke && c.ad,
    write: (r, c) => r.u && c.pke && (c.ad || (c.wd && c.wp)),
    fetch: () => false,
  },
};

/** Spec §4.1: which error-code bits are set, given the kind of fault. */
function errorCode(
  why: "not-present" | "reserved" | "rights",
  pk: boolean,
  a: Access,
  c: Controls,
): number {
  let ec = 0;
  if (why !== "not-present") ec |= EC.P;
  if (a.kind === "write") ec |= EC.W;
  if (a.cpl === 3) ec |= EC.U; // explicit accesses only in this test
  if (why === "reserved") ec |= EC.RSVD;
  if (a.kind === "fetch" && (c.smep || c.nxe)) ec |= EC.ID; // CR4.PAE=1 in 4-level paging
  if (why === "rights" && pk && a.kind !== "fetch") ec |= EC.PK;
  return ec;
}

/** The predicted result of one access, in the shape both sides are compared in. */
interface Outcome {
  readonly pf: number | null;
  readonly pa: bigint;
  readonly pageShift: number;
  /** Sorted "A:pde"-style names of the A/D writes. */
  readonly writes: string;
}

function expected(stage: Stage, a: Access, c: Controls): Outcome {
  if (stage.fault !== null) {
    return { pf: errorCode(stage.fault, false, a, c), pa: 0n, pageShift: 0, writes: "" };
  }
  const mode: Mode = a.cpl === 3 ? "user" : "supervisor";
  const kind = a.kind as Kind;
  const violation = !ALLOWED[mode][kind](stage, c);
  const pk = kind !== "fetch" && KEY_BLOCKS[mode][kind](stage, c);
  if (violation || pk) {
    return { pf: errorCode("rights", pk, a, c), pa: 0n, pageShift: 0, writes: "" };
  }
  const writes = [...stage.aWrites];
  if (kind === "write" && !stage.leafDirty) writes.push(`D:${stage.leafName}`);
  return { pf: null, pa: stage.pa, pageShift: stage.pageShift, writes: writes.sort().join(",") };
}

// ---------------------------------------------------------------------------------------------
// Running the walker and comparing.
// ---------------------------------------------------------------------------------------------

/** The walker's result in the comparison shape, or a string saying why it has no such shape. */
function observed(r: WalkResult, combo: EntryCombo): Outcome | string {
  if (r.kind === "pf") {
    if (r.cr2 !== LA) return `pf with cr2=0x${r.cr2.toString(16)}`;
    if (r.alternatives.length !== 0) {
      return `pf ec=0x${r.errorCode.toString(16)} with alternatives ${r.alternatives.join(",")}`;
    }
    return { pf: r.errorCode, pa: 0n, pageShift: 0, writes: "" };
  }
  if (r.kind !== "ok") return `#${r.kind.toUpperCase()}`;
  const names: string[] = [];
  for (const w of r.writes) {
    const at = w.addr === PML4E_ADDR
      ? "pml4e"
      : w.addr === PDPTE_ADDR
      ? "pdpte"
      : w.addr === PDE_ADDR
      ? "pde"
      : w.addr === combo.pteAddr
      ? "pte"
      : `0x${w.addr.toString(16)}`;
    const mask = w.bit === "A" ? bit(F.A) : bit(F.D);
    names.push(
      w.mask === mask && w.bytes === 8 ? `${w.bit}:${at}` : `${w.bit}:${at}(bad mask/size)`,
    );
  }
  return { pf: null, pa: r.pa, pageShift: r.pageShift, writes: names.sort().join(",") };
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  return a.pf === b.pf && a.pa === b.pa && a.pageShift === b.pageShift && a.writes === b.writes;
}

function describeOutcome(o: Outcome | string): string {
  if (typeof o === "string") return o;
  if (o.pf !== null) return `#PF ec=0x${o.pf.toString(16)}`;
  return `ok pa=0x${o.pa.toString(16)} 4K<<${o.pageShift - 12} writes=[${o.writes}]`;
}

function entryName(
  prefix: string,
  e: bigint,
  flags: readonly number[],
  extra: number | null,
): string {
  const set = flags.filter((f) => has(e, f)).map((f) => `${prefix}.${FLAG_NAME[f]}`);
  if (extra !== null) set.push(`${prefix}.bit${extra}`);
  return set.length ? set.join(" ") : `${prefix}=0`;
}

/** A readable name for one combination, e.g. `pde.p pde.rw pte.us write cpl3 cr0.wp smap ac=0`. */
function comboName(e: EntryCombo, a: Access, c: Controls): string {
  const parts = [
    entryName("pde", e.pde, PDE_FLAGS, e.pdeExtra),
    e.pteUsed ? entryName("pte", e.pte, PTE_FLAGS, e.pteExtra) : "pte=(not reached)",
    `${a.kind} cpl${a.cpl}`,
  ];
  if (c.wp) parts.push("cr0.wp");
  if (c.nxe) parts.push("efer.nxe");
  if (c.smep) parts.push("smep");
  if (c.smap) parts.push(`smap ac=${c.ac ? 1 : 0}`);
  parts.push(c.pke ? `pke ad=${c.ad ? 1 : 0} wd=${c.wd ? 1 : 0}` : "pke=0");
  return `${parts.join(" ")} [pde=0x${e.pde.toString(16)} pte=0x${e.pte.toString(16)}]`;
}

const MAX_REPORTED = 20;

/** Runs every combination of the given entries and controls; returns the count and mismatches. */
function check(entries: readonly EntryCombo[], controls: readonly Controls[]) {
  let checked = 0;
  let failures = 0;
  const report: string[] = [];
  const stages = new Map<boolean, Stage[]>();
  for (const c of controls) {
    const ctx = contextOf(c);
    let derived = stages.get(c.nxe);
    if (!derived) stages.set(c.nxe, derived = entries.map((e) => deriveWalk(e.mem, c.nxe)));
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const stage = derived[i]!;
      const read = (addr: bigint) => e.mem.get(addr) ?? 0n;
      for (const a of ACCESSES) {
        checked++;
        const want = expected(stage, a, c);
        const got = observed(walk(ctx, a, read), e);
        if (typeof got !== "string" && sameOutcome(got, want)) continue;
        failures++;
        if (report.length < MAX_REPORTED) {
          report.push(
            `${comboName(e, a, c)}: walker ${describeOutcome(got)}, spec ${describeOutcome(want)}`,
          );
        }
      }
    }
  }
  return { checked, failures, report };
}

function assertNoMismatch(group: string, r: ReturnType<typeof check>): void {
  console.log(`${group}: ${r.checked} combinations checked, ${r.failures} mismatches`);
  ok(r.checked > 0, `${group}: nothing was checked`);
  ok(
    r.failures === 0,
    `${group}: ${r.failures} of ${r.checked} combinations disagree with the spec` +
      ` (first ${r.report.length}):\n  ${r.report.join("\n  ")}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

const ENTRIES = { on: entryCombos(true), off: entryCombos(false) };

Deno.test("exhaustive 4-level: the enumeration has the expected size", () => {
  // Closed-form counts, worked out by hand from the legality rule (not from the loops):
  // PDE "other" flags are RW, US, A, D (16 combinations), XD and PS counted separately.
  // A 4-KiB-capable PDE has 4 extra-bit choices, a 2-MiB PDE 13; "+1" is "no extra bit".
  // NXE=1 (XD is a plain flag, 32 = 16 x XD):
  //   P=0, PS=0: 32 x (1+4) = 160;  P=0, PS=1: 32 x (1+13) = 448
  //   P=1, PS=1: 32 x 14 = 448
  //   P=1, PS=0: 32 x [2 reserved extras (no PTE) + 2 valid extras x 64 PTEs + 64 PTEs x (1+4)]
  //            = 32 x 450 = 14400                                       total 15456
  // NXE=0 (a set XD is reserved and uses the one extra-bit slot):
  //   P=0: XD=0: 16 x 5 + 16 x 14 = 304; XD=1: 32 (PS free, no extra) = 32
  //   P=1, PS=1: XD=0: 16 x 14 = 224; XD=1: 16
  //   P=1, PS=0: XD=1: 16 (faults, no PTE); XD=0: 16 x [2 + 2 x 32 (PTE XD=0)
  //            + 32 PTEs (XD=0) x 5 + 32 PTEs (XD=1, no extra)] = 16 x 258 = 4128
  //                                                                     total 4720
  const perNxe = { on: 15456, off: 4720 };
  ok(ENTRIES.on.length === perNxe.on, `NXE=1 entry combinations: ${ENTRIES.on.length}`);
  ok(ENTRIES.off.length === perNxe.off, `NXE=0 entry combinations: ${ENTRIES.off.length}`);
  // Controls per NXE: WP 2 x SMEP 2 x SMAP/AC 3 x (PKE off + 4 PKRU AD/WD) = 60.
  for (const nxe of [false, true]) {
    ok(controlCombos(nxe, "off").length === 12);
    ok(controlCombos(nxe, "on").length === 48);
  }
  ok(ACCESSES.length === 6);
  // Every entry combination is distinct, and the walk reaches the PTE exactly when enumerated.
  for (const nxe of [false, true]) {
    const list = ENTRIES[nxe ? "on" : "off"];
    const keys = new Set(list.map((e) => `${e.pde}/${e.pte}`));
    ok(keys.size === list.length, "duplicate entry combinations");
  }
  const total = (perNxe.on + perNxe.off) * 60 * 6;
  console.log(`total combinations: ${total}`);
  ok(total === 7_263_360);
});

for (const nxe of [false, true]) {
  for (const pke of ["off", "on"] as const) {
    const group = `efer.nxe=${nxe ? 1 : 0} pke=${pke === "on" ? "1 (4 PKRU AD/WD combos)" : "0"}`;
    Deno.test(`exhaustive 4-level: walker matches the spec, ${group}`, () => {
      assertNoMismatch(group, check(ENTRIES[nxe ? "on" : "off"], controlCombos(nxe, pke)));
    });
  }
}
