/**
 * The paging-mode descriptor: everything the walker needs to know about the current mode, derived
 * once from the CPU model and the control registers (SDM 3A §4.1.1, spec §1.0).
 *
 * The descriptor always carries an explicit `kind` (QEMU's PG_MODE_PG lesson: "paging off" must
 * not be inferred from absent flags) and normalized flags that mean "in effect": NXE only with PAE
 * or IA-32e paging, PKE/PKS only in IA-32e mode.
 *
 * @module
 */
import type { CpuModel } from "../src/model/case.ts";

/** The paging modes of SDM 3A §4.1. */
export type PagingKind = "disabled" | "legacy32" | "pae" | "ia32e4" | "ia32e5";

/** SDM names of the paging-structure levels, top to bottom. */
export type LevelName = "PML5" | "PML4" | "PDPT" | "PD" | "PT";

/** One level of a walk. */
export interface Level {
  readonly name: LevelName;
  /** The lowest linear-address bit this level indexes. */
  readonly shift: number;
  /** How many linear-address bits index this level. */
  readonly indexBits: number;
}

/** The paging mode in effect. */
export interface PagingMode {
  readonly kind: PagingKind;
  /** Width of a linear address: 32, 48 or 57. */
  readonly laBits: number;
  /** Bytes per paging-structure entry: 4 (32-bit paging) or 8. */
  readonly entryBytes: 4 | 8;
  /** The levels walked, top first. PAE starts at its PDPTE registers. */
  readonly levels: readonly Level[];
  /** MAXPHYADDR. */
  readonly maxPhyAddr: number;
  readonly vendor: "intel" | "amd";
  /** CR4.PSE in effect (32-bit paging only; PAE and IA-32e ignore it). */
  readonly pse: boolean;
  /** M' of a 4-MiB PDE: min(M, 40) with PSE-36, else 32 (spec §1.1). */
  readonly pse36Width: number;
  /** XD is interpreted: EFER.NXE in PAE or IA-32e paging. */
  readonly nxe: boolean;
  /** 1-GiB pages supported. */
  readonly gbPages: boolean;
  /**
   * Where PAE PDPTEs come from: the PDPTE registers (Intel, and AMD without NPT), or guest memory
   * on every walk (AMD nested paging, spec §1.6).
   */
  readonly pdpteSource: "registers" | "memory";
}

/** The control-register bits that select and shape the paging mode. */
export interface ModeControls {
  pg: boolean;
  pae: boolean;
  lme: boolean;
  la57: boolean;
  pse: boolean;
  nxe: boolean;
}

const LEVEL: Record<LevelName, (indexBits: number) => Level> = {
  PML5: (n) => ({ name: "PML5", shift: 48, indexBits: n }),
  PML4: (n) => ({ name: "PML4", shift: 39, indexBits: n }),
  PDPT: (n) => ({ name: "PDPT", shift: 30, indexBits: n }),
  PD: (n) => ({ name: "PD", shift: 21, indexBits: n }),
  PT: (n) => ({ name: "PT", shift: 12, indexBits: n }),
};

/**
 * Selects the paging mode (spec §1.0 table) and normalizes its flags.
 *
 * @example 4-level paging
 * ```ts
 * import { pagingModeOf } from "./paging_mode.ts";
 * import { equal } from "node:assert/strict";
 * const cpu = { maxPhyAddr: 46, vendor: "intel" as const, features: { nx: true, pse: true,
 *   pse36: true, gbPages: true, smep: true, smap: true, pku: true, la57: true, pcid: true } };
 * const mode = pagingModeOf(cpu, { pg: true, pae: true, lme: true, la57: false, pse: false, nxe: true });
 * equal(mode.kind, "ia32e4");
 * equal(mode.levels.length, 4);
 * ```
 */
export function pagingModeOf(
  cpu: CpuModel,
  cr: ModeControls,
  options: { pdpteSource?: "registers" | "memory" } = {},
): PagingMode {
  const kind: PagingKind = !cr.pg
    ? "disabled"
    : !cr.pae
    ? "legacy32"
    : !cr.lme
    ? "pae"
    : cr.la57
    ? "ia32e5"
    : "ia32e4";
  const levels: Level[] = kind === "disabled"
    ? []
    : kind === "legacy32"
    ? [LEVEL.PD(10), LEVEL.PT(10)].map((l) => l.name === "PD" ? { ...l, shift: 22 } : l)
    : kind === "pae"
    ? [LEVEL.PDPT(2), LEVEL.PD(9), LEVEL.PT(9)]
    : kind === "ia32e4"
    ? [LEVEL.PML4(9), LEVEL.PDPT(9), LEVEL.PD(9), LEVEL.PT(9)]
    : [LEVEL.PML5(9), LEVEL.PML4(9), LEVEL.PDPT(9), LEVEL.PD(9), LEVEL.PT(9)];
  return Object.freeze({
    kind,
    laBits: kind === "ia32e4" ? 48 : kind === "ia32e5" ? 57 : 32,
    entryBytes: kind === "legacy32" ? 4 : 8,
    levels: Object.freeze(levels),
    maxPhyAddr: cpu.maxPhyAddr,
    vendor: cpu.vendor,
    pse: kind === "legacy32" && cr.pse,
    pse36Width: cpu.features.pse36 ? Math.min(cpu.maxPhyAddr, 40) : 32,
    nxe: cr.nxe && kind !== "disabled" && kind !== "legacy32",
    gbPages: cpu.features.gbPages,
    pdpteSource: options.pdpteSource ?? "registers",
  });
}

/** True in IA-32e (4- or 5-level) paging, where canonical checks, PCIDs and keys apply. */
export function isIa32e(mode: PagingMode): boolean {
  return mode.kind === "ia32e4" || mode.kind === "ia32e5";
}

/** The index of `la` into a table of `level`. */
export function levelIndex(level: Level, la: bigint): bigint {
  return (la >> BigInt(level.shift)) & ((1n << BigInt(level.indexBits)) - 1n);
}
