/**
 * The generator's guest memory image and page-table builder: tables, entries, rights.
 *
 * This is generator bookkeeping, not a walker anyone checks against: it knows where it put each
 * table and entry so ops can name them. It ignores rights and reserved bits when it follows
 * pointers ({@link PageTables.translate}), which is enough to keep instruction fetches on RAM.
 *
 * @module
 */
import { GFN, indexBits, indexOf, type PagingShape } from "./fuzz_shape.ts";

const P = 1n;
const W = 2n;
const U = 4n;
const A = 0x20n;
const D = 0x40n;
const PS = 0x80n;
const G = 0x100n;
const XD = 1n << 63n;

/** Sparse guest memory: gfn -> word index -> value. */
export class Image {
  readonly pages: Map<number, Map<number, bigint>> = new Map();

  /** The 8-byte word `index` of page `gfn`. */
  word(gfn: number, index: number): bigint {
    return this.pages.get(gfn)?.get(index) ?? 0n;
  }

  /** Sets the 8-byte word `index` of page `gfn`. */
  setWord(gfn: number, index: number, value: bigint): void {
    let page = this.pages.get(gfn);
    if (!page) this.pages.set(gfn, page = new Map());
    page.set(index, value);
  }

  /** Reads a 4- or 8-byte entry at byte `offset` of page `gfn`. */
  entry(gfn: number, offset: number, bytes: 4 | 8): bigint {
    const w = this.word(gfn, offset >> 3);
    if (bytes === 8) return w;
    return (offset & 4) === 0 ? w & 0xffff_ffffn : w >> 32n;
  }

  /** Writes a 4- or 8-byte entry at byte `offset` of page `gfn`. */
  setEntry(gfn: number, offset: number, bytes: 4 | 8, value: bigint): void {
    if (bytes === 8) return this.setWord(gfn, offset >> 3, value);
    const shift = (offset & 4) === 0 ? 0n : 32n;
    const old = this.word(gfn, offset >> 3);
    this.setWord(
      gfn,
      offset >> 3,
      (old & ~(0xffff_ffffn << shift)) | ((value & 0xffff_ffffn) << shift),
    );
  }
}

/** A page table the generator placed. */
export interface Table {
  readonly id: number;
  readonly gfn: number;
  /** Byte offset of entry 0 in the page (a PAE PDPT may sit at any 32-byte boundary). */
  readonly base: number;
  readonly level: number;
  /** Part of the page-table window's own path (never picked for aliasing). */
  readonly window: boolean;
  /** Entries that point here (the recursive slot excluded). */
  readonly parents: { table: number; index: number }[];
  /** Entry indices the layout wrote. */
  readonly used: Set<number>;
}

/**
 * Decoded rights of one entry from 6 bits: the plain choice (0) is writable, user, executable.
 * Upper levels restrict less often than leaves, so most paths stay usable.
 */
export interface Rights {
  readonly w: boolean;
  readonly u: boolean;
  readonly nx: boolean;
}

/** Rights from a 6-bit code; `leaf` restricts more often. */
export function rightsOf(code: number, leaf: boolean): Rights {
  const c = code & 63;
  const rare = leaf || (c & 0x20) !== 0;
  return {
    w: !((c & 3) === 3 && rare),
    u: !(((c >> 2) & 3) === 3 && rare),
    nx: ((c >> 4) & 3) === 3 && (leaf || (c & 1) === 1),
  };
}

/** The case-wide facts the builder needs. */
export interface TableContext {
  readonly shape: PagingShape;
  readonly maxPhyAddr: number;
  readonly gbPages: boolean;
  /** Initial CR4.PSE (32-bit paging: PS=1 in a PDE means a 4 MiB page). */
  readonly pse: boolean;
  readonly nxe: boolean;
  readonly amd: boolean;
  /** CPUID PSE-36: a 4 MiB PDE holds physical-address bits 35:32 in bits 16:13. */
  readonly pse36: boolean;
}

/** The page tables of a case under construction. */
export class PageTables {
  readonly image: Image = new Image();
  readonly tables: Table[] = [];
  readonly #byGfn = new Map<number, Table>();
  readonly ctx: TableContext;

  constructor(ctx: TableContext) {
    this.ctx = ctx;
  }

  /** A new, empty table at `level`. */
  add(level: number, window = false, base = 0): Table {
    const gfn = GFN.tables + this.tables.length;
    if (gfn >= GFN.tablesEnd) throw new RangeError("Cannot place another page table: plan full");
    const t: Table = {
      id: this.tables.length,
      gfn,
      base,
      level,
      window,
      parents: [],
      used: new Set(),
    };
    this.tables.push(t);
    this.#byGfn.set(gfn, t);
    return t;
  }

  /** The table at `gfn`, if the layout placed one there. */
  tableAt(gfn: number): Table | undefined {
    return this.#byGfn.get(gfn);
  }

  /** Number of entries of a table. */
  size(t: Table): number {
    return 1 << indexBits(this.ctx.shape, t.level);
  }

  /** Entry `index` of table `t`. */
  get(t: Table, index: number): bigint {
    const bytes = this.ctx.shape.entryBytes;
    return this.image.entry(t.gfn, t.base + index * bytes, bytes);
  }

  /** Writes entry `index` of table `t` and notes it as used. */
  set(t: Table, index: number, value: bigint): void {
    const bytes = this.ctx.shape.entryBytes;
    this.image.setEntry(t.gfn, t.base + index * bytes, bytes, value);
    t.used.add(index);
  }

  /** True for a PAE PDPTE (no rights bits, no PS). */
  isPdpte(level: number): boolean {
    return this.ctx.shape.pae && level === 3;
  }

  /** A present non-leaf entry at `level` pointing at `child`. */
  pointer(level: number, child: Table | number, code: number, flags = 0): bigint {
    const gfn = typeof child === "number" ? child : child.gfn;
    if (this.isPdpte(level)) return (BigInt(gfn) << 12n) | P;
    return (BigInt(gfn) << 12n) | this.#bits(rightsOf(code, false), flags, false);
  }

  /**
   * A present leaf entry at `level` mapping the frame at `gfn` (aligned for large pages);
   * `lenient` restricts rights as rarely as a non-leaf entry does.
   */
  leaf(level: number, gfn: number, code: number, flags = 0, lenient = false): bigint {
    return (BigInt(gfn) << 12n) | this.#bits(rightsOf(code, !lenient), flags, true) |
      (level > 1 ? PS : 0n);
  }

  #bits(r: Rights, flags: number, leaf: boolean): bigint {
    let v = P | (r.w ? W : 0n) | (r.u ? U : 0n);
    // XD only while EFER.NXE=1: otherwise bit 63 is reserved, which only a reserved-bit gene sets.
    if (r.nx && this.ctx.shape.entryBytes === 8 && this.ctx.nxe) v |= XD;
    if ((flags & 1) === 0) v |= A;
    if (leaf && (flags & 2) === 0) v |= D;
    if (leaf && (flags & 0x1c) === 0x1c) v |= G;
    return v;
  }

  /** True if `entry` at `level` maps a large page (the builder never descends through it). */
  isLarge(entry: bigint, level: number): boolean {
    return level > 1 && !this.isPdpte(level) && (entry & PS) !== 0n;
  }

  /** The frame an entry points at. */
  gfnOf(entry: bigint): number {
    const mask = this.ctx.shape.entryBytes === 4 ? 0xffff_f000n : 0x000f_ffff_ffff_f000n;
    return Number((entry & mask) >> 12n);
  }

  /**
   * Reserved bits worth setting, one at a time, in an entry at `level` (`leaf`: maps a page).
   * 32-bit paging has reserved bits only in 4 MiB PDEs; bits 20:17 only where KVM's fixed
   * PSE-36 layout agrees with the architecture (MAXPHYADDR 36).
   */
  reservedBits(level: number, leaf: boolean): number[] {
    const { shape, maxPhyAddr: m, nxe, amd, gbPages } = this.ctx;
    const hi = [m, 51].filter((b) => b >= m && b < 52);
    if (shape.entryBytes === 4) {
      if (!leaf || level !== 2) return [];
      return m === 36 ? [21, 17, 18, 20] : [21];
    }
    if (this.isPdpte(level)) return [1, 2, 5, 7, 8, 63, ...hi];
    const xd = nxe ? [] : [63];
    // Bits outside the frame address (XD while NXE=0, PAE bit 62) leave the gfn in a memslot,
    // so KVM's prefetch and sync paths read such an entry as a translation to check (a high
    // address bit sends the gfn out of every memslot first): they get half the picks.
    const keep = shape.pae ? [62, ...xd] : xd;
    if (shape.pae) return [...hi, ...keep, ...keep];
    if (level >= 4) return [7, ...(amd ? [8] : []), ...hi, ...xd];
    if (leaf && level === 3) return [13, 29, ...hi];
    if (leaf && level === 2) return [13, 20, ...hi];
    if (level === 3 && !gbPages) return [7, ...hi];
    return [...hi, ...keep, ...keep];
  }

  /**
   * The frame `la` maps from the root at `root` (gfn plus byte offset of a PAE PDPT), following
   * the image with rights and reserved bits ignored; null if some entry is not present.
   */
  translate(
    root: { gfn: number; base: number },
    la: bigint,
    onEntry?: (gfn: number, offset: number) => void,
  ): number | null {
    const { shape, pse } = this.ctx;
    let table = root.gfn;
    let base = root.base;
    for (let level = shape.top; level >= 1; level--) {
      const offset = base + indexOf(shape, la, level) * shape.entryBytes;
      onEntry?.(table, offset);
      const e = this.image.entry(table, offset, shape.entryBytes);
      if ((e & P) === 0n) return null;
      const large = level > 1 && !this.isPdpte(level) && (e & PS) !== 0n &&
        (shape.entryBytes === 8 || pse);
      if (level === 1 || large) {
        const span = 2 ** levelShiftPages(shape, level);
        const frame = this.gfnOf(e);
        return frame - (frame % span) + Number((la >> 12n) % BigInt(span));
      }
      table = this.gfnOf(e);
      base = 0;
    }
    return null;
  }
}

/** log2 of the 4 KiB pages a level-`level` entry maps. */
export function levelShiftPages(shape: PagingShape, level: number): number {
  return (level - 1) * (shape.entryBytes === 4 ? 10 : 9);
}
