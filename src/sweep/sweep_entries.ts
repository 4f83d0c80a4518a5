/**
 * The entry dimension of the sweep: every legal (PDE, PTE) pair under one EFER.NXE value, after
 * the pruning rules E1–E6 listed in `sweep_combinations.ts` (kvm-unit-tests access.c's
 * `ac_test_legal`, plus the architectural facts that make some bits irrelevant).
 *
 * @module
 */
import { type ExtraBit, LEAF_KEY, NONLEAF_PDE_KEY, type SweepLayout } from "./sweep_layout.ts";

/** One value of an entry, with the name the combination shows for it. */
export interface EntryChoice {
  readonly value: bigint;
  /** The flags, as `P|W|U|A|D|XD|PS`; `0` and `~P` for the two not-present stand-ins. */
  readonly flags: string;
  /** The one extra bit set on top of the flags, if any. */
  readonly extra: ExtraBit | null;
}

/** A PDE and the PTE the walk reaches through it (null when it reaches none). */
export interface EntryPair {
  readonly pde: EntryChoice;
  readonly pte: EntryChoice | null;
  /**
   * The walk ends at a present leaf with no extra bit and U/S=1 at every level: a user page, the
   * only kind protection keys apply to (spec §3.3).
   */
  readonly userLeaf: boolean;
}

/** Entry flag bits (spec §1.3 entry layout) and their names, in name order. */
const FLAG_BITS = [
  ["P", 0n],
  ["W", 1n],
  ["U", 2n],
  ["A", 5n],
  ["D", 6n],
  ["XD", 63n],
  ["PS", 7n],
] as const;
type Flag = (typeof FLAG_BITS)[number][0];
const BIT: Record<Flag, bigint> = Object.fromEntries(
  FLAG_BITS.map(([name, n]) => [name, 1n << n]),
) as Record<Flag, bigint>;

/** Bits M-1:12 of an entry: the address of the next table or of the frame. */
export const ADDRESS_MASK = ((1n << 46n) - 1n) & ~0xfffn;

/** The two not-present stand-ins: every other bit is ignored when P=0 (spec §2.2). */
const NOT_PRESENT: readonly EntryChoice[] = [
  { value: 0n, flags: "0", extra: null },
  { value: ((1n << 64n) - 1n) ^ BIT.P, flags: "~P", extra: null },
];

/** The optional flags of a PTE and of a 2-MiB PDE; a non-leaf PDE leaves out D (rule E4). */
const LEAF_OPTIONAL: readonly Flag[] = ["W", "U", "A", "D", "XD"];
const TABLE_OPTIONAL: readonly Flag[] = ["W", "U", "A", "XD"];

function keyBits(key: number): bigint {
  return BigInt(key) << 59n;
}

function flagValue(flags: readonly Flag[]): bigint {
  return flags.reduce((v, f) => v | BIT[f], 0n);
}

function flagName(flags: readonly Flag[]): string {
  return FLAG_BITS.map(([name]) => name).filter((n) => flags.includes(n)).join("|");
}

/** Every subset of `optional`, in binary-counting order (the first flag is the low bit). */
function subsets(optional: readonly Flag[]): Flag[][] {
  const out: Flag[][] = [];
  for (let m = 0; m < 1 << optional.length; m++) out.push(optional.filter((_, i) => m & (1 << i)));
  return out;
}

function entry(body: bigint, flags: readonly Flag[], extra: ExtraBit | null): EntryChoice {
  const bit = extra === null ? 0n : 1n << BigInt(extra.bit);
  return { value: body | flagValue(flags) | bit, flags: flagName(flags), extra };
}

/**
 * Present entries of one kind: every subset of `optional` with no extra bit or one of the
 * `extras` that are not reserved, then each reserved bit (XD too, when NXE=0) on the two flag
 * stand-ins of rule E5 (no optional flag, every optional flag).
 */
function present(
  body: bigint,
  fixed: readonly Flag[],
  optional: readonly Flag[],
  extras: readonly ExtraBit[] | null,
  nxe: boolean,
): EntryChoice[] {
  const out: EntryChoice[] = [];
  const plain = extras?.filter((e) => e.kind !== "rsvd") ?? [];
  for (const set of subsets(optional)) {
    if (!nxe && set.includes("XD")) continue; // XD is reserved: below
    for (const extra of [null, ...plain]) out.push(entry(body, [...fixed, ...set], extra));
  }
  if (extras === null) return out; // the other entry has the one extra bit
  const all = optional.filter((f) => f !== "XD" || nxe);
  if (!nxe) {
    out.push(entry(body, [...fixed, "XD"], null), entry(body, [...fixed, ...all, "XD"], null));
  }
  for (const extra of extras.filter((e) => e.kind === "rsvd")) {
    out.push(entry(body, fixed, extra), entry(body, [...fixed, ...all], extra));
  }
  return out;
}

/** True when an entry has a reserved bit: an extra of kind `rsvd`, or XD with EFER.NXE=0. */
export function isReserved(e: EntryChoice, nxe: boolean): boolean {
  if (!isPresent(e)) return false; // spec §2: reserved bits are checked only when P=1
  return e.extra?.kind === "rsvd" || (!nxe && (e.value & BIT.XD) !== 0n);
}

/** True when an entry is present. */
export function isPresent(e: EntryChoice): boolean {
  return (e.value & BIT.P) !== 0n;
}

function userLeaf(pde: EntryChoice, pte: EntryChoice | null, nxe: boolean): boolean {
  const leaf = pte ?? pde;
  const path = pte ? [pde, pte] : [pde];
  return isPresent(leaf) && !isReserved(leaf, nxe) &&
    path.every((e) => e.extra === null && (e.value & BIT.U) !== 0n) &&
    (pte !== null || (pde.value & BIT.PS) !== 0n);
}

/**
 * Every (PDE, PTE) pair of the sweep for one EFER.NXE value, in a fixed order: the not-present
 * PDEs, the non-leaf PDEs with every PTE they reach, then the 2-MiB PDEs.
 *
 * @example Usage
 * ```ts
 * import { entryPairs } from "./sweep_entries.ts";
 * import { sweepLayout } from "./sweep_layout.ts";
 * import { equal } from "node:assert/strict";
 * const pairs = entryPairs(sweepLayout("ia32e4"), true);
 * equal(pairs[0]!.pde.flags, "0");
 * equal(pairs[0]!.pte, null);
 * ```
 */
export function entryPairs(layout: SweepLayout, nxe: boolean): EntryPair[] {
  const out: EntryPair[] = [];
  const push = (pde: EntryChoice, pte: EntryChoice | null) =>
    out.push({ pde, pte, userLeaf: userLeaf(pde, pte, nxe) });
  for (const pde of NOT_PRESENT) push(pde, null);
  const leafKey = layout.keys ? keyBits(LEAF_KEY) : 0n;
  const tableKey = layout.keys ? keyBits(NONLEAF_PDE_KEY) : 0n;
  const ptes = (extras: boolean) => [
    ...NOT_PRESENT,
    ...present(
      layout.frame4k | leafKey,
      ["P"],
      LEAF_OPTIONAL,
      extras ? layout.extraSmall : null,
      nxe,
    ),
  ];
  const ptesAlone = ptes(true); // the PTE may carry the one extra bit
  const ptesUnderExtra = ptes(false); // the PDE has it
  const tables = present(layout.ptBase | tableKey, ["P"], TABLE_OPTIONAL, layout.extraSmall, nxe);
  for (const pde of tables) {
    if (isReserved(pde, nxe) || pde.extra?.kind === "addr") {
      push(pde, null); // rule E2: the walk stops at the PDE, or its page table is MMIO (zeros)
      continue;
    }
    for (const pte of pde.extra === null ? ptesAlone : ptesUnderExtra) push(pde, pte);
  }
  const large = present(
    layout.frame2m | leafKey,
    ["P", "PS"],
    LEAF_OPTIONAL,
    layout.extraLarge,
    nxe,
  );
  for (const pde of large) push(pde, null);
  return out;
}
