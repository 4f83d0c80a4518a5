/**
 * The program of a fuzz case: op genes resolved against the layout, in program order, with the
 * strict discipline's flushes inserted.
 *
 * Strict rule (simple and safe): after any store (it may have hit a page table, directly or
 * through an alias), any control-register write or any memslot change, every vCPU concerned
 * owes a flush; before its next access it gets a MOV CR3 to its current CR3 (noFlush=false), or,
 * while CR4.PGE=1 (global pages survive MOV CR3), a CR4.PGE toggle.
 *
 * @module
 */
import { hex } from "../model/hex.ts";
import type { FuzzControl, FuzzCpu } from "./fuzz_cpu.ts";
import type { AccessGene, ControlGene, Genome, HostGene, PteGene } from "./fuzz_genome.ts";
import type { Layout, Root } from "./fuzz_layout.ts";
import { pteValue, tableLa } from "./fuzz_pte.ts";
import {
  GFN,
  isPermanentRam,
  levelShift,
  type PlanSlot,
  REMOVABLE_SLOTS,
  SLOT_RANGE,
} from "./fuzz_shape.ts";
import type { PageTables, Table } from "./fuzz_tables.ts";

/** Program disciplines (ARCHITECTURE.md §7). */
export type Discipline = "strict" | "relaxed";

/** What the program runs on. */
export interface ProgramSetup {
  readonly cpu: FuzzCpu;
  readonly control: FuzzControl;
  readonly vcpus: number;
  readonly discipline: Discipline;
}

type Toggle = "wp" | "smep" | "smap" | "pge" | "pse" | "nxe" | "ac";
type VcpuState = Record<Toggle, boolean> & {
  root: number;
  pending: boolean;
  /** Roots this vCPU has loaded (whose shadow KVM may have built). */
  loaded: Set<number>;
};

const U64 = (1n << 64n) - 1n;

/** Resolves op genes into JSON ops. */
export class ProgramBuilder {
  readonly ops: Record<string, unknown>[] = [];
  readonly #lay: Layout;
  readonly #pt: PageTables | null;
  readonly #cpu: FuzzCpu;
  readonly #control: FuzzControl;
  readonly #strict: boolean;
  readonly #vcpus: VcpuState[];
  readonly #slots = new Map<number, PlanSlot>();
  readonly #logging = new Set<number>();
  /** Which linear addresses' walks read a word: gfn * 512 + word index -> addresses. */
  readonly #affects = new Map<number, Set<bigint>>();
  /** Addresses whose walk the last page-table store touched. */
  #recent: bigint[] = [];
  /**
   * The gfns of the tables some access of the program so far walks through (in the layout as
   * built): KVM has likely shadowed those already.
   */
  readonly #walked = new Set<number>();

  constructor(lay: Layout, setup: ProgramSetup) {
    const { cpu, control, vcpus, discipline } = setup;
    this.#lay = lay;
    this.#pt = lay.pt;
    this.#cpu = cpu;
    this.#control = control;
    this.#strict = discipline === "strict" && lay.pt !== null;
    this.#vcpus = Array.from({ length: vcpus }, () => ({
      root: 0,
      pending: false,
      loaded: new Set([0]),
      wp: control.wp,
      smep: control.smep,
      smap: control.smap,
      pge: control.pge,
      pse: control.pse,
      nxe: control.nxe,
      ac: control.ac,
    }));
    for (const s of lay.slots) this.#slots.set(s.slot, s);
    const pt = lay.pt;
    if (!pt) return;
    for (const root of lay.roots) {
      for (const la of [...lay.mapped, ...lay.extra]) {
        pt.translate(root.table!, la, (gfn, offset) => {
          const key = gfn * 512 + (offset >> 3);
          const las = this.#affects.get(key);
          if (las) las.add(la);
          else this.#affects.set(key, new Set([la]));
        });
      }
    }
  }

  /** Resolves every gene of the genome. */
  build(g: Genome): Record<string, unknown>[] {
    for (const [i, gene] of g.ops.entries()) {
      switch (gene.t) {
        case "access":
          this.#access(gene, i);
          break;
        case "pte":
          this.#pteStore(gene, i);
          break;
        case "invlpg":
          this.ops.push({
            op: "invlpg",
            vcpu: this.#v(gene.vcpu),
            la: hex(this.#target(gene.target)),
          });
          break;
        case "cr3":
          if (gene.trip >= 1 && this.#roundTrip(gene.root, gene.noFlush, this.#v(gene.vcpu))) {
            break;
          }
          this.#movCr3(gene.root, gene.noFlush, this.#v(gene.vcpu));
          break;
        case "control":
          this.#toggle(gene);
          break;
        case "host":
          this.#host(gene);
          break;
      }
    }
    return this.ops;
  }

  #v(gene: number): number {
    return gene % this.#vcpus.length;
  }

  /** A linear address of the layout: recently edited walks first, then mappings, then others. */
  #target(n: number): bigint {
    const lay = this.#lay;
    if (n < 12 && this.#recent.length > 0) return this.#recent[n % this.#recent.length]!;
    if (n < 44 && lay.mapped.length > 0) return lay.mapped[n % lay.mapped.length]!;
    return lay.extra[(n * 7) % lay.extra.length]!;
  }

  /** The strict discipline's flush, if vCPU `v` owes one. */
  #flush(v: number): void {
    const s = this.#vcpus[v]!;
    if (!this.#strict || !s.pending) return;
    if (s.pge) {
      this.ops.push({ op: "writeCr4", vcpu: v, pge: false }, {
        op: "writeCr4",
        vcpu: v,
        pge: true,
      });
    } else {
      this.ops.push({
        op: "movCr3",
        vcpu: v,
        cr3: hex(this.#lay.roots[s.root]!.cr3),
        noFlush: false,
      });
    }
    s.pending = false;
  }

  #owe(v: number | null): void {
    for (const [i, s] of this.#vcpus.entries()) if (v === null || v === i) s.pending = true;
  }

  #fetchSafe(v: number, la: bigint): boolean {
    const root = this.#lay.roots[this.#vcpus[v]!.root]!;
    const gfn = this.#pt && root.table
      ? this.#pt.translate(root.table, la)
      : Number((la & 0xffff_ffffn) >> 12n);
    return gfn === null || isPermanentRam(gfn);
  }

  #access(g: AccessGene, i: number): void {
    const v = this.#v(g.vcpu);
    let kind = g.kind < 5 ? "load" : g.kind < 8 ? "store" : "fetch";
    let la = this.#twist(this.#target(g.target), g.twist, g.word);
    if (kind === "fetch" && !this.#fetchSafe(v, la)) {
      const all = [...this.#lay.mapped, ...this.#lay.extra];
      const safe = all.find((x, j) => j >= g.target % all.length && this.#fetchSafe(v, x)) ??
        all.find((x) => this.#fetchSafe(v, x));
      if (safe === undefined) kind = "load";
      else la = safe;
    }
    this.#flush(v);
    this.#walk(v, la);
    const cpl = g.cpl3 ? 3 : 0;
    if (kind !== "store") {
      this.ops.push({ op: kind, vcpu: v, la: hex(la), cpl });
      return;
    }
    // P=0: a data value that lands in a page table leaves a not-present entry, never a PAE
    // PDPTE with reserved bits that would make every later PDPTE load (MOV CR3) #GP.
    const value = (0x5a5an << 48n) | (BigInt(i + 1) << 12n) | BigInt(g.word & 0xffe);
    this.ops.push({ op: "store", vcpu: v, la: hex(la), cpl, value: hex(value) });
    this.#owe(null);
  }

  #twist(la: bigint, twist: number, word: number): bigint {
    const shape = this.#lay.shape;
    let out = la + BigInt(word < 512 ? 0 : (word - 512) * 8);
    if (twist === 13) out += 0x1000n;
    else if (twist === 14) out += 1n << BigInt(shape ? levelShift(shape, 2) : 21);
    else if (twist === 15) out ^= 1n << BigInt(shape && shape.laBits > 32 ? shape.laBits : 32);
    return out & U64 & ~7n;
  }

  /** Records the tables vCPU `v`'s walk of `la` reads (see {@link #walked}). */
  #walk(v: number, la: bigint): void {
    const root = this.#lay.roots[this.#vcpus[v]!.root]!;
    if (this.#pt && root.table) this.#pt.translate(root.table, la, (gfn) => this.#walked.add(gfn));
  }

  /**
   * The table of a race (see {@link #pteStore}): the gene's, or the next one in the layout that
   * no access has walked through yet and some mapped address walks through. A race shows most
   * when KVM has not shadowed the table: the first store then maps it writable, and shadowing
   * it in the middle of the race must write-protect it and flush every TLB.
   */
  #raceTable(g: PteGene, root: Root): Table | undefined {
    const tables = this.#pt!.tables;
    // Page tables first: KVM shadows the upper levels of 32-bit and PAE paging when it loads
    // the root, and a store to a shadowed upper-level table is emulated, never mapped writable.
    for (const level of [1, 0]) {
      for (let k = 0; k < tables.length; k++) {
        const t = tables[(g.table + k) % tables.length]!;
        if (level !== 0 && t.level !== level) continue;
        if (this.#walked.has(t.gfn) || tableLa(this.#lay, t, root, g.via) === null) continue;
        for (let w = 0; w < 512; w++) if (this.#affects.has(t.gfn * 512 + w)) return t;
      }
    }
    return tables[g.table % tables.length];
  }

  /** A store of a plausible entry into a page table, through the self-map slot or the window. */
  #pteStore(g: PteGene, i: number): void {
    const pt = this.#pt;
    const v = this.#v(g.vcpu);
    const root = this.#lay.roots[this.#vcpus[v]!.root]!;
    const racing = !this.#strict && g.trip <= 1 && this.#vcpus.length >= 2;
    const t = !pt
      ? undefined
      : racing
      ? this.#raceTable(g, root)
      : pt.tables[g.table % pt.tables.length];
    const tla = pt && t ? tableLa(this.#lay, t, root, g.via) : null;
    if (!pt || !t || tla === null) {
      // No table reachable: a data store instead.
      return this.#access({ ...g, t: "access", kind: 5, target: g.pick, word: 0, twist: 0 }, i);
    }
    const used = [...t.used].sort((a, b) => a - b);
    const sel = g.entry % (used.length + 1);
    let e = sel < used.length ? used[sel]! : (g.entry * 13 + 1) % pt.size(t);
    // A race needs an entry some address walks through.
    const walkedThrough = (x: number) =>
      this.#affects.has(t.gfn * 512 + ((t.base + x * pt.ctx.shape.entryBytes) >> 3));
    if (racing && !walkedThrough(e)) e = used.find(walkedThrough) ?? e;
    const bytes = pt.ctx.shape.entryBytes;
    const offset = t.base + e * bytes;
    const fresh = pteValue(pt, t, e, g);
    let value = fresh;
    if (bytes === 4) {
      const first = e & ~1;
      const lo = first === e ? fresh : pt.get(t, first);
      const hi = first === e ? pt.get(t, first + 1) : fresh;
      value = (hi << 32n) | lo;
    }
    this.#flush(v);
    const la = tla + BigInt(offset & ~7);
    const affected = [...(this.#affects.get(t.gfn * 512 + (offset >> 3)) ?? [])];
    // Relaxed discipline: a process touches a page, the OS edits its PTE without invalidating
    // it (with PCIDs: and switches to another process and back, no flush on the way back), and
    // the process touches the page again. What KVM cached from the first touch is what the edit
    // made stale; a store after an MMIO retarget exits on the read-only SPTE of the first touch.
    const touch = !this.#strict && g.trip >= 2 && affected.length > 0;
    const target = hex(affected[0] ?? 0n);
    // A race on the table (relaxed, two vCPUs or more): this vCPU edits the entry through the
    // table's mapping, another walks through the table (shadowing it: write-protect, flush), this
    // vCPU edits the entry again (R/W flipped; through its TLB entry, if a flush missed it), and the other
    // invalidates and walks again. The schedule decides how they overlap.
    const race = racing && affected.length > 0;
    if (race) {
      const other = (v + 1 + (g.pick % (this.#vcpus.length - 1))) % this.#vcpus.length;
      const store = { op: "store" as const, vcpu: v, la: hex(la), cpl: g.cpl3 ? 3 : 0 };
      this.ops.push(
        { ...store, value: hex(value) },
        { op: "load", vcpu: other, la: target, cpl: 0 },
        { ...store, value: hex(value ^ 0x2n) },
        { op: "invlpg", vcpu: other, la: target },
        { op: "load", vcpu: other, la: target, cpl: 0 },
      );
      this.#walk(v, la);
      this.#walk(other, affected[0]!);
      this.#owe(null);
      this.#recent = affected;
      return;
    }
    if (touch) this.ops.push({ op: "load", vcpu: v, la: target, cpl: 0 });
    this.ops.push({ op: "store", vcpu: v, la: hex(la), cpl: g.cpl3 ? 3 : 0, value: hex(value) });
    this.#walk(v, la);
    if (touch) this.#walk(v, affected[0]!);
    this.#owe(null);
    this.#recent = affected;
    if (touch) {
      if (this.#canRoundTrip()) this.#roundTrip(g.pick, true, v);
      // A PAE PDPTE is read into a register on MOV CR3 and on a CR4 write that changes PGE, PSE
      // or SMEP, not one that changes SMAP (SDM Vol. 3A §4.4.1): toggle one before the touch.
      if (pt.isPdpte(t.level)) {
        this.#toggle({ t: "control", vcpu: g.vcpu, which: [1, 2, 3, 4][g.pick % 4]! });
      }
      if (g.value === 8) {
        const data = (0x5a5an << 48n) | (BigInt(i + 1) << 12n) | 8n;
        this.ops.push({ op: "store", vcpu: v, la: target, cpl: 0, value: hex(data) });
      } else this.ops.push({ op: "load", vcpu: v, la: target, cpl: 0 });
    }
  }

  #movCr3(rootGene: number, noFlushGene: boolean, v: number): void {
    const s = this.#vcpus[v]!;
    s.root = rootGene % this.#lay.roots.length;
    s.loaded.add(s.root);
    const noFlush = !this.#strict && this.#control.pcide && noFlushGene;
    this.ops.push({ op: "movCr3", vcpu: v, cr3: hex(this.#lay.roots[s.root]!.cr3), noFlush });
    if (!s.pge && !noFlush) s.pending = false;
  }

  /**
   * A context switch away and back, as an OS with PCIDs does it: a flushing MOV CR3 to another
   * root (one that shares the current root's PCID if there is one, the flush must then retire
   * every cached translation of that PCID, the current root's included; and one this vCPU has
   * not loaded yet if there is one, so that the sync of the new root does not reach the current
   * root's pages), then MOV CR3 back to the current root with NOFLUSH. Relaxed discipline with
   * CR4.PCIDE=1 and two roots or more; returns false (nothing emitted) otherwise.
   */
  #canRoundTrip(): boolean {
    return !this.#strict && this.#control.pcide && this.#lay.roots.length >= 2;
  }

  #roundTrip(rootGene: number, noFlushGene: boolean, v: number): boolean {
    const roots = this.#lay.roots;
    if (!noFlushGene || !this.#canRoundTrip()) return false;
    const s = this.#vcpus[v]!;
    const pcid = (i: number) => roots[i]!.cr3 & 0xfffn;
    const others = roots.map((_, i) => i).filter((i) => i !== s.root);
    const same = others.filter((i) => pcid(i) === pcid(s.root));
    const other = same.find((i) => !s.loaded.has(i)) ?? same[0] ??
      others[rootGene % others.length]!;
    s.loaded.add(other);
    this.ops.push(
      { op: "movCr3", vcpu: v, cr3: hex(roots[other]!.cr3), noFlush: false },
      { op: "movCr3", vcpu: v, cr3: hex(roots[s.root]!.cr3), noFlush: true },
    );
    return true;
  }

  #toggle(g: ControlGene): void {
    const v = this.#v(g.vcpu);
    const s = this.#vcpus[v]!;
    const f = this.#cpu.features;
    const names: Toggle[] = ["wp", "smep", "smap", "pge", "pse", "nxe", "ac", "ac"];
    let which = names[g.which]!;
    const supported = {
      wp: true,
      smep: f.smep,
      smap: f.smap,
      pge: true,
      pse: f.pse,
      nxe: f.nx,
      ac: true,
    };
    if (!supported[which]) which = "ac";
    const on = !s[which];
    s[which] = on;
    if (which === "wp") this.ops.push({ op: "writeCr0", vcpu: v, wp: on });
    else if (which === "nxe") this.ops.push({ op: "writeEfer", vcpu: v, nxe: on });
    else if (which === "ac") this.ops.push({ op: "writeRflagsAc", vcpu: v, ac: on });
    else this.ops.push({ op: "writeCr4", vcpu: v, [which]: on });
    if (which === "pge") s.pending = false;
    else if (which !== "ac") this.#owe(v);
  }

  /**
   * After a memslot change, later accesses aim first (as after a page-table store) at the
   * addresses vCPU 0 maps into the gfns that changed between RAM and MMIO: what KVM cached for
   * them (MMIO SPTEs, the MMIO info cache, RAM SPTEs) is what the change must retire.
   */
  #aimAt(baseGfn: number, npages: number): void {
    const root = this.#lay.roots[this.#vcpus[0]!.root]!;
    const las = [...this.#lay.mapped, ...this.#lay.extra].filter((la) => {
      const gfn = this.#pt && root.table
        ? this.#pt.translate(root.table, la)
        : Number((la & 0xffff_ffffn) >> 12n);
      return gfn !== null && gfn >= baseGfn && gfn < baseGfn + npages;
    });
    if (las.length > 0) this.#recent = las;
  }

  /** The memslot now holding `gfn`, if any. */
  #slotOf(gfn: number): number | undefined {
    for (const s of this.#slots.values()) {
      if (gfn >= s.baseGfn && gfn < s.baseGfn + s.npages) return s.slot;
    }
    return undefined;
  }

  #host(g: HostGene): void {
    // Dirty logging goes mostly to slots that hold the layout's tables and mapped frames.
    const used = this.#lay.frames.map((gfn) => this.#slotOf(gfn));
    const present = [...this.#slots.keys()].sort((a, b) => a - b);
    const pool = [...new Set(used.filter((s) => s !== undefined))].sort((a, b) => a - b);
    const any = (g.b & 1) === 0 && pool.length > 0
      ? pool[g.a % pool.length]!
      : present[g.a % present.length] ?? 0;
    switch (g.which) {
      case 0:
      case 1:
      case 2:
        this.ops.push({ op: "dirtyLogEnable", slot: any, enable: g.b % 4 !== 0 });
        if (g.b % 4 !== 0) this.#logging.add(any);
        else this.#logging.delete(any);
        return;
      case 3:
      case 4:
      case 9: {
        const logging = [...this.#logging].sort((a, b) => a - b);
        const slot = logging.length > 0 && g.which !== 9 ? logging[g.a % logging.length]! : any;
        this.ops.push({ op: "dirtyLogGetAndClear", slot });
        return;
      }
      case 5:
      case 6: {
        const id = REMOVABLE_SLOTS[g.a % REMOVABLE_SLOTS.length]!;
        const old = this.#slots.get(id);
        if (old) {
          this.ops.push({ op: "memslotRemove", slot: id });
          this.#slots.delete(id);
          this.#logging.delete(id);
          this.#aimAt(old.baseGfn, old.npages);
        } else {
          const [baseGfn, npages] = SLOT_RANGE[id]!;
          const readOnly = g.b % 8 === 7;
          this.ops.push({
            op: "memslotAdd",
            slot: id,
            baseGfn: hex(BigInt(baseGfn)),
            npages,
            readOnly,
          });
          this.#slots.set(id, { slot: id, baseGfn, npages, readOnly });
          this.#aimAt(baseGfn, npages);
        }
        this.#owe(null);
        return;
      }
      case 7: {
        const frames = this.#lay.frames.length > 0 ? this.#lay.frames : [GFN.code];
        const npages = [1, 1, 1, 2, 8, 512][g.b % 6]!;
        const frame = frames[g.a % frames.length]!;
        const gfn = frame - (frame % npages);
        this.ops.push({ op: "hostUnmap", gfn: hex(BigInt(gfn)), npages });
        return;
      }
      default:
        this.ops.push({ op: "randomZap", pick: g.a * 64 + g.b });
    }
  }
}
