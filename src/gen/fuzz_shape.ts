/**
 * Guest modes, the shape of their page tables, and the guest-physical plan the fuzz generator
 * lays every case out on.
 *
 * Levels use KVM's numbering: 1 = PT, 2 = PD, 3 = PDPT, 4 = PML4, 5 = PML5. A PAE root is a
 * 4-entry PDPT (level 3); a 32-bit root is a 1024-entry PD (level 2).
 *
 * Guest-physical plan (every gfn < 2^20, so every address fits 32-bit CR3s and PDPTEs):
 *
 * ```
 * 0x00010-0x000ff  page tables                      slot 0 (RAM; ROM in a rare variant)
 * 0x00100-0x001ff  code and data frames             slot 1 (never removed: fetches go here)
 * 0x00200-0x003ff  data frames, one 2 MiB frame     slot 2 (removable)
 * 0x00400-0x007ff  2 MiB and 4 MiB frames           slot 3 (removable)
 * 0x00800-0x009ff  "late RAM": MMIO until added     slot 4 (mostly absent at first)
 * 0x40000-0x7ffff  1 GiB frame                      slot 5 (never removed)
 * 0xff000-0xfffff  MMIO (in no memslot, ever)
 * ```
 *
 * @module
 */

/** The guest modes a case can start in. */
export type GuestMode = "disabled" | "legacy32" | "legacy32-pse" | "pae" | "ia32e4" | "ia32e5";

/** Every guest mode, in a fixed order. */
export const GUEST_MODES: readonly GuestMode[] = [
  "disabled",
  "legacy32",
  "legacy32-pse",
  "pae",
  "ia32e4",
  "ia32e5",
];

/** The page-table shape of a paging mode. */
export interface PagingShape {
  /** Level of the root table. */
  readonly top: number;
  readonly entryBytes: 4 | 8;
  /** Linear-address width: 32, 48 or 57. */
  readonly laBits: number;
  /** The root is a PAE PDPT (4 entries, no rights, loaded into registers). */
  readonly pae: boolean;
  /** Levels where PS=1 maps a large page (1 GiB needs gbPages: without it PS is reserved). */
  readonly largeLevels: readonly number[];
}

const SHAPES: Record<Exclude<GuestMode, "disabled">, PagingShape> = {
  legacy32: { top: 2, entryBytes: 4, laBits: 32, pae: false, largeLevels: [] },
  "legacy32-pse": { top: 2, entryBytes: 4, laBits: 32, pae: false, largeLevels: [2] },
  pae: { top: 3, entryBytes: 8, laBits: 32, pae: true, largeLevels: [2] },
  ia32e4: { top: 4, entryBytes: 8, laBits: 48, pae: false, largeLevels: [2, 3] },
  ia32e5: { top: 5, entryBytes: 8, laBits: 57, pae: false, largeLevels: [2, 3] },
};

/** The shape of a paging mode, or null with paging off. */
export function shapeOf(mode: GuestMode): PagingShape | null {
  return mode === "disabled" ? null : SHAPES[mode];
}

/** Index bits of a table at `level`. */
export function indexBits(shape: PagingShape, level: number): number {
  if (shape.entryBytes === 4) return 10;
  return shape.pae && level === 3 ? 2 : 9;
}

/** The linear-address bit where the index of a level-`level` table starts. */
export function levelShift(shape: PagingShape, level: number): number {
  return 12 + (level - 1) * (shape.entryBytes === 4 ? 10 : 9);
}

/** The index a linear address selects in a table at `level`. */
export function indexOf(shape: PagingShape, la: bigint, level: number): number {
  return Number(
    (la >> BigInt(levelShift(shape, level))) & ((1n << BigInt(indexBits(shape, level))) - 1n),
  );
}

/** Sign-extends a linear address from the mode's width (canonical form), or truncates to 32. */
export function canonical(shape: PagingShape, la: bigint): bigint {
  const bits = BigInt(shape.laBits);
  const low = la & ((1n << bits) - 1n);
  if (shape.laBits === 32) return low;
  return (low >> (bits - 1n)) === 1n ? low | (((1n << 64n) - 1n) ^ ((1n << bits) - 1n)) : low;
}

/** The linear address whose indices, top level first, are `indices` (page offset 0). */
export function composeLa(shape: PagingShape, indices: readonly number[]): bigint {
  let la = 0n;
  indices.forEach((index, i) => {
    la |= BigInt(index) << BigInt(levelShift(shape, shape.top - i));
  });
  return canonical(shape, la);
}

/**
 * Index menus: a mapping picks each level's index from a short list, so that mappings often share
 * upper-level tables ("buddies") and often land in the same PT. Index 0 of a menu is 0, so a
 * shrunk mapping sits at linear address 0. No menu holds {@link SELF_SLOT} or
 * {@link WINDOW_SLOT}.
 */
export function indexMenu(shape: PagingShape, level: number): readonly number[] {
  if (shape.pae && level === 3) return [0, 1, 2, 3];
  if (shape.entryBytes === 4) {
    return level === shape.top
      ? [0, 1, 512, 1023]
      : [0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 64, 256, 512, 700, 1000, 1023];
  }
  if (level === 1) return [0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 100, 256, 300, 500, 511];
  if (level === shape.top) return [0, 1, 256, 511];
  return [0, 1, 2, 511];
}

/** Index of the recursive self-map slot in the table that holds it. */
export function selfSlot(shape: PagingShape): number {
  return shape.entryBytes === 4 ? 0x3ed : 0x1ed;
}

/**
 * Index of the page-table window: at the top level (PAE: in the PD under PDPTE 3), an entry
 * whose PT maps every page table at window index = table id.
 */
export function windowSlot(shape: PagingShape): number {
  return shape.entryBytes === 4 ? 0x3fe : 0x1fe;
}

/** The PDPTE index under which PAE keeps its self-map slot and window. */
export const PAE_HOLDER_PDPTE = 3;

/** Guest frame numbers of the plan (see the module comment). */
export const GFN = {
  tables: 0x10,
  tablesEnd: 0x100,
  code: 0x100,
  data: 0x200,
  large: 0x400,
  late: 0x800,
  giga: 0x40000,
  mmio: 0xff000,
} as const;

/** Memslot ids of the plan. */
export const SLOT = { tables: 0, code: 1, data: 2, large: 3, late: 4, giga: 5 } as const;

/** Memslots a program may remove and add again: fetches never target them. */
export const REMOVABLE_SLOTS: readonly number[] = [SLOT.data, SLOT.large, SLOT.late];

/** The range of each slot: `[baseGfn, npages]`. */
export const SLOT_RANGE: Readonly<Record<number, readonly [number, number]>> = {
  [SLOT.tables]: [0, 0x100],
  [SLOT.code]: [0x100, 0x100],
  [SLOT.data]: [0x200, 0x200],
  [SLOT.large]: [0x400, 0x400],
  [SLOT.late]: [0x800, 0x200],
  [SLOT.giga]: [0x40000, 0x40000],
};

/** The slot holding `gfn` in the full plan, or null for MMIO. */
export function planSlotOf(gfn: number): number | null {
  for (const [id, [base, n]] of Object.entries(SLOT_RANGE)) {
    if (gfn >= base && gfn < base + n) return Number(id);
  }
  return null;
}

/** True if `gfn` is RAM that no program op removes (a safe instruction-fetch target). */
export function isPermanentRam(gfn: number): boolean {
  const slot = planSlotOf(gfn);
  return slot !== null && !REMOVABLE_SLOTS.includes(slot);
}

/** A memslot of the case, as JSON would give it (gfns as numbers here). */
export interface PlanSlot {
  readonly slot: number;
  readonly baseGfn: number;
  readonly npages: number;
  readonly readOnly: boolean;
}

/** The memslots at the start, from the genome's slot variants. */
export function initialSlots(bits: number): PlanSlot[] {
  const merged = (bits & 3) === 3;
  const romTables = !merged && ((bits >> 2) & 15) === 15;
  const romData = ((bits >> 6) & 7) === 7;
  const late = ((bits >> 9) & 1) === 1 && (bits & 1) === 1;
  const slot = (id: number, readOnly = false, npages?: number): PlanSlot => {
    const [baseGfn, n] = SLOT_RANGE[id]!;
    return { slot: id, baseGfn, npages: npages ?? n, readOnly };
  };
  return [
    merged ? slot(SLOT.tables, false, 0x200) : slot(SLOT.tables, romTables),
    ...(merged ? [] : [slot(SLOT.code)]),
    slot(SLOT.data, romData),
    slot(SLOT.large),
    ...(late ? [slot(SLOT.late)] : []),
    slot(SLOT.giga),
  ];
}
