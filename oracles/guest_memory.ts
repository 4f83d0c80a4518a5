/**
 * Guest physical memory as the oracle sees it, with the full history of every write so that the
 * TLB model can ask what an entry held at any earlier time (spec §6.5).
 *
 * Time is counted in completed steps: time 0 is the initial state and a write made while step n
 * runs (steps count from 1) is part of the state at time n. A gfn outside every memslot is MMIO:
 * it reads as zero and drops writes; a read-only memslot drops writes (ROM).
 *
 * @module
 */
import type { Case, Memslot } from "../src/model/case.ts";

const PAGE_WORDS = 512;
/** What a page no one wrote reads as. */
const ZERO_PAGE: Readonly<BigUint64Array> = new BigUint64Array(PAGE_WORDS);

/** A piece of a word's history: it held `value` at every time in `[from, to]`. */
export interface Segment {
  readonly value: bigint;
  readonly from: number;
  readonly to: number;
  /**
   * The value held in the early part of step `to` only: before that step's data store replaced
   * it, after the step's A/D writes to other entries (see {@link GuestMemory.write}).
   */
  readonly beforeStore?: true;
}

/** What happened to a write. */
export type WriteFate = "written" | "mmio" | "rom";

/** Guest physical memory with history and memslots. */
export class GuestMemory {
  #pages = new Map<bigint, BigUint64Array>();
  /** Per 8-byte word address: change times (ascending) and the values from then on. */
  #history = new Map<bigint, { times: number[]; values: bigint[] }>();
  /** The words of each page that have a history (keys of {@link #history}), by gfn. */
  #historyByPage = new Map<bigint, bigint[]>();
  /**
   * Values a word held only inside a step: overwritten later in the same step (an access's A/D
   * update, then its own store). Another processor, or this one, may have cached them.
   */
  #transients = new Map<bigint, { t: number; value: bigint }[]>();
  /**
   * Values a word held when step `t` began and kept until that step's data store replaced them
   * (the store was the word's first write in the step). Within a step the access's A/D writes
   * come first, so in between, the A bits just set elsewhere and this old value coexist: a
   * speculative walk for another address at that moment may cache both.
   */
  #beforeStore = new Map<bigint, { t: number; value: bigint }[]>();
  /** Memslot layouts over time: `[time, slots]`, ascending. */
  #slotHistory: [number, readonly Memslot[]][] = [];
  #now = 0;

  /** Loads a case's memory image and memslots as the state at time 0. */
  constructor(c: Pick<Case, "memory" | "memslots">) {
    for (const page of c.memory) {
      const words = new BigUint64Array(PAGE_WORDS);
      for (const [index, value] of Object.entries(page.words)) words[Number(index)] = value;
      this.#pages.set(page.gfn, words);
    }
    this.#slotHistory.push([0, [...c.memslots]]);
  }

  /** The current time: the number of the step being executed (0 before the first). */
  get now(): number {
    return this.#now;
  }

  /** Starts step `n`: writes from now on are stamped `n`. */
  beginStep(n: number): void {
    if (n < this.#now) throw new RangeError(`Cannot go back in time: ${n} < ${this.#now}`);
    this.#now = n;
  }

  /** The memslots now. */
  get slots(): readonly Memslot[] {
    return this.#slotHistory[this.#slotHistory.length - 1]![1];
  }

  /** Replaces the memslot layout (a host event) from the current step on. */
  setSlots(slots: readonly Memslot[]): void {
    const last = this.#slotHistory[this.#slotHistory.length - 1]!;
    if (last[0] === this.#now) last[1] = [...slots];
    else this.#slotHistory.push([this.#now, [...slots]]);
  }

  /** The memslot holding `gfn` at time `t` (default: now), or undefined for MMIO. */
  slotOf(gfn: bigint, t: number = this.#now): Memslot | undefined {
    let slots = this.#slotHistory[0]![1];
    for (const [time, s] of this.#slotHistory) if (time <= t) slots = s;
    return slots.find((s) => gfn >= s.baseGfn && gfn < s.baseGfn + BigInt(s.npages));
  }

  /** The backing store's current value of the aligned 8-byte word at `addr`. */
  #backing(addr: bigint): bigint {
    return this.#pages.get(addr >> 12n)?.[Number((addr >> 3n) & 511n)] ?? 0n;
  }

  /** The 8-byte word at `addr` (aligned down) as the guest sees it now. */
  readWord(addr: bigint): bigint {
    return this.slotOf(addr >> 12n) ? this.#backing(addr & ~7n) : 0n;
  }

  /** Reads 4 or 8 bytes (naturally aligned) as the guest sees them now. */
  read(addr: bigint, bytes: 4 | 8): bigint {
    const word = this.readWord(addr);
    if (bytes === 8) return word;
    return (addr & 4n) === 0n ? word & 0xffff_ffffn : word >> 32n;
  }

  /** The 8-byte word at `addr` as the guest saw it at time `t`. */
  readWordAt(addr: bigint, t: number): bigint {
    const word = addr & ~7n;
    if (!this.slotOf(word >> 12n, t)) return 0n;
    const h = this.#history.get(word);
    if (!h) return this.#backing(word);
    let value = h.values[0]!;
    for (let i = 0; i < h.times.length && h.times[i]! <= t; i++) value = h.values[i]!;
    return value;
  }

  /** Reads 4 or 8 bytes as the guest saw them at time `t`. */
  readAt(addr: bigint, bytes: 4 | 8, t: number): bigint {
    const word = this.readWordAt(addr, t);
    if (bytes === 8) return word;
    return (addr & 4n) === 0n ? word & 0xffff_ffffn : word >> 32n;
  }

  /**
   * The distinct values the entry at `addr` held during `[from, to]`, as maximal segments, plus
   * one-step pieces for values held only inside a step (overwritten later in that step). Slot
   * changes count as changes (a gfn may turn into MMIO and back).
   */
  segments(addr: bigint, bytes: 4 | 8, from: number, to: number): Segment[] {
    const out = this.#stepSegments(addr, bytes, from, to);
    // Values held only inside a step (see #transients), as one-step pieces of their own.
    const part = (word: bigint) =>
      bytes === 8 ? word : (addr & 4n) === 0n ? word & 0xffff_ffffn : word >> 32n;
    for (const tr of this.#transients.get(addr & ~7n) ?? []) {
      if (tr.t < from || tr.t > to) continue;
      const value = part(tr.value);
      if (!out.some((p) => p.value === value && p.from <= tr.t && tr.t <= p.to)) {
        out.push({ value, from: tr.t, to: tr.t });
      }
    }
    // Values held at the start of a step until its store (see #beforeStore): one-step pieces
    // flagged so that a chain does not pair them with the store's own new value.
    for (const b of this.#beforeStore.get(addr & ~7n) ?? []) {
      if (b.t < from || b.t > to) continue;
      const value = part(b.value);
      if (!out.some((p) => p.value === value && p.from <= b.t && b.t <= p.to)) {
        out.push({ value, from: b.t, to: b.t, beforeStore: true });
      }
    }
    return out;
  }

  #stepSegments(addr: bigint, bytes: 4 | 8, from: number, to: number): Segment[] {
    const word = addr & ~7n;
    const changes = new Set<number>([from]);
    for (const t of this.#history.get(word)?.times ?? []) if (t > from && t <= to) changes.add(t);
    for (const [t] of this.#slotHistory) if (t > from && t <= to) changes.add(t);
    const times = [...changes].sort((a, b) => a - b);
    const out: Segment[] = [];
    times.forEach((t, i) => {
      const value = this.readAt(addr, bytes, t);
      const end = i + 1 < times.length ? times[i + 1]! - 1 : to;
      const last = out[out.length - 1];
      if (last && last.value === value) out[out.length - 1] = { value, from: last.from, to: end };
      else out.push({ value, from: t, to: end });
    });
    return out;
  }

  /**
   * Writes 4 or 8 bytes as the guest does. MMIO and ROM drop the write; the result says which.
   * `store` marks the access's data write, which comes after every A/D write of its step.
   */
  write(addr: bigint, bytes: 4 | 8, value: bigint, store = false): WriteFate {
    const gfn = addr >> 12n;
    const slot = this.slotOf(gfn);
    if (!slot) return "mmio";
    if (slot.readOnly) return "rom";
    const word = addr & ~7n;
    const old = this.#backing(word);
    const next = bytes === 8
      ? value
      : (addr & 4n) === 0n
      ? (old & 0xffff_ffff_0000_0000n) | (value & 0xffff_ffffn)
      : (old & 0xffff_ffffn) | ((value & 0xffff_ffffn) << 32n);
    let page = this.#pages.get(gfn);
    if (!page) {
      page = new BigUint64Array(PAGE_WORDS);
      this.#pages.set(gfn, page);
    }
    page[Number((word >> 3n) & 511n)] = next;
    let h = this.#history.get(word);
    if (!h) {
      h = { times: [0], values: [old] };
      this.#history.set(word, h);
      const list = this.#historyByPage.get(gfn);
      if (list) list.push(word);
      else this.#historyByPage.set(gfn, [word]);
    }
    if (h.times[h.times.length - 1] === this.#now) {
      const before = h.values[h.values.length - 1]!;
      if (before !== next) {
        const list = this.#transients.get(word) ?? [];
        list.push({ t: this.#now, value: before });
        this.#transients.set(word, list);
      }
      h.values[h.values.length - 1] = next;
    } else {
      if (store && old !== next) {
        const list = this.#beforeStore.get(word) ?? [];
        list.push({ t: this.#now, value: old });
        this.#beforeStore.set(word, list);
      }
      h.times.push(this.#now);
      h.values.push(next);
    }
    return "written";
  }

  /**
   * Page `gfn` as the guest saw it at time `t` (default: now), all 512 words: what
   * {@link readWordAt} gives for each, read at once. Now, it is the backing page itself, without
   * copying (do not modify); a page outside every memslot, or never written, reads as zeros.
   */
  pageAt(gfn: bigint, t?: number): Readonly<BigUint64Array> {
    if (!this.slotOf(gfn, t ?? this.#now)) return ZERO_PAGE;
    const live = this.#pages.get(gfn);
    if (t === undefined || !live) return live ?? ZERO_PAGE;
    const words = this.#historyByPage.get(gfn);
    if (!words) return live;
    const out = live.slice();
    for (const word of words) {
      const h = this.#history.get(word)!;
      let value = h.values[0]!;
      for (let i = 0; i < h.times.length && h.times[i]! <= t; i++) value = h.values[i]!;
      out[Number((word >> 3n) & 511n)] = value;
    }
    return out;
  }

  /** The backing store's page `gfn`, if it has one, without copying (do not modify). */
  page(gfn: bigint): Readonly<BigUint64Array> | undefined {
    return this.#pages.get(gfn);
  }

  /** The backing store's pages, in no particular order, without copying (do not modify). */
  pages(): IterableIterator<[bigint, Readonly<BigUint64Array>]> {
    return this.#pages.entries();
  }

  /** Every non-zero word of the backing store, by page, for reports and comparison. */
  image(): Map<bigint, BigUint64Array> {
    return new Map(
      [...this.#pages].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([g, p]) => [g, p.slice()]),
    );
  }
}
