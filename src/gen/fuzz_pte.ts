/**
 * Page-table stores of the fuzz program: where a table is visible to the guest (recursive
 * self-map slot or window) and which plausible entry value to store in it.
 *
 * @module
 */
import type { PteGene } from "./fuzz_genome.ts";
import type { Layout, Root } from "./fuzz_layout.ts";
import { composeLa, GFN, selfSlot } from "./fuzz_shape.ts";
import type { PageTables, Table } from "./fuzz_tables.ts";

/** W, U/S, A, D and G. */
const RIGHTS_MASK = 0x2n | 0x4n | 0x20n | 0x40n | 0x100n;

/**
 * The linear address of table `t` as `root` sees it: through the recursive slot (preferred when
 * `via` is odd) or the window; null if neither reaches it.
 */
export function tableLa(lay: Layout, t: Table, root: Root, via: number): bigint | null {
  const pt = lay.pt!;
  const shape = pt.ctx.shape;
  let recursive: bigint | null = null;
  const path = root.holder ? pathFrom(pt, root.holder, t) : null;
  if (root.holder && path) {
    // The slot repeated once per level the walk must loop, then the path down to the table.
    const repeat = root.holder.level - path.length;
    const k = selfSlot(shape);
    recursive = composeLa(shape, [...root.prefix, ...Array<number>(repeat).fill(k), ...path]);
  }
  const window = lay.window[t.id] ?? null;
  return (via & 1) === 1 && recursive !== null ? recursive : window ?? recursive;
}

/**
 * A new value for entry `e` of table `t`, shaped for the table's level (see `PteGene.value`):
 * pointers to existing tables of the level below, leaves to existing frames, large pages where
 * the level has them, the same frame with new rights, not present, MMIO, one reserved bit.
 */
export function pteValue(pt: PageTables, t: Table, e: number, g: PteGene): bigint {
  const level = t.level;
  const old = pt.get(t, e);
  const rights = g.rights & 63;
  const flags = g.rights >> 6;
  const tables = pt.tables;
  const below = tables.filter((x) => x.level === level - 1);
  const frame = GFN.code + (g.pick % 16) + (g.pick >= 32 ? GFN.data - GFN.code : 0);
  const normal = (): bigint => {
    if (level === 1) return pt.leaf(1, frame, rights, flags);
    const child = below[g.pick % Math.max(1, below.length)];
    return pt.pointer(level, child ?? frame, rights, flags);
  };
  const shape = pt.ctx.shape;
  const large = shape.entryBytes === 4 ? level === 2 : shape.largeLevels.includes(level);
  switch (g.value) {
    case 3: {
      const other = tables[g.pick % tables.length]!;
      return level === 1
        ? pt.leaf(1, other.gfn, rights, flags)
        : pt.pointer(level, other, rights, flags);
    }
    case 4:
      return large ? pt.leaf(level, level === 3 ? GFN.giga : GFN.large, rights, flags) : normal();
    case 5:
    case 6: {
      if ((old & 1n) === 0n || pt.isPdpte(level)) return normal();
      // Same frame, new rights: the classic unsync-then-flush case.
      const mask = RIGHTS_MASK | (shape.entryBytes === 8 ? 1n << 63n : 0n);
      return (old & ~mask) | (pt.leaf(1, 0, rights, flags) & mask);
    }
    case 7:
      return (g.pick & 1) === 0 ? 0n : old & ~1n;
    case 8: {
      const gfn = (g.pick & 1) === 0 ? GFN.late + (g.pick % 8) : GFN.mmio + (g.pick % 8);
      return level === 1 ? pt.leaf(1, gfn, rights, flags) : pt.pointer(level, gfn, rights, flags);
    }
    case 9: {
      // One reserved bit, in a new entry or (half the time) in the entry as it is, which keeps
      // its frame: KVM's sync then re-checks the same translation (FNAME(sync_spte)).
      const bits = pt.reservedBits(level, false);
      const keep = (old & 1n) === 1n && !pt.isPdpte(level) && ((g.pick >> 1) & 1) === 1;
      const v = keep ? old : normal();
      return bits.length === 0 ? v : v | (1n << BigInt(bits[g.pick % bits.length]!));
    }
    default:
      return normal();
  }
}

/** The indices from `holder` down to `t` along recorded parent links, or null. */
function pathFrom(pt: PageTables, holder: Table, t: Table): number[] | null {
  if (t === holder) return [];
  for (const p of t.parents) {
    const up = pathFrom(pt, holder, pt.tables[p.table]!);
    if (up) return [...up, p.index];
  }
  return null;
}
