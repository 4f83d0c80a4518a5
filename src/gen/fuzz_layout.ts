/**
 * The initial guest of a fuzz case: roots, a recursive self-map slot, the mappings of the genome
 * (buddies, aliases, large pages, holes, one reserved bit at a time, MMIO and self-map targets),
 * a page-table window that maps every table, memslots, and the linear addresses ops can use.
 *
 * @module
 */
import type { FuzzControl, FuzzCpu } from "./fuzz_cpu.ts";
import type { Genome, MapGene } from "./fuzz_genome.ts";
import {
  composeLa,
  GFN,
  type GuestMode,
  indexMenu,
  indexOf,
  initialSlots,
  PAE_HOLDER_PDPTE,
  type PagingShape,
  type PlanSlot,
  planSlotOf,
  selfSlot,
  shapeOf,
  windowSlot,
} from "./fuzz_shape.ts";
import { Image, PageTables, type Table } from "./fuzz_tables.ts";

/** A root the vCPUs can load into CR3. */
export interface Root {
  readonly table: Table | null;
  readonly cr3: bigint;
  /** The table holding the self-map slot reachable from this root, and the indices to it. */
  readonly holder: Table | null;
  readonly prefix: readonly number[];
}

/** What the layout is built for. */
export interface LayoutSetup {
  readonly mode: GuestMode;
  readonly cpu: FuzzCpu;
  readonly control: FuzzControl;
}

/** The initial guest. */
export interface Layout {
  readonly mode: GuestMode;
  readonly shape: PagingShape | null;
  readonly pt: PageTables | null;
  readonly image: Image;
  readonly roots: readonly Root[];
  /** Linear addresses of the mappings, in gene order. */
  readonly mapped: readonly bigint[];
  /** Linear addresses of page-table pages (window) and one unmapped address. */
  readonly extra: readonly bigint[];
  /** The window address of each table (by id), if the case has a window. */
  readonly window: readonly (bigint | null)[];
  readonly slots: readonly PlanSlot[];
  /** Gfns worth a host unmap: tables and mapped frames. */
  readonly frames: readonly number[];
}

/** Tag written at word 0 of every mapped RAM frame: a load shows which frame it reached. */
export function frameTag(gfn: number): bigint {
  return (0xda7an << 48n) | (BigInt(gfn) << 12n);
}

/** Frames a 4 KiB leaf can map, by target code (0-99) and pick. */
function frame4k(pt: PageTables | null, target: number, pick: number): number {
  if (target < 40) return GFN.code + (pick % 16);
  if (target < 60) return GFN.data + (pick % 16);
  if (target < 75) {
    if (pt && pt.tables.length > 0) return pt.tables[pick % pt.tables.length]!.gfn;
    return GFN.code + (pick % 16);
  }
  if (target < 80) return GFN.large + pick;
  if (target < 83) return GFN.giga + (pick % 16);
  if (target < 92) return GFN.late + (pick % 8);
  return GFN.mmio + (pick % 8);
}

const LARGE_2M = [0x400, 0x600, 0x200, 0x400, 0x0, 0x40000, 0x800, 0xffe00];
const LARGE_4M = [0x400, 0x400, 0x0, 0x400, 0x800, 0xffc00, 0x400, 0x0];
const LARGE_1G = [0x40000, 0x40000, 0x0, 0x40000, 0x80000, 0x40000, 0x0, 0xc0000];

/** The frame a large leaf at `level` maps (aligned). */
function largeFrame(shape: PagingShape, level: number, target: number): number {
  const menu = level === 3 ? LARGE_1G : shape.entryBytes === 4 ? LARGE_4M : LARGE_2M;
  return menu[target % menu.length]!;
}

/**
 * PSE-36 bit 13 (physical-address bit 32) of a 4 MiB PDE, for one mapping in eight when the CPU
 * has PSE-36: the page then lies above 4 GiB, where the plan has no memslot (MMIO). The
 * generator's own translation ignores it (it reads bits 31:12 only). Bit 13 is an address bit
 * for every MAXPHYADDR >= 36, in the architecture and in KVM's fixed PSE-36 layout alike.
 */
function pse36High(pt: PageTables, level: number, g: MapGene): bigint {
  const ctx = pt.ctx;
  if (level !== 2 || ctx.shape.entryBytes !== 4 || !ctx.pse36 || ctx.maxPhyAddr < 36) return 0n;
  return ((g.flags >> 9) & 7) === 7 ? 1n << 13n : 0n;
}

/** The leaf level of a mapping from its size gene. */
function leafLevel(shape: PagingShape, g: MapGene): number {
  if (g.size < 6) return 1;
  if (shape.entryBytes === 4) return shape.largeLevels.includes(2) || (g.pick & 3) === 0 ? 2 : 1;
  return g.size >= 8 && shape.top >= 4 ? 3 : 2;
}

/** A mapping's linear address: each level's index from its menu, bits taken from `g.la`. */
function mappingLa(shape: PagingShape, g: MapGene): bigint {
  let bits = g.la;
  const indices: number[] = [];
  for (let level = shape.top; level >= 1; level--) {
    const menu = indexMenu(shape, level);
    indices.push(menu[bits % menu.length]!);
    bits = Math.floor(bits / menu.length);
  }
  return composeLa(shape, indices);
}

/** Installs one mapping into `root`. */
function install(pt: PageTables, root: Root, rootIndex: number, g: MapGene, la: bigint): void {
  const shape = pt.ctx.shape;
  const leaf = leafLevel(shape, g);
  const span = shape.top - leaf;
  const aliasAt = g.alias >= 12 ? leaf + 1 + ((g.alias - 12) % span) : 0;
  const rsvdAt = g.rsvd >= 28 ? leaf + ((g.rsvd - 28 + g.pick) % (span + 1)) : 0;
  const holeAt = g.hole >= 14 ? leaf + ((g.hole - 14) % (span + 1)) : 0;
  const code = (level: number) => (g.rights >> (6 * (level - 1))) & 63;
  const flags = (level: number) =>
    ((g.flags >> (level - 1)) & 1) | (((g.flags >> 5) & 1) << 1) | (((g.flags >> 6) & 7) << 2);
  const rsvd = (level: number, isLeaf: boolean): bigint => {
    if (level !== rsvdAt || (rootIndex === 0 && pt.isPdpte(level))) return 0n;
    const bits = pt.reservedBits(level, isLeaf);
    return bits.length === 0 ? 0n : 1n << BigInt(bits[g.pick % bits.length]!);
  };
  let t = root.table!;
  for (let level = shape.top; level >= leaf; level--) {
    const index = indexOf(shape, la, level);
    const e = pt.get(t, index);
    const present = (e & 1n) === 1n;
    if (level === leaf) {
      if (present && level > 1 && !pt.isLarge(e, level)) return; // keep the other mappings' PT
      const frame = level === 1
        ? frame4k(pt, g.target, g.pick)
        : largeFrame(shape, level, g.target);
      pt.set(
        t,
        index,
        pt.leaf(level, frame, code(level), flags(level)) | rsvd(level, true) |
          pse36High(pt, level, g),
      );
      return;
    }
    if (!present && level === holeAt) {
      pt.set(t, index, (BigInt(frame4k(null, g.target, g.pick)) << 12n) | 6n);
      return;
    }
    if (present) {
      if (pt.isLarge(e, level)) return;
      const child = pt.tableAt(pt.gfnOf(e));
      if (!child || child.level !== level - 1) return;
      t = child;
      continue;
    }
    let child: Table | undefined;
    if (level === aliasAt) {
      const pool = pt.tables.filter((x) => x.level === level - 1 && !x.window);
      child = pool[(g.pick * 7 + g.alias) % Math.max(1, pool.length)];
    }
    child ??= pt.add(level - 1);
    pt.set(t, index, pt.pointer(level, child, code(level), flags(level)) | rsvd(level, false));
    child.parents.push({ table: t.id, index });
    t = child;
  }
}

/** Builds the page-table window in every root and maps every table there. */
function buildWindow(pt: PageTables, roots: readonly Root[], g: Genome): (bigint | null)[] {
  const shape = pt.ctx.shape;
  const path = shape.pae ? [PAE_HOLDER_PDPTE, windowSlot(shape)] : [windowSlot(shape)];
  while (path.length < shape.top - 1) path.push(0);
  const la0 = composeLa(shape, [...path, 0]);
  const shared = new Map<number, Table>();
  const pts = new Set<Table>();
  for (const root of roots) {
    let t: Table | undefined = root.table!;
    for (let level = shape.top; level >= 2 && t; level--) {
      const index = indexOf(shape, la0, level);
      const e = pt.get(t, index);
      if ((e & 1n) === 1n) {
        const child = pt.isLarge(e, level) ? undefined : pt.tableAt(pt.gfnOf(e));
        t = child && child.level === level - 1 ? child : undefined;
        continue;
      }
      let child = shared.get(level - 1);
      if (!child) shared.set(level - 1, child = pt.add(level - 1, true));
      pt.set(t, index, pt.pointer(level, child, 0));
      child.parents.push({ table: t.id, index });
      t = child;
    }
    if (t) pts.add(t);
  }
  const rights = g.windowRights;
  for (const w of pts) {
    for (const table of pt.tables) {
      const code = rights.length === 0 ? 0 : rights[table.id % rights.length]!;
      pt.set(w, table.id, pt.leaf(1, table.gfn, code & 63, code >> 6, true));
    }
  }
  return pt.tables.map((table) => (pts.size > 0 ? composeLa(shape, [...path, table.id]) : null));
}

/** Builds the initial guest of a genome. */
export function buildLayout(g: Genome, setup: LayoutSetup): Layout {
  const { mode, cpu, control } = setup;
  const slots = initialSlots(g.slots);
  const shape = shapeOf(mode);
  const rootCount = 1 + (g.roots >= 4 ? 1 : 0) + (g.roots >= 6 ? 1 : 0);
  if (!shape) return flatLayout(g, mode, slots, rootCount);
  const pt = new PageTables({
    shape,
    maxPhyAddr: cpu.maxPhyAddr,
    gbPages: cpu.features.gbPages,
    pse: control.pse,
    nxe: control.nxe,
    amd: cpu.vendor === "amd",
    pse36: cpu.features.pse36,
  });
  const roots: Root[] = [];
  for (let i = 0; i < rootCount; i++) {
    const offsetCode = (g.rootBits >> (9 + 2 * i)) & 3;
    const base = shape.pae ? [0, 0, 0x20, 0xfe0][offsetCode]! : 0;
    const table = pt.add(shape.top, false, base);
    // PCIDs from a small set, so that roots often share one (a flush of one PCID must drop the
    // cached roots of every CR3 that uses it).
    const pcid = control.pcide ? [0, 1, 2, 1, 0, 2, 1, 0][(g.rootBits >> (3 * i)) & 7]! : 0;
    roots.push({
      table,
      cr3: (BigInt(table.gfn) << 12n) | BigInt(base | pcid),
      holder: null,
      prefix: [],
    });
  }
  if (g.selfMap >= 4) {
    roots.forEach((root, i) => {
      let holder = root.table!;
      if (shape.pae) {
        const e = pt.get(holder, PAE_HOLDER_PDPTE);
        const pd = (e & 1n) === 1n ? pt.tableAt(pt.gfnOf(e)) : undefined;
        const child = pd ?? pt.add(2);
        if (!pd) {
          pt.set(holder, PAE_HOLDER_PDPTE, pt.pointer(3, child, 0));
          child.parents.push({ table: holder.id, index: PAE_HOLDER_PDPTE });
        }
        holder = child;
      }
      pt.set(
        holder,
        selfSlot(shape),
        pt.pointer(holder.level, holder, g.selfRights & 63, g.selfRights >> 6),
      );
      roots[i] = { ...root, holder, prefix: shape.pae ? [PAE_HOLDER_PDPTE] : [] };
    });
  }
  const mapped = g.mappings.map((m) => {
    const la = mappingLa(shape, m);
    const index = m.root % roots.length;
    install(pt, roots[index]!, index, m, la);
    return la;
  });
  const window = g.window >= 1 ? buildWindow(pt, roots, g) : pt.tables.map(() => null);
  // Indices no menu holds: unmapped at the top (PAE: at the PD) in every root.
  const wild = composeLa(
    shape,
    Array.from({ length: shape.top }, (_, i) => (i > 0 ? 0x123 : shape.pae ? 1 : 5)),
  );
  const extra = [...window.filter((la): la is bigint => la !== null), wild];
  const frames = new Set<number>(pt.tables.map((t) => t.gfn));
  for (const [i, la] of mapped.entries()) {
    const root = roots[g.mappings[i]!.root % roots.length]!;
    const gfn = pt.translate(root.table!, la);
    if (gfn === null || gfn >= 1 << 20) continue;
    frames.add(gfn);
    if (gfn >= GFN.tablesEnd && planSlotOf(gfn) !== null) pt.image.setWord(gfn, 0, frameTag(gfn));
  }
  return {
    mode,
    shape,
    pt,
    image: pt.image,
    roots,
    mapped,
    extra,
    window,
    slots,
    frames: [...frames],
  };
}

/** Paging off: "mappings" are frames, addressed by their guest-physical address. */
function flatLayout(g: Genome, mode: GuestMode, slots: PlanSlot[], rootCount: number): Layout {
  const image = new Image();
  const frames = g.mappings.map((m) =>
    m.size >= 8
      ? largeFrame(shapeOf("ia32e4")!, 3, m.target) + m.pick
      : frame4k(null, m.target, m.pick)
  );
  for (const gfn of frames) {
    if (gfn >= GFN.tablesEnd && planSlotOf(gfn) !== null) image.setWord(gfn, 0, frameTag(gfn));
  }
  const roots = Array.from({ length: rootCount }, (_, i) => ({
    table: null,
    cr3: BigInt(GFN.tables + i) << 12n,
    holder: null,
    prefix: [],
  }));
  return {
    mode,
    shape: null,
    pt: null,
    image,
    roots,
    mapped: frames.map((gfn) => BigInt(gfn) << 12n),
    extra: [BigInt(GFN.code) << 12n, BigInt(GFN.mmio) << 12n],
    window: [],
    slots,
    frames,
  };
}
