/**
 * The reference page walker: one loop over the mode descriptor's levels (SDM 3A §4, spec §1.7).
 *
 * `walk` is a pure function of (memory reader, context, access): it returns the translation or
 * the fault, the per-level trace, and the accessed/dirty writes the access would perform. It
 * performs none of them; the machine commits them.
 *
 * @module
 */
import {
  type AccessKind,
  type Accessor,
  checkRights,
  type CombinedRights,
} from "./access_rights.ts";
import { bits, type PageShift, PTE_A, PTE_D, PTE_G, PTE_RW, PTE_US, PTE_XD } from "./bits.ts";
import { interpretEntry } from "./entry_format.ts";
import { type FaultReason, pageFaultErrorCode } from "./error_code.ts";
import { isIa32e, levelIndex, type LevelName, type PagingMode } from "./paging_mode.ts";
import type { RightsControls } from "./access_rights.ts";

/** A memory access to translate. */
export interface Access extends Accessor {
  /** Linear address (64-bit; truncated to 32 bits outside IA-32e mode). */
  readonly la: bigint;
  /** Bytes accessed, for the canonical check of the last byte (default 8). */
  readonly size?: number;
  /** The reference uses the SS segment: a canonical violation is #SS, not #GP. */
  readonly viaSS?: boolean;
}

/** Everything a walk reads besides memory: the mode, the root and the rights controls. */
export interface WalkContext extends RightsControls {
  readonly mode: PagingMode;
  /** The top table's base: from CR3 (32-bit: 31:12; PAE: 31:5; IA-32e: M-1:12). */
  readonly root: bigint;
  /** PAE PDPTE registers (PAE paging with register-sourced PDPTEs only). */
  readonly pdpteRegs: readonly bigint[] | null;
  /** CR4.PGE: leaves with G=1 make global translations. */
  readonly pge: boolean;
}

/** Reads a paging-structure entry of 4 or 8 bytes at a physical address. */
export type EntryReader = (addr: bigint, bytes: 4 | 8) => bigint;

/** One level of a walk, as the trace shows it. */
export interface TraceEntry {
  readonly level: LevelName;
  /** Physical address of the entry. */
  readonly addr: bigint;
  readonly value: bigint;
  /** Where the value came from: memory now, a PAE PDPTE register, or a cached snapshot. */
  readonly source: "memory" | "register" | "snapshot";
  /** For a snapshot: the time (step) of the memory state it was taken from. */
  readonly snapshot?: number;
  /** This entry's XD contribution (0 where XD is not interpreted). */
  readonly xd: boolean;
}

/** A locked OR of the A or D bit into an entry, as the processor performs it. */
export interface AdWrite {
  readonly addr: bigint;
  readonly bytes: 4 | 8;
  readonly bit: "A" | "D";
  readonly mask: bigint;
}

/** A successful translation. */
export interface Translation {
  readonly kind: "ok";
  readonly la: bigint;
  readonly pa: bigint;
  readonly pageShift: PageShift;
  readonly path: readonly TraceEntry[];
  readonly rights: CombinedRights;
  /** A global translation (leaf G=1 with CR4.PGE=1). */
  readonly global: boolean;
  /** The A/D writes the access performs (only bits that are clear now). */
  readonly writes: readonly AdWrite[];
}

/** A page fault. */
export interface PageFault {
  readonly kind: "pf";
  readonly la: bigint;
  readonly errorCode: number;
  /** Other error codes the architecture also allows for this fault. */
  readonly alternatives: readonly number[];
  readonly cr2: bigint;
  readonly reason: FaultReason;
  /** The level where the walk stopped (or the leaf, for a rights fault). */
  readonly level: LevelName | null;
  /** The entries read, the failing one last. */
  readonly path: readonly TraceEntry[];
}

/** The result of one walk. */
export type WalkResult =
  | Translation
  | PageFault
  | { readonly kind: "gp"; readonly la: bigint }
  | { readonly kind: "ss"; readonly la: bigint };

/** True when `la` is canonical for a linear-address width (bits 63:w-1 all equal). */
export function isCanonical(la: bigint, laBits: number): boolean {
  const top = la >> BigInt(laBits - 1);
  return top === 0n || top === (1n << BigInt(65 - laBits)) - 1n;
}

/** The linear address as the mode sees it: 32-bit zero-extended outside IA-32e. */
export function effectiveLa(mode: PagingMode, la: bigint): bigint {
  return isIa32e(mode) ? la : la & 0xffff_ffffn;
}

/**
 * Splits an access into the per-page pieces it touches (spec §1.0: outside 64-bit mode
 * addresses wrap at 4 GiB).
 */
export function splitAccess(
  mode: PagingMode,
  la: bigint,
  size: number,
): { la: bigint; size: number }[] {
  const wrap = isIa32e(mode) ? 1n << 64n : 1n << 32n;
  const out: { la: bigint; size: number }[] = [];
  let at = la % wrap;
  let left = size;
  while (left > 0) {
    const inPage = Number(0x1000n - (at & 0xfffn));
    const n = Math.min(inPage, left);
    out.push({ la: at, size: n });
    at = (at + BigInt(n)) % wrap;
    left -= n;
  }
  return out;
}

/** The canonical check of spec §1.0: #GP (or #SS) before any walk, on the first and last byte. */
export function canonicalFault(mode: PagingMode, access: Access): "gp" | "ss" | null {
  if (!isIa32e(mode)) return null;
  const last = access.la + BigInt((access.size ?? 8) - 1);
  if (isCanonical(access.la, mode.laBits) && last < 1n << 64n && isCanonical(last, mode.laBits)) {
    return null;
  }
  return access.viaSS ? "ss" : "gp";
}

/** Combines the rights of a path (spec §3.2). PAE PDPTE registers contribute W=U=1, XD=0. */
export function combineRights(ctx: WalkContext, path: readonly TraceEntry[]): CombinedRights {
  let w = true;
  let u = true;
  let xd = false;
  for (const e of path) {
    if (e.source !== "register" && !(ctx.mode.kind === "pae" && e.level === "PDPT")) {
      w &&= (e.value & PTE_RW) !== 0n;
      u &&= (e.value & PTE_US) !== 0n;
    }
    xd ||= e.xd;
  }
  const leaf = path[path.length - 1];
  const keys = isIa32e(ctx.mode) && (ctx.pke || ctx.pks);
  const pkey = keys && leaf ? Number((leaf.value >> 59n) & 0xfn) : 0;
  return { w, u, xd, pkey };
}

/** The XD contribution of an entry read under `mode` (spec §3.2: NXE with PAE or IA-32e). */
export function xdOf(mode: PagingMode, level: LevelName, value: bigint): boolean {
  if (!mode.nxe || (mode.kind === "pae" && level === "PDPT")) return false;
  return (value & PTE_XD) !== 0n;
}

/** The starting point of a (partial) walk: which level, which table, and the levels above. */
export interface WalkStart {
  readonly levelIndex: number;
  readonly tableBase: bigint;
  readonly above: readonly TraceEntry[];
}

/** The access with the mode's address width applied, for building results. */
function faultAt(
  ctx: WalkContext,
  access: Access,
  la: bigint,
  reason: FaultReason,
  pkFault: boolean,
  level: LevelName | null,
  path: readonly TraceEntry[],
): PageFault {
  const ec = pageFaultErrorCode(ctx.mode, ctx, access, reason, pkFault);
  return {
    kind: "pf",
    la,
    errorCode: ec.errorCode,
    alternatives: ec.alternatives,
    cr2: la,
    reason,
    level,
    path,
  };
}

/**
 * Completes a translation whose leaf is the last entry of `path`: combines rights, checks them
 * against the current controls, and lists the A/D writes (spec §3, §5.1).
 *
 * Entries from `memory` get A; the leaf gets D on a write when it came from memory or from a
 * snapshot with D=0 (spec §6.5 option (a): D is ORed into the entry's location).
 */
export function finishTranslation(
  ctx: WalkContext,
  access: Access,
  la: bigint,
  path: readonly TraceEntry[],
  leafBase: bigint,
  pageShift: PageShift,
): Translation | PageFault {
  const rights = combineRights(ctx, path);
  const verdict = checkRights(rights, ctx, access);
  const leaf = path[path.length - 1]!;
  if (verdict.violation || verdict.pkFault) {
    return faultAt(ctx, access, la, "rights", verdict.pkFault, leaf.level, path);
  }
  const bytes = ctx.mode.entryBytes;
  const writes: AdWrite[] = [];
  for (const e of path) {
    if (e.source === "memory" && (e.value & PTE_A) === 0n) {
      writes.push({ addr: e.addr, bytes, bit: "A", mask: PTE_A });
    }
  }
  if (access.kind === "write" && leaf.source !== "register" && (leaf.value & PTE_D) === 0n) {
    writes.push({ addr: leaf.addr, bytes, bit: "D", mask: PTE_D });
  }
  return {
    kind: "ok",
    la,
    pa: leafBase | (la & bits(pageShift - 1, 0)),
    pageShift,
    path,
    rights,
    global: ctx.pge && (leaf.value & PTE_G) !== 0n,
    writes,
  };
}

/** Walks from `start` down to a leaf or a fault, reading every entry through `read`. */
export function walkFrom(
  ctx: WalkContext,
  access: Access,
  la: bigint,
  read: EntryReader,
  start: WalkStart,
): Translation | PageFault {
  const mode = ctx.mode;
  const path: TraceEntry[] = [...start.above];
  let base = start.tableBase;
  for (let i = start.levelIndex; i < mode.levels.length; i++) {
    const level = mode.levels[i]!;
    const addr = base + levelIndex(level, la) * BigInt(mode.entryBytes);
    const fromRegister = mode.kind === "pae" && level.name === "PDPT" && ctx.pdpteRegs !== null;
    const value = fromRegister
      ? ctx.pdpteRegs![Number(levelIndex(level, la))]!
      : read(addr, mode.entryBytes);
    const entry: TraceEntry = {
      level: level.name,
      addr,
      value,
      source: fromRegister ? "register" : "memory",
      xd: xdOf(mode, level.name, value),
    };
    path.push(entry);
    const meaning = interpretEntry(mode, level, value);
    if (!meaning.present) return faultAt(ctx, access, la, "not-present", false, level.name, path);
    if (meaning.reservedSet !== 0n) {
      return faultAt(ctx, access, la, "reserved", false, level.name, path);
    }
    if (meaning.leaf) {
      return finishTranslation(ctx, access, la, path, meaning.base, meaning.pageShift);
    }
    base = meaning.base;
  }
  throw new Error(`Cannot walk: mode ${mode.kind} ended without a leaf`);
}

/**
 * Translates one access on current memory: the fresh walk, which is always one of the allowed
 * outcomes (spec §6.5).
 *
 * @example A fresh 4-level walk sets A at every level
 * ```ts
 * import { walk } from "./walk.ts";
 * import { pagingModeOf } from "./paging_mode.ts";
 * import { equal } from "node:assert/strict";
 * const cpu = { maxPhyAddr: 46, vendor: "intel" as const, features: { nx: true, pse: true,
 *   pse36: true, gbPages: true, smep: true, smap: true, pku: true, la57: true, pcid: true } };
 * const mode = pagingModeOf(cpu, { pg: true, pae: true, lme: true, la57: false, pse: false, nxe: true });
 * // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> frame 0x5000, all entries index 0.
 * const mem = new Map([[0x1000n, 0x2007n], [0x2000n, 0x3007n], [0x3000n, 0x4007n], [0x4000n, 0x5007n]]);
 * const r = walk({ mode, root: 0x1000n, pdpteRegs: null, pge: false, wp: true, smep: false,
 *   smap: false, rflagsAc: false, pke: false, pks: false, pkru: 0, pkrs: 0 },
 *   { la: 0x123n, kind: "read", cpl: 0, implicitSupervisor: false }, (a) => mem.get(a) ?? 0n);
 * equal(r.kind === "ok" && r.pa, 0x5123n);
 * equal(r.kind === "ok" && r.writes.length, 4);
 * ```
 */
export function walk(ctx: WalkContext, access: Access, read: EntryReader): WalkResult {
  const mode = ctx.mode;
  const noncanonical = canonicalFault(mode, access);
  if (noncanonical === "gp") return { kind: "gp", la: access.la };
  if (noncanonical === "ss") return { kind: "ss", la: access.la };
  const la = effectiveLa(mode, access.la);
  if (mode.kind === "disabled") {
    return {
      kind: "ok",
      la,
      pa: la,
      pageShift: 12,
      path: [],
      rights: { w: true, u: true, xd: false, pkey: 0 },
      global: false,
      writes: [],
    };
  }
  return walkFrom(ctx, access, la, read, { levelIndex: 0, tableBase: ctx.root, above: [] });
}

/** The access kinds, for enumeration in tests and tools. */
export const ACCESS_KINDS: readonly AccessKind[] = ["read", "write", "fetch"];
