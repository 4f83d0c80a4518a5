/**
 * The fuzz generator: whole cases for the differential runner, as a fast-check arbitrary and as a
 * deterministic per-seed sampler.
 *
 * A case is a flat genome (`fuzz_genome.ts`) mapped into a layout (`fuzz_layout.ts`: roots,
 * self-map slot, buddies, aliases, large pages, holes, reserved bits, MMIO, a page-table window)
 * and a program (`fuzz_program.ts`: accesses at CPL0/3, page-table stores through the self-map,
 * INVLPG, MOV CR3 between roots, control toggles, host events), then validated with `Case.parse`.
 *
 * What keeps cases inside what the SUT runs: no PKU, no PKRU writes, instruction fetches only
 * from RAM that no op removes, page tables in RAM (ROM in a rare variant), gfns below 2^20,
 * valid initial PAE PDPTEs.
 *
 * @example Usage
 * ```ts
 * import { fuzzCase, FUZZ_GENERATOR } from "./fuzz_case.ts";
 * import { equal } from "node:assert/strict";
 * const c = fuzzCase(7, { discipline: "strict", modes: ["ia32e4"] });
 * equal(c.meta.found.generator, FUZZ_GENERATOR);
 * equal(c.meta.found.seed, "7");
 * equal(c.control.cr0.pg, true);
 * ```
 *
 * @module
 */
import fc from "fast-check";
import { Case, type CaseJson } from "../model/case.ts";
import { hex } from "../model/hex.ts";
import { controlOf, cpuOf } from "./fuzz_cpu.ts";
import { type Genome, genomeArbitrary } from "./fuzz_genome.ts";
import { buildLayout } from "./fuzz_layout.ts";
import { ProgramBuilder } from "./fuzz_program.ts";
import { GUEST_MODES, type GuestMode } from "./fuzz_shape.ts";

export type { GuestMode } from "./fuzz_shape.ts";
export { GUEST_MODES } from "./fuzz_shape.ts";

/** The generator's name and version, recorded in every case's `meta.found.generator`. */
export const FUZZ_GENERATOR = "shadow-fuzz@6";

/** The vCPU count of each value of the genome's `vcpus` gene. */
const VCPUS_OF_GENE: readonly number[] = [1, 1, 1, 1, 2, 2, 3, 4];

/**
 * The version of fast-check the generator runs on (the one `deno.json` imports): a case's seed
 * gives the same case only with the same version, so provenance records it.
 */
export const FAST_CHECK_VERSION: string = fc.__version;

/** What to generate. */
export interface FuzzGenOptions {
  /** Guest modes a case may start in (default: all six). */
  modes?: readonly GuestMode[];
  /** Strict: flushes inserted where the architecture needs them; relaxed: none inserted. */
  discipline: "strict" | "relaxed";
  /** Injected SUT bugs to switch on (`sut.inject`). */
  inject?: readonly string[];
  /** vCPUs of every case, 1 to 4 (default: each case draws 1 to 4). */
  vcpus?: number;
  /** A 32-bit host (the split-SPTE protocol) for every case (default: one case in four). */
  host32?: boolean;
  /**
   * Most program genes (default 40). A gene resolves to at most 5 ops: strict flushes, and the
   * relaxed discipline's touches around a PTE store and PCID round trips, come on top.
   */
  maxSteps?: number;
}

/** Builds the case a genome describes. */
function caseOf(g: Genome, options: FuzzGenOptions, modes: readonly GuestMode[]): Case {
  const mode = modes[g.mode % modes.length]!;
  const cpu = cpuOf(mode, g.cpu);
  const control = controlOf(mode, g.control, cpu);
  const vcpus = options.vcpus ?? VCPUS_OF_GENE[g.vcpus]!;
  const host32 = options.host32 ?? g.host32 === 0;
  const layout = buildLayout(g, { mode, cpu, control });
  const { discipline } = options;
  const program = new ProgramBuilder(layout, { cpu, control, vcpus, discipline }).build(g);
  const memory = [...layout.image.pages].sort((a, b) => a[0] - b[0]).flatMap(([gfn, page]) => {
    const words = [...page].filter(([, v]) => v !== 0n).sort((a, b) => a[0] - b[0]);
    if (words.length === 0) return [];
    return [{
      gfn: hex(BigInt(gfn)),
      words: Object.fromEntries(words.map(([i, v]) => [String(i), hex(v)])),
    }];
  });
  const tags = [`mode:${mode}`, `discipline:${options.discipline}`];
  if (vcpus > 1) tags.push(`vcpus:${vcpus}`);
  if (host32) tags.push("host:32");
  if (layout.roots.length > 1) tags.push(`roots:${layout.roots.length}`);
  if (layout.roots.some((r) => r.holder)) tags.push("layout:self-map-slot");
  if (layout.window.some((la) => la !== null)) tags.push("layout:window");
  const json: CaseJson = {
    format: "shadow-mmu-case",
    version: 1,
    cpu,
    control: {
      cr0: { pg: control.pg, wp: control.wp },
      cr3: hex(layout.roots[0]!.cr3),
      cr4: {
        pse: control.pse,
        pae: control.pae,
        pge: control.pge,
        smep: control.smep,
        smap: control.smap,
        pke: false,
        la57: control.la57,
        pcide: control.pcide,
      },
      efer: { lme: control.lme, nxe: control.nxe },
      pkru: 0,
      rflagsAc: control.ac,
    },
    vcpus,
    memory,
    memslots: layout.slots.map((s) => ({
      slot: s.slot,
      baseGfn: hex(BigInt(s.baseGfn)),
      npages: s.npages,
      readOnly: s.readOnly,
    })),
    program: program as CaseJson["program"],
    // Concurrent: the fuzz runner's decider interleaves the threads and records the schedule.
    schedule: [],
    sut: {
      features: {
        prefetch: true,
        unsync: true,
        fastPageFault: true,
        splitSpte: host32,
      },
      inject: [...(options.inject ?? [])],
    },
    meta: {
      title: `fuzz ${mode} ${options.discipline}`,
      found: { by: "fuzz", generator: FUZZ_GENERATOR },
      tags,
    },
  };
  return Case.parse(json);
}

/**
 * The arbitrary of whole cases. Cases carry `meta.found.generator` but no seed (fast-check's
 * runner knows it); {@link fuzzCase} records the seed.
 *
 * @throws {RangeError} on an empty mode list or a `maxSteps` that is not a non-negative integer
 */
export function fuzzCaseArbitrary(options: FuzzGenOptions): fc.Arbitrary<Case> {
  const modes = options.modes ?? GUEST_MODES;
  const maxSteps = options.maxSteps ?? 40;
  if (modes.length === 0) throw new RangeError("Cannot generate cases: no guest mode allowed");
  const v = options.vcpus;
  if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 4)) {
    throw new RangeError(`Cannot generate cases: vcpus ${v} is not 1, 2, 3 or 4`);
  }
  if (!Number.isInteger(maxSteps) || maxSteps < 0) {
    throw new RangeError(
      `Cannot generate cases: maxSteps ${maxSteps} is not a non-negative integer`,
    );
  }
  return genomeArbitrary(modes.length, maxSteps).map((g) => caseOf(g, options, modes));
}

const samplers = new Map<string, fc.Arbitrary<Case>>();

/**
 * The case for one seed: deterministic, the same on every machine (for one fast-check version).
 * The genome is drawn without fast-check's small-value bias, so the distribution is the one the
 * genome documents. The seed is taken modulo 2^32, and mixed with the discipline.
 *
 * @throws {RangeError} when `seed` is not a safe integer, or on bad options
 */
export function fuzzCase(seed: number, options: FuzzGenOptions): Case {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`Cannot generate case: seed ${seed} is not an integer`);
  }
  const key = JSON.stringify([
    options.modes ?? null,
    options.discipline,
    options.inject ?? [],
    options.maxSteps ?? 40,
    options.vcpus ?? null,
    options.host32 ?? null,
  ]);
  let arb = samplers.get(key);
  if (!arb) samplers.set(key, arb = fc.noBias(fuzzCaseArbitrary(options)));
  // The two disciplines draw different genomes for one seed, so a job that runs both covers more.
  const mixed = options.discipline === "relaxed" ? seed ^ 0x5f37_59df : seed;
  // Explicit random type: a global fast-check configuration must not change the case.
  const c = fc.sample(arb, { seed: mixed | 0, numRuns: 1, randomType: "xorshift128plus" })[0]!;
  const meta = { ...c.meta, title: `${c.meta.title} seed ${seed}` };
  return { ...c, meta: { ...meta, found: { ...c.meta.found, seed: String(seed) } } };
}
