/**
 * The genome of a fuzz case: a flat record of small integers and independent arrays, which
 * `fuzz_layout.ts` and `fuzz_program.ts` turn into a case in a plain `.map` (no `.chain`).
 *
 * Every reference between parts is an index taken modulo the length of what it refers to, and
 * every integer's 0 is the plain choice (LA 0, permissive rights, no alias, no reserved bit), so
 * fast-check shrinks a case toward few mappings at address 0 and few ops. Arrays have
 * `minLength` 0.
 *
 * @module
 */
import fc from "fast-check";

/** One mapping of the initial address space. */
export interface MapGene {
  /** Per-level index menu choices, packed (see `mappingLa`). */
  readonly la: number;
  /** Which root (CR3) it goes into, modulo the number of roots. */
  readonly root: number;
  /** Page size: 0-5 4 KiB, 6-7 2/4 MiB, 8-9 1 GiB where the mode has one (else 2/4 MiB). */
  readonly size: number;
  /** Leaf target kind (0-99, see `fuzz_layout.ts`) and which frame of that kind. */
  readonly target: number;
  readonly pick: number;
  /** Rights of each level, 6 bits per level (0 = P|W|U, executable). */
  readonly rights: number;
  /** Leaf and path flag bits: A per level, D, G. */
  readonly flags: number;
  /** 0-11 none; else link an existing table at a level of the path (aliasing). */
  readonly alias: number;
  /** 0-27 none; else one reserved bit in one entry this mapping writes. */
  readonly rsvd: number;
  /** 0-13 none; else the path stops with a non-present entry. */
  readonly hole: number;
}

/** A guest access (load, store, fetch) to one of the layout's linear addresses. */
export interface AccessGene {
  readonly t: "access";
  /** 0-4 load, 5-7 store, 8-9 fetch. */
  readonly kind: number;
  readonly target: number;
  /** 0-511: word 0; 512-1023: word (n - 512). */
  readonly word: number;
  /** 0-12 as is; 13 next page; 14 next PD entry; 15 non-canonical (or high bits). */
  readonly twist: number;
  readonly cpl3: boolean;
  readonly vcpu: number;
}

/** A store of a plausible paging-structure entry into a page table, through a self-map. */
export interface PteGene {
  readonly t: "pte";
  readonly table: number;
  readonly entry: number;
  /**
   * Kind of the new value: 0-2 a table or frame of the right kind, 3 a table at a wrong level or
   * as a leaf (self-map), 4 a large page, 5-6 new rights on the same frame, 7 not present,
   * 8 MMIO, 9 one reserved bit.
   */
  readonly value: number;
  readonly pick: number;
  readonly rights: number;
  /** Reach the table through the recursive slot (odd) or the window (even), if both exist. */
  readonly via: number;
  readonly cpl3: boolean;
  /**
   * 2 or 3 (relaxed discipline): a load of an address the store retargets before it, and after
   * it (with PCIDs, after a context switch away and back, {@link Cr3Gene.trip}) a load again, or
   * a store for an MMIO retarget. 0 or 1 (relaxed, two vCPUs or more): a race on the table, see
   * `ProgramBuilder`; else a plain store.
   */
  readonly trip: number;
  readonly vcpu: number;
}

/** INVLPG of one of the layout's linear addresses. */
export interface InvlpgGene {
  readonly t: "invlpg";
  readonly target: number;
  readonly vcpu: number;
}

/** MOV CR3 to one of the roots. */
export interface Cr3Gene {
  readonly t: "cr3";
  readonly root: number;
  /** PCID no-flush (relaxed discipline with CR4.PCIDE only). */
  readonly noFlush: boolean;
  /** 1 to 3: with `noFlush`, a round trip (flush to another root, then back with NOFLUSH). */
  readonly trip: number;
  readonly vcpu: number;
}

/** A toggle of CR0.WP, CR4.SMEP/SMAP/PGE/PSE, EFER.NXE or RFLAGS.AC. */
export interface ControlGene {
  readonly t: "control";
  /** 0 WP, 1 SMEP, 2 SMAP, 3 PGE, 4 PSE, 5 NXE, 6-7 AC. */
  readonly which: number;
  readonly vcpu: number;
}

/** A host event. */
export interface HostGene {
  readonly t: "host";
  /** 0-2 dirty-log enable/disable, 3-4 and 9 get-and-clear, 5-6 memslot add/remove, 7 unmap, 8 zap. */
  readonly which: number;
  readonly a: number;
  readonly b: number;
}

/** One program step before resolution. */
export type OpGene = AccessGene | PteGene | InvlpgGene | Cr3Gene | ControlGene | HostGene;

/** The whole genome. */
export interface Genome {
  /** Index into the options' modes. */
  readonly mode: number;
  /** MAXPHYADDR choice, vendor and CPUID features, packed. */
  readonly cpu: number;
  /** Initial CR0.WP, CR4 and EFER bits, RFLAGS.AC, packed. */
  readonly control: number;
  /**
   * 0-3: one vCPU, 4-5: two, 6: three, 7: four, unless the options fix the number. Half the
   * cases have one vCPU: most bugs need a sequence of ops on one vCPU, which more vCPUs spread
   * thin; the race patterns need two or more.
   */
  readonly vcpus: number;
  /** 0: a 32-bit host (split-SPTE protocol); else a 64-bit one, unless the options say. */
  readonly host32: number;
  /** Number of roots: 0-3 one, 4-5 two, 6-7 three. */
  readonly roots: number;
  /** PCIDs and PAE PDPT offsets of the roots, packed. */
  readonly rootBits: number;
  /** 0-3: no recursive self-map slot; else one in every root. */
  readonly selfMap: number;
  readonly selfRights: number;
  /** 0: no page-table window; else every table is mapped in it. */
  readonly window: number;
  readonly windowRights: readonly number[];
  /** Memslot variants, packed. */
  readonly slots: number;
  readonly mappings: readonly MapGene[];
  readonly ops: readonly OpGene[];
}

/** An integer in [0, max]; it shrinks toward 0, the plain choice. */
function u(max: number): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max });
}

const vcpu = u(3);

const mapGene: fc.Arbitrary<MapGene> = fc.record({
  la: u(0xffff),
  root: u(3),
  size: u(9),
  target: u(99),
  pick: u(63),
  rights: u(0x3fff_ffff),
  flags: u(0xfff),
  alias: u(15),
  rsvd: u(31),
  hole: u(15),
});

const accessGene: fc.Arbitrary<AccessGene> = fc.record({
  t: fc.constant("access" as const),
  kind: u(9),
  target: u(63),
  word: u(1023),
  twist: u(15),
  cpl3: fc.boolean(),
  vcpu,
});

const pteGene: fc.Arbitrary<PteGene> = fc.record({
  t: fc.constant("pte" as const),
  table: u(63),
  entry: u(63),
  value: u(9),
  pick: u(63),
  rights: u(0xfff),
  via: u(1),
  cpl3: u(3).map((n) => n === 3, (v) => (v ? 3 : 0)),
  trip: u(3),
  vcpu,
});

const opGene: fc.Arbitrary<OpGene> = fc.oneof(
  { arbitrary: accessGene, weight: 42 },
  { arbitrary: pteGene, weight: 20 },
  {
    arbitrary: fc.record({ t: fc.constant("invlpg" as const), target: u(63), vcpu }),
    weight: 7,
  },
  {
    arbitrary: fc.record({
      t: fc.constant("cr3" as const),
      root: u(3),
      noFlush: fc.boolean(),
      trip: u(3),
      vcpu,
    }),
    weight: 10,
  },
  { arbitrary: fc.record({ t: fc.constant("control" as const), which: u(7), vcpu }), weight: 10 },
  {
    arbitrary: fc.record({ t: fc.constant("host" as const), which: u(9), a: u(63), b: u(63) }),
    weight: 11,
  },
);

/** The genome arbitrary for `modeCount` modes and programs of at most `maxSteps` genes. */
export function genomeArbitrary(modeCount: number, maxSteps: number): fc.Arbitrary<Genome> {
  return fc.record({
    mode: u(modeCount - 1),
    cpu: u(0x3fff_ffff),
    control: u(0xffff),
    vcpus: u(7),
    host32: u(3),
    roots: u(7),
    rootBits: u(0xffff),
    selfMap: u(9),
    selfRights: u(0xfff),
    window: u(9),
    windowRights: fc.array(u(0xfff), { maxLength: 4, size: "max" }),
    slots: u(0x3ff),
    mappings: fc.array(mapGene, { maxLength: 12, size: "max" }),
    ops: fc.array(opGene, { maxLength: maxSteps, size: "max" }),
  });
}
