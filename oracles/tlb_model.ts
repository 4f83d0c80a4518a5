/**
 * The TLB model: for one access, the set of outcomes the architecture allows given everything
 * the program did since the relevant invalidations (spec §6.5, the snapshot-chain model).
 *
 * A candidate takes the top levels of the walk from memory as it was at earlier times (cached in
 * a paging-structure cache or, for the leaf, in the TLB) and the rest from memory now. The fresh
 * walk is always candidate #1. Faults can only come from fresh levels or from rights.
 *
 * Refinement of spec §6.5 (stricter, still sound when every memory effect is observed): a cached
 * level must have A=1 in memory at its snapshot time, because the processor sets A before it
 * caches an entry and that write is itself observable. Exceptions: PAE PDPTE registers (no A),
 * and page tables in ROM, where the A write is dropped.
 *
 * Within a step the access's A/D writes come before its data store, so an entry's value from
 * before the store (`beforeStore` pieces of guest memory) may pair with A bits the same step set
 * in the entries above it: a speculative walk between the two may cache that chain.
 *
 * @module
 */
import type { CpuModel } from "../src/model/case.ts";
import { bits, PTE_A, PTE_G, PTE_P } from "./bits.ts";
import { interpretEntry } from "./entry_format.ts";
import type { GuestMemory } from "./guest_memory.ts";
import type { Invalidation, VcpuControl } from "./control_state.ts";
import { modeOf, pcidOf, rootOf, walkContextOf } from "./control_state.ts";
import { isIa32e, levelIndex, type PagingMode } from "./paging_mode.ts";
import {
  type Access,
  effectiveLa,
  finishTranslation,
  type PageFault,
  type TraceEntry,
  type Translation,
  walk,
  walkFrom,
  type WalkResult,
  xdOf,
} from "./walk.ts";

/** An invalidation event with the step that caused it. */
export type TimedInvalidation = Invalidation & { readonly t: number };

/**
 * A translation the processor cached at the end of a completed access: its own walk's TLB fill,
 * with the entries as they were right after that access's A/D writes. Memory snapshots cannot
 * show that state when the same step's store then rewrote an entry of its own walk (a store to
 * its own PTE): the history keeps one value per step.
 */
export interface TlbFill {
  /** The step of the access. */
  readonly t: number;
  readonly pcid: number;
  /** The effective linear address of the access. */
  readonly la: bigint;
  readonly modeKind: PagingMode["kind"];
  /** The walk's entries, A/D applied, as snapshots of step `t`. */
  readonly path: readonly TraceEntry[];
  readonly base: bigint;
  readonly pageShift: 12 | 21 | 22 | 30;
  readonly global: boolean;
}

/** A vCPU's history: its control states over time and its invalidation log. */
export interface VcpuHistory {
  /** `[from, state]`, ascending: the state after step `from` until the next record. */
  readonly controls: readonly (readonly [number, VcpuControl])[];
  readonly invalidations: readonly TimedInvalidation[];
  /** The TLB fills of its completed accesses, ascending. */
  readonly fills?: readonly TlbFill[];
}

/** The TLB fill a completed access leaves: its translation with the A/D bits it set. */
export function tlbFillOf(t: number, pcid: number, mode: PagingMode, tr: Translation): TlbFill {
  const path = tr.path.map((e) => {
    if (e.source === "register") return e;
    let value = e.value;
    for (const w of tr.writes) if (w.addr === e.addr) value |= w.mask;
    return { ...e, value, source: "snapshot" as const, snapshot: t };
  });
  const leaf = path[path.length - 1]!;
  const level = mode.kind === "disabled"
    ? undefined
    : mode.levels.find((l) => l.name === leaf.level);
  const meaning = level ? interpretEntry(mode, level, leaf.value) : { present: false as const };
  const base = meaning.present && meaning.leaf
    ? meaning.base
    : tr.pa & ~((1n << BigInt(tr.pageShift)) - 1n);
  return {
    t,
    pcid,
    la: tr.la,
    modeKind: mode.kind,
    path,
    base,
    pageShift: tr.pageShift,
    global: tr.global,
  };
}

/** One allowed result of an access and how a processor could have produced it. */
export interface AccessCandidate {
  readonly via: "walk" | "tlb" | "psc";
  readonly result: WalkResult;
}

/** A stretch of time with one interpretation of the paging structures. */
interface ControlSegment {
  readonly from: number;
  readonly to: number;
  readonly ctl: VcpuControl;
  readonly mode: PagingMode;
  readonly pcid: number;
}

function interpretationKey(cpu: CpuModel, ctl: VcpuControl): string {
  const mode = modeOf(cpu, ctl);
  return [
    mode.kind,
    pcidOf(ctl),
    rootOf(mode, ctl.cr3),
    ctl.pdpteRegs?.join(","),
    ctl.cr4.pse,
    ctl.efer.nxe,
    ctl.cr4.pge,
  ].join("|");
}

/** The control history cut into segments where the paging structures read the same way. */
function controlSegments(cpu: CpuModel, h: VcpuHistory, until: number): ControlSegment[] {
  const out: ControlSegment[] = [];
  h.controls.forEach(([from, ctl], i) => {
    if (from > until) return;
    const next = h.controls[i + 1];
    const to = Math.min(until, next ? next[0] - 1 : until);
    if (to < from) return;
    const last = out[out.length - 1];
    if (
      last && last.to + 1 === from &&
      interpretationKey(cpu, last.ctl) === interpretationKey(cpu, ctl)
    ) {
      out[out.length - 1] = { ...last, to };
    } else out.push({ from, to, ctl, mode: modeOf(cpu, ctl), pcid: pcidOf(ctl) });
  });
  return out;
}

/** Same linear-address prefix down to (and including) the level whose lowest bit is `shift`. */
function samePrefix(mode: PagingMode, a: bigint, b: bigint, shift: number): boolean {
  const width = BigInt(mode.laBits);
  const mask = bits(Number(width) - 1, shift);
  return (a & mask) === (b & mask);
}

function killsPsc(
  mode: PagingMode,
  e: TimedInvalidation,
  shift: number,
  la: bigint,
  pcid: number,
): boolean {
  switch (e.kind) {
    case "all":
      return true;
    case "pcid":
    case "invlpg":
      return e.pcid === pcid;
    case "pf":
      return e.pcid === pcid && samePrefix(mode, e.la, la, shift);
  }
}

function killsTlb(
  mode: PagingMode,
  e: TimedInvalidation,
  la: bigint,
  pcid: number,
  global: boolean,
  pageShift: number,
): boolean {
  switch (e.kind) {
    case "all":
      return true;
    case "pcid":
      return !global && e.pcid === pcid;
    case "invlpg":
      // Any cached translation whose page, at its own size, contains the operand.
      return (global || e.pcid === pcid) && samePrefix(mode, e.la, la, pageShift);
    case "pf":
      // A fractured 4-KiB piece of a large page need not cover the faulting address.
      return (global || e.pcid === pcid) && samePrefix(mode, e.la, la, 12);
  }
}

/** The time of the latest event at or before `t` that matches, or -1. */
function lastEvent(h: VcpuHistory, t: number, kills: (e: TimedInvalidation) => boolean): number {
  let last = -1;
  for (const e of h.invalidations) if (e.t <= t && kills(e)) last = e.t;
  return last;
}

/** The time of the first event after `t` that matches, or Infinity. */
function firstEventAfter(
  h: VcpuHistory,
  t: number,
  kills: (e: TimedInvalidation) => boolean,
): number {
  for (const e of h.invalidations) if (e.t > t && kills(e)) return e.t;
  return Infinity;
}

function outcomeKey(c: AccessCandidate): string {
  const r = c.result;
  if (r.kind === "ok") return `ok|${r.pa}|${r.writes.map((w) => `${w.addr}:${w.bit}`).join(",")}`;
  if (r.kind === "pf") return `pf|${r.errorCode}|${r.cr2}`;
  return r.kind;
}

/**
 * Every outcome the architecture allows for `access` on a vCPU whose current control state is
 * `now` and whose history is `h`, with memory `mem` (whose clock is at the current step).
 *
 * The fresh walk comes first; duplicates (same observation and same A/D writes) are dropped.
 */
export function accessCandidates(
  cpu: CpuModel,
  mem: GuestMemory,
  h: VcpuHistory,
  now: VcpuControl,
  access: Access,
  pdpteSource: "registers" | "memory" = "registers",
): AccessCandidate[] {
  const ctx = walkContextOf(cpu, now, pdpteSource);
  const readNow = (addr: bigint, bytes: 4 | 8) => mem.read(addr, bytes);
  const fresh: AccessCandidate = { via: "walk", result: walk(ctx, access, readNow) };
  const T = mem.now - 1; // the latest completed state a cached entry can come from
  if (
    fresh.result.kind === "gp" || fresh.result.kind === "ss" || ctx.mode.kind === "disabled" ||
    T < 0
  ) {
    return [fresh];
  }
  const mode = ctx.mode;
  const la = effectiveLa(mode, access.la);
  const p = pcidOf(now);
  const segments = controlSegments(cpu, h, T).filter((s) => s.mode.kind === mode.kind);
  const out = new Map<string, AccessCandidate>([[outcomeKey(fresh), fresh]]);
  const emit = (via: "tlb" | "psc", result: Translation | PageFault) => {
    const c: AccessCandidate = { via, result };
    const key = outcomeKey(c);
    if (!out.has(key)) out.set(key, c);
  };
  const startIndex = mode.kind === "pae" ? 1 : 0; // PAE chains start below the PDPTE registers

  /** Evaluates a full-TLB-hit chain, with both XD interpretations when NXE changed since. */
  const tlbHit = (path: TraceEntry[], base: bigint, pageShift: 12 | 21 | 22 | 30) => {
    const leaf = path[path.length - 1]!;
    const variants = [path];
    const current = path.map((e) =>
      e.source === "snapshot" ? { ...e, xd: xdOf(mode, e.level, e.value) } : e
    );
    if (current.some((e, i) => e.xd !== path[i]!.xd)) variants.push(current);
    for (const v of variants) {
      const r = finishTranslation(ctx, access, la, v, base, pageShift);
      // Spec §6.5 (a): D is ORed into the entry's location; only while it still holds a
      // present entry (otherwise only the fresh walk, option (b), remains).
      if (
        r.kind === "ok" && r.writes.some((w) => w.bit === "D") &&
        (mem.read(leaf.addr, mode.entryBytes) & PTE_P) === 0n
      ) {
        continue;
      }
      emit("tlb", r);
    }
  };

  const descend = (
    q: number,
    i: number,
    tableBase: bigint,
    lo: number,
    hi: number,
    above: TraceEntry[],
  ) => {
    const level = mode.levels[i]!;
    const addr = tableBase + levelIndex(level, la) * BigInt(mode.entryBytes);
    const pscKills = (e: TimedInvalidation) => killsPsc(mode, e, level.shift, la, q);
    for (const seg of segments) {
      if (seg.pcid !== q || seg.to < lo || seg.from > hi) continue;
      const from = Math.max(lo, seg.from);
      const to = Math.min(hi, seg.to);
      for (const piece of mem.segments(addr, mode.entryBytes, from, to)) {
        // A value from before its step's store cannot pair with an entry of the same word
        // above it: that entry's value at this step may be the store's.
        if (piece.beforeStore && above.some((e) => (e.addr & ~7n) === (addr & ~7n))) continue;
        const meaning = interpretEntry(seg.mode, level, piece.value);
        if (!meaning.present || meaning.reservedSet !== 0n) continue;
        const rom = mem.slotOf(addr >> 12n, piece.to)?.readOnly === true;
        if ((piece.value & PTE_A) === 0n && !rom) continue; // never cached without A (see above)
        const entry: TraceEntry = {
          level: level.name,
          addr,
          value: piece.value,
          source: "snapshot",
          snapshot: piece.to,
          xd: xdOf(seg.mode, level.name, piece.value),
        };
        const path = [...above, entry];
        if (meaning.leaf) {
          const global = seg.ctl.cr4.pge && (piece.value & PTE_G) !== 0n;
          if (q !== p && !global) continue; // only global entries cross PCIDs
          const tlbKills = (e: TimedInvalidation) =>
            killsTlb(mode, e, la, q, global, meaning.pageShift);
          if (piece.to >= lastEvent(h, T, tlbKills)) tlbHit(path, meaning.base, meaning.pageShift);
          continue;
        }
        if (q === p && piece.to >= lastEvent(h, T, pscKills)) {
          emit(
            "psc",
            walkFrom(ctx, access, la, readNow, {
              levelIndex: i + 1,
              tableBase: meaning.base,
              above: path,
            }),
          );
        }
        const nextHi = Math.min(T, firstEventAfter(h, piece.to, pscKills) - 1);
        if (i + 1 < mode.levels.length && nextHi >= piece.from) {
          descend(q, i + 1, meaning.base, piece.from, nextHi, path);
        }
      }
    }
  };

  // The access's own fills (see TlbFill): the translation as the processor cached it.
  for (const f of h.fills ?? []) {
    if (f.t > T || f.modeKind !== mode.kind || (f.pcid !== p && !f.global)) continue;
    if (la >> BigInt(f.pageShift) !== f.la >> BigInt(f.pageShift)) continue;
    const tlbKills = (e: TimedInvalidation) => killsTlb(mode, e, la, f.pcid, f.global, f.pageShift);
    if (f.t >= lastEvent(h, T, tlbKills)) tlbHit([...f.path], f.base, f.pageShift);
  }

  const pcids = isIa32e(mode) ? [...new Set(segments.map((s) => s.pcid))] : [0];
  for (const q of pcids) {
    for (const seg of segments) {
      if (seg.pcid !== q) continue;
      if (mode.kind === "pae") {
        const regs = seg.ctl.pdpteRegs;
        const pdptLevel = mode.levels[0]!;
        const index = levelIndex(pdptLevel, la);
        const reg = regs?.[Number(index)];
        if (reg === undefined || (reg & PTE_P) === 0n) continue;
        const register: TraceEntry = {
          level: "PDPT",
          addr: rootOf(seg.mode, seg.ctl.cr3) + index * 8n,
          value: reg,
          source: "register",
          xd: false,
        };
        descend(q, startIndex, reg & bits(mode.maxPhyAddr - 1, 12), seg.from, seg.to, [register]);
      } else {
        descend(q, startIndex, rootOf(seg.mode, seg.ctl.cr3), seg.from, seg.to, []);
      }
    }
  }
  return [...out.values()];
}
