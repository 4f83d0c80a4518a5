/**
 * The fixed guest of the exhaustive sweep, per paging mode: one linear address, the tables that
 * translate it, its 4-KiB and 2-MiB frames, one memslot, and the extra bits the sweep tries in
 * the PDE and the PTE. Only the PDE and the PTE vary; every level above them is a fixed,
 * present, writable, user, accessed entry (a PAE PDPTE is just present: it has no rights).
 *
 * ```
 * ia32e5:  PML5[0x1d6] -> PML4[0x0a3] -> PDPT[0x0c5] -> PD[0x15e] -> PT[0x07b] -> 4 KiB + 0x9d8
 * ia32e4:                 PML4[0x1a3] -> PDPT[0x0c5] -> PD[0x15e] -> PT[0x07b] -> 4 KiB + 0x9d8
 * pae:                                   PDPTE[2]    -> PD[0x15e] -> PT[0x07b] -> 4 KiB + 0x9d8
 *                                                       PD[0x15e] (PS=1)       -> 2 MiB + 0x7b9d8
 * ```
 *
 * The top index has its high bit set, so the address is in the upper half (sign-extended from
 * bit 47 or 56; bit 31 for PAE). The memslot starts at a high guest frame for the IA-32e modes
 * (physical bit 44 set, below MAXPHYADDR 46), so a truncated guest-physical address shows; PAE
 * keeps it below 4 GiB because CR3 is 32 bits there. Bit 45 (MAXPHYADDR - 1) is a valid address
 * bit outside the memslot: an entry with it set points at MMIO.
 *
 * Bit positions here are the sweep's own, written from `x86-paging-spec.md` §1.2–§1.4 and §2.1
 * (the independence rule: nothing is shared with the oracle or the SUT).
 *
 * @module
 */

/** The paging modes the sweep enumerates. */
export type SweepMode = "ia32e4" | "ia32e5" | "pae";

/** Every sweep mode, in the order the command runs them. */
export const SWEEP_MODES: readonly SweepMode[] = ["ia32e4", "ia32e5", "pae"];

/** MAXPHYADDR of the sweep's CPU: bit 46 is the lowest reserved address bit. */
export const SWEEP_MAXPHYADDR = 46;

/** What an extra bit is in the entry that carries it (spec §1.3 entry layout, §2.1). */
export type ExtraKind = "rsvd" | "addr" | "ign" | "pat";

/** One bit the sweep may set on top of an entry's flags. */
export interface ExtraBit {
  readonly bit: number;
  readonly kind: ExtraKind;
}

/** One fixed upper-level entry: where it lives and its value. */
export interface FixedEntry {
  /** `pml5e`, `pml4e` or `pdpte`. */
  readonly level: string;
  readonly addr: bigint;
  readonly value: bigint;
}

/** The fixed guest of one mode. */
export interface SweepLayout {
  readonly mode: SweepMode;
  /** CR3 (the root table; for PAE the 32-byte aligned PDPT). */
  readonly cr3: bigint;
  /** The fixed entries above the PDE, top-down. */
  readonly fixed: readonly FixedEntry[];
  /** Where the PDE lives. */
  readonly pdeAddr: bigint;
  /** The page table the PDE points at (when it is not a 2-MiB leaf). */
  readonly ptBase: bigint;
  /** The PT index of the linear address (bits 20:12). */
  readonly ptIndex: bigint;
  /** The 4-KiB frame of the PTE and the 2-MiB frame of a large PDE. */
  readonly frame4k: bigint;
  readonly frame2m: bigint;
  /** The linear address every access uses. */
  readonly la: bigint;
  /** The memslot: `[slotBase, slotBase + slotPages)` in guest frames. */
  readonly slotBase: bigint;
  readonly slotPages: number;
  /** IA-32e: bits 62:59 of a leaf are its protection key (ignored with CR4.PKE=0). */
  readonly keys: boolean;
  /** Extra bits tried in a PTE or a non-leaf PDE, and in a 2-MiB PDE. */
  readonly extraSmall: readonly ExtraBit[];
  readonly extraLarge: readonly ExtraBit[];
  /** CR4.LA57 and EFER.LME of the mode. */
  readonly la57: boolean;
  readonly lme: boolean;
}

/** The leaf's protection key, and the different key a non-leaf PDE carries (must be ignored). */
export const LEAF_KEY = 11;
/** The key bits of a non-leaf PDE: ignored there, so reading the key from it shows. */
export const NONLEAF_PDE_KEY = 6;

const PAGE_OFFSET = 0x9d8n;
const PT_INDEX = 0x07bn;
const PD_INDEX = 0x15en;

/** Entry flags of a fixed upper-level IA-32e entry: present, writable, user, accessed. */
const UPPER_FLAGS = 0x27n;

/** Extra bits of IA-32e entries (spec §1.3, §2.1 with M = 46). */
const IA32E_SMALL: readonly ExtraBit[] = [
  { bit: 45, kind: "addr" },
  { bit: 46, kind: "rsvd" },
  { bit: 51, kind: "rsvd" },
  { bit: 52, kind: "ign" },
];
const IA32E_LARGE: readonly ExtraBit[] = [
  { bit: 12, kind: "pat" },
  { bit: 13, kind: "rsvd" },
  { bit: 20, kind: "rsvd" },
  ...IA32E_SMALL,
];
/** Extra bits of PAE PDEs and PTEs: bits 62:M are reserved there, 11:9 ignored (spec §1.2). */
const PAE_SMALL: readonly ExtraBit[] = [
  { bit: 11, kind: "ign" },
  { bit: 45, kind: "addr" },
  { bit: 46, kind: "rsvd" },
  { bit: 52, kind: "rsvd" },
  { bit: 62, kind: "rsvd" },
];
const PAE_LARGE: readonly ExtraBit[] = [
  { bit: 12, kind: "pat" },
  { bit: 13, kind: "rsvd" },
  { bit: 20, kind: "rsvd" },
  ...PAE_SMALL,
];

/** Sign-extends a linear address from bit `top` to 64 bits. */
function canonical(la: bigint, top: number): bigint {
  const sign = 1n << BigInt(top);
  return (la & sign) === 0n ? la : la | (((1n << 64n) - 1n) ^ ((sign << 1n) - 1n));
}

/**
 * The fixed guest of `mode`.
 *
 * @example Usage
 * ```ts
 * import { sweepLayout } from "./sweep_layout.ts";
 * import { equal } from "node:assert/strict";
 * const l = sweepLayout("ia32e4");
 * equal(l.la, 0xffff_d1b1_6bc7_b9d8n);
 * equal(l.fixed.map((e) => e.level).join(","), "pml4e,pdpte");
 * ```
 */
export function sweepLayout(mode: SweepMode): SweepLayout {
  if (mode === "pae") {
    // Below 4 GiB (CR3 is 32 bits with PAE paging), 2-MiB aligned.
    const base = 0x7_3400n;
    const pa = (gfn: bigint) => (base + gfn) << 12n;
    const pdptIndex = 2n;
    return {
      mode,
      cr3: pa(1n),
      fixed: [{ level: "pdpte", addr: pa(1n) | pdptIndex << 3n, value: pa(2n) | 1n }],
      pdeAddr: pa(2n) | PD_INDEX << 3n,
      ptBase: pa(3n),
      ptIndex: PT_INDEX,
      frame4k: pa(0x10n),
      frame2m: pa(0x200n),
      la: pdptIndex << 30n | PD_INDEX << 21n | PT_INDEX << 12n | PAGE_OFFSET,
      slotBase: base,
      slotPages: 0x400,
      keys: false,
      extraSmall: PAE_SMALL,
      extraLarge: PAE_LARGE,
      la57: false,
      lme: false,
    };
  }
  // Physical bit 44 set, bit 45 clear: a valid high address; 2-MiB aligned.
  const base = 0x1_3456_7000n;
  const pa = (gfn: bigint) => (base + gfn) << 12n;
  const five = mode === "ia32e5";
  const upper = five
    ? [{ level: "pml5e", index: 0x1d6n }, { level: "pml4e", index: 0x0a3n }]
    : [{ level: "pml4e", index: 0x1a3n }];
  const all = [...upper, { level: "pdpte", index: 0x0c5n }];
  const fixed = all.map((u, i) => ({
    level: u.level,
    addr: pa(BigInt(i + 1)) | u.index << 3n,
    value: pa(BigInt(i + 2)) | UPPER_FLAGS,
  }));
  const pd = BigInt(all.length + 1);
  let la = PD_INDEX << 21n | PT_INDEX << 12n | PAGE_OFFSET;
  all.forEach((u, i) => (la |= u.index << BigInt(30 + 9 * (all.length - 1 - i))));
  return {
    mode,
    cr3: pa(1n),
    fixed,
    pdeAddr: pa(pd) | PD_INDEX << 3n,
    ptBase: pa(pd + 1n),
    ptIndex: PT_INDEX,
    frame4k: pa(0x10n),
    frame2m: pa(0x200n),
    la: canonical(la, five ? 56 : 47),
    slotBase: base,
    slotPages: 0x400,
    keys: true,
    extraSmall: IA32E_SMALL,
    extraLarge: IA32E_LARGE,
    la57: five,
    lme: true,
  };
}
