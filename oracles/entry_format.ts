/**
 * How one paging-structure entry is read in each mode: present, reserved bits, leaf or not, and
 * the address it yields (SDM 3A §4.3–§4.5, spec §1 and §2.1).
 *
 * @module
 */
import { bit, bits, type PageShift, PTE_P, PTE_PS } from "./bits.ts";
import type { Level, PagingMode } from "./paging_mode.ts";

/** What an entry means at a given level and mode. */
export type EntryMeaning =
  | { readonly present: false }
  | {
    readonly present: true;
    /** The reserved bits that are set (0n when the entry is valid). */
    readonly reservedSet: bigint;
    /** True when the entry maps a page (a PTE, or a PDE/PDPTE with PS=1). */
    readonly leaf: boolean;
    /** For a leaf, the size of the page it maps. */
    readonly pageShift: PageShift;
    /** For a leaf, the page frame base; otherwise the next table's base. */
    readonly base: bigint;
  };

/** The XD bit as a reserved bit when EFER.NXE is not in effect (spec §2.1 "NX"). */
function nxReserved(mode: PagingMode): bigint {
  return mode.nxe ? 0n : bit(63);
}

/**
 * The reserved-bit mask for a present PAE PDPTE, checked when the PDPTE registers are loaded
 * (spec §1.2): bits 63:M, 8:5 and 2:1.
 */
export function paePdpteReservedMask(maxPhyAddr: number): bigint {
  return bits(63, maxPhyAddr) | bits(8, 5) | bits(2, 1);
}

/** True when PS (bit 7) makes this entry a leaf in this mode and level. */
function psMakesLeaf(mode: PagingMode, level: Level, value: bigint): boolean {
  if ((value & PTE_PS) === 0n) return false;
  switch (mode.kind) {
    case "legacy32":
      return level.name === "PD" && mode.pse; // with CR4.PSE=0 bit 7 is ignored
    case "pae":
      return level.name === "PD"; // PAE honours PS whatever CR4.PSE says
    case "ia32e4":
    case "ia32e5":
      return level.name === "PD" || level.name === "PDPT"; // PML4E/PML5E bit 7 is reserved
    case "disabled":
      return false;
  }
}

/** The reserved-bit mask of a present entry (spec §2.1), given whether it is a large leaf. */
function reservedMask(mode: PagingMode, level: Level, largeLeaf: boolean): bigint {
  const m = mode.maxPhyAddr;
  switch (mode.kind) {
    case "disabled":
      return 0n;
    case "legacy32":
      // Only a 4-MiB PDE has reserved bits: 21:(M'-19) (PAT is supported, so bit 12 is PAT).
      return largeLeaf ? bits(21, mode.pse36Width - 19) : 0n;
    case "pae": {
      if (level.name === "PDPT") return paePdpteReservedMask(m);
      const base = bits(62, m) | nxReserved(mode);
      return largeLeaf ? base | bits(20, 13) : base;
    }
    case "ia32e4":
    case "ia32e5": {
      const base = bits(51, m) | nxReserved(mode);
      switch (level.name) {
        case "PML5":
        case "PML4":
          return base | bit(7) | (mode.vendor === "amd" ? bit(8) : 0n);
        case "PDPT":
          if (!mode.gbPages) return base | bit(7);
          return largeLeaf ? base | bits(29, 13) : base;
        case "PD":
          return largeLeaf ? base | bits(20, 13) : base;
        case "PT":
          return base;
      }
    }
  }
}

/** Page frame (or table) base carried by an entry. */
function addressOf(mode: PagingMode, level: Level, value: bigint, leaf: boolean): bigint {
  if (mode.kind === "legacy32") {
    if (leaf && level.name === "PD") {
      // 4-MiB page: PA[31:22] from bits 31:22, PA[M'-1:32] from bits (M'-20):13 (spec §1.1).
      const high = (value >> 13n) & bits(mode.pse36Width - 33, 0);
      return (value & 0xffc0_0000n) | (high << 32n);
    }
    return value & 0xffff_f000n;
  }
  const low = leaf ? level.shift : 12;
  return value & bits(mode.maxPhyAddr - 1, low);
}

/**
 * Interprets one entry: present, which reserved bits are set, leaf or not, and its address.
 *
 * @example A 2-MiB PDE with bit 20 set has a reserved bit
 * ```ts
 * import { interpretEntry } from "./entry_format.ts";
 * import { pagingModeOf } from "./paging_mode.ts";
 * import { equal } from "node:assert/strict";
 * const cpu = { maxPhyAddr: 46, vendor: "intel" as const, features: { nx: true, pse: true,
 *   pse36: true, gbPages: true, smep: true, smap: true, pku: true, la57: true, pcid: true } };
 * const mode = pagingModeOf(cpu, { pg: true, pae: true, lme: true, la57: false, pse: false, nxe: true });
 * const pd = mode.levels[2]!;
 * const e = interpretEntry(mode, pd, 0x20_0000n | 0x80n | 0x100000n | 1n);
 * equal(e.present && e.reservedSet, 0x100000n);
 * ```
 */
export function interpretEntry(mode: PagingMode, level: Level, value: bigint): EntryMeaning {
  if ((value & PTE_P) === 0n) return { present: false };
  const large = psMakesLeaf(mode, level, value);
  const leaf = large || level.name === "PT";
  // A PS bit that is itself reserved (PML5E/PML4E, PDPTE without 1-GiB pages, PAE PDPTE) is
  // part of that level's mask, so the entry faults before its leaf-ness matters.
  const mask = reservedMask(mode, level, large);
  return {
    present: true,
    reservedSet: value & mask,
    leaf,
    pageShift: (leaf ? level.shift : 12) as PageShift,
    base: addressOf(mode, level, value, leaf),
  };
}
