/**
 * Turning a sweep combination into a case: the fixed layout of its mode with its PDE and PTE,
 * one memslot, data words at both frames, the control state, and the program (its one or two
 * accesses). Each case stands alone: nothing carries over from one combination to the next.
 *
 * The case is built decoded (no zod parse on the hot path); it is exactly what `Case.parse`
 * gives for its own encoding (`tests/sweep/sweep_test.ts` checks that).
 *
 * @module
 */
import type { Case } from "../model/case.ts";
import type { Op } from "../model/op.ts";
import type { SweepCombination } from "./sweep_combinations.ts";
import type { PkeState } from "./sweep_controls.ts";
import { ADDRESS_MASK } from "./sweep_entries.ts";
import { LEAF_KEY, SWEEP_MAXPHYADDR, type SweepLayout, sweepLayout } from "./sweep_layout.ts";

/** The generator name cases carry in `meta.found.generator`. */
export const SWEEP_GENERATOR = "sweep-v1";

/** Options of {@link sweepCase}. */
export interface SweepCaseOptions {
  /** Injected SUT bugs (`sut.inject`). */
  readonly inject?: readonly string[];
}

/** Data at the accessed word of each frame, so a load from the wrong page shows. */
const DATA_4K = 0xd47a_0000_0000_4001n;
const DATA_2M = 0xd47a_0000_0020_0001n;
/** The value of the first and of the second store. */
const STORE_VALUES = [0x5707_e000_0000_0001n, 0x5707_e000_0000_0002n] as const;
/** The PTE left in the page table when the walk does not reach it (rule E2): A=0. */
const UNUSED_PTE_FLAGS = 0x7n;

const layouts = new Map<string, SweepLayout>();
function layoutOf(mode: SweepCombination["mode"]): SweepLayout {
  let l = layouts.get(mode);
  if (!l) layouts.set(mode, l = sweepLayout(mode));
  return l;
}

/** PKRU: the leaf's key gets (AD, WD), every other key the opposite; PKE=0: every key denied. */
function pkruOf(pke: PkeState | null): number {
  if (pke === null) return 0xffff_ffff;
  let pkru = 0;
  for (let key = 0; key < 16; key++) {
    const ad = key === LEAF_KEY ? pke.ad : !pke.ad;
    const wd = key === LEAF_KEY ? pke.wd : !pke.wd;
    pkru |= ((ad ? 1 : 0) | (wd ? 2 : 0)) << (2 * key);
  }
  return pkru >>> 0;
}

/** Guest memory as gfn -> word index -> value. */
class Memory {
  readonly #pages = new Map<bigint, Record<string, bigint>>();
  set(addr: bigint, value: bigint): void {
    const gfn = addr >> 12n;
    let page = this.#pages.get(gfn);
    if (!page) this.#pages.set(gfn, page = {});
    page[String(Number((addr & 0xfffn) >> 3n))] = value;
  }
  pages(): Case["memory"] {
    return [...this.#pages].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([gfn, words]) => ({
      gfn,
      words,
    }));
  }
}

/**
 * The case of one combination.
 *
 * @example Usage
 * ```ts
 * import { sweepCase } from "./sweep_case.ts";
 * import { sweepCombinations } from "./sweep_combinations.ts";
 * import { equal } from "node:assert/strict";
 * const c = sweepCase(sweepCombinations("ia32e5").next().value!);
 * equal(c.control.cr4.la57, true);
 * equal(c.program.length, 1);
 * ```
 */
export function sweepCase(combination: SweepCombination, options: SweepCaseOptions = {}): Case {
  const k = combination;
  const l = layoutOf(k.mode);
  const mem = new Memory();
  for (const e of l.fixed) mem.set(e.addr, e.value);
  mem.set(l.pdeAddr, k.pde.value);
  const offset = l.la & 0xfffn;
  if (k.pte === null) {
    mem.set(l.ptBase | l.ptIndex << 3n, l.frame4k | UNUSED_PTE_FLAGS);
  } else {
    mem.set((k.pde.value & ADDRESS_MASK) | l.ptIndex << 3n, k.pte.value);
  }
  mem.set(l.frame4k | offset, DATA_4K);
  mem.set(l.frame2m | l.ptIndex << 12n | offset, DATA_2M);
  const program: Op[] = k.accesses.map((a, i) => {
    const base = { vcpu: 0, la: l.la, cpl: a.cpl };
    if (a.kind === "read") return { op: "load", ...base };
    if (a.kind === "fetch") return { op: "fetch", ...base };
    return { op: "store", ...base, value: STORE_VALUES[i]! };
  });
  return {
    format: "shadow-mmu-case",
    version: 1,
    cpu: {
      maxPhyAddr: SWEEP_MAXPHYADDR,
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
    },
    control: {
      cr0: { pg: true, wp: k.wp },
      cr3: l.cr3,
      cr4: {
        pse: false,
        pae: true,
        pge: false,
        smep: k.smep,
        smap: k.smap !== "off",
        pke: k.pke !== null,
        la57: l.la57,
        pcide: false,
      },
      efer: { lme: l.lme, nxe: k.nxe },
      pkru: pkruOf(k.pke),
      rflagsAc: k.smap === "ac1",
    },
    vcpus: 1,
    memory: mem.pages(),
    memslots: [{ slot: 0, baseGfn: l.slotBase, npages: l.slotPages, readOnly: false }],
    program,
    sut: {
      features: { prefetch: true, unsync: true, fastPageFault: true, splitSpte: false },
      inject: [...(options.inject ?? [])],
    },
    meta: {
      title: k.name,
      found: { by: "sweep", generator: SWEEP_GENERATOR },
      tags: ["sweep", `mode:${k.mode}`],
    },
  };
}
