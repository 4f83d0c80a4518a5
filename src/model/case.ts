/**
 * The case format: one self-contained, versioned JSON document per test case.
 *
 * A case fixes the "hardware" (CPU model), the initial architectural state of every vCPU, guest
 * physical memory, the memslots, the program, how the system under test is configured and where
 * the case came from. Both the oracle and the SUT read exactly this and nothing else.
 *
 * Conventions:
 * - every 64-bit quantity is a `"0x…"` string (JSON numbers lose bits above 2^53);
 * - EFER.LMA is not stored: it is derived as CR0.PG ∧ EFER.LME (SDM 3A §2.2.1), so a case
 *   cannot hold an inconsistent LMA;
 * - memory is sparse: pages that are absent read as zero;
 * - a gfn outside every memslot is MMIO. The harness's MMIO device reads as zero and drops
 *   writes, which is also what KVM's walker sees for a page-table gfn with no memslot;
 * - a read-only memslot is ROM: guest writes to it, including A/D updates, are dropped.
 *
 * @module
 */
import { z } from "zod";
import { Gfn, Hex64, Op } from "./op.ts";

/** The format name every case carries. */
export const CASE_FORMAT = "shadow-mmu-case";
/** The current case-format version. */
export const CASE_VERSION = 1;

/** CPUID-visible paging features of the modelled processor. */
export const CpuFeatures = z.strictObject({
  /** CPUID.80000001H:EDX[20]: EFER.NXE may be set. */
  nx: z.boolean(),
  /** CPUID.1:EDX[3]: CR4.PSE may be set (4-MiB pages in 32-bit paging). */
  pse: z.boolean(),
  /** CPUID.1:EDX[17]: 4-MiB pages map physical addresses above 4 GiB. */
  pse36: z.boolean(),
  /** CPUID.80000001H:EDX[26]: 1-GiB pages. */
  gbPages: z.boolean(),
  /** CPUID.7.0:EBX[7]. */
  smep: z.boolean(),
  /** CPUID.7.0:EBX[20]. */
  smap: z.boolean(),
  /** CPUID.7.0:ECX[3]: protection keys for user-mode pages. */
  pku: z.boolean(),
  /** CPUID.7.0:ECX[16]: 5-level paging. */
  la57: z.boolean(),
  /** CPUID.1:ECX[17]: process-context identifiers. */
  pcid: z.boolean(),
});

/** The processor model: fixed for the whole case. */
export const CpuModel = z.strictObject({
  /** MAXPHYADDR (CPUID.80000008H:EAX[7:0]). */
  maxPhyAddr: z.int().min(36).max(52),
  /** Vendor: decides the few vendor-specific rules (AMD reserves bit 8 of PML4Es/PML5Es). */
  vendor: z.enum(["intel", "amd"]).default("intel"),
  features: CpuFeatures,
});

/** The architectural control state every vCPU starts with. */
export const ControlState = z.strictObject({
  cr0: z.strictObject({ pg: z.boolean(), wp: z.boolean() }),
  /** CR3 as a 64-bit value; with CR4.PCIDE=1 bits 11:0 are the PCID. */
  cr3: Hex64,
  cr4: z.strictObject({
    pse: z.boolean(),
    pae: z.boolean(),
    pge: z.boolean(),
    smep: z.boolean(),
    smap: z.boolean(),
    pke: z.boolean(),
    la57: z.boolean(),
    pcide: z.boolean(),
  }),
  /** EFER; LMA is derived as CR0.PG ∧ LME. */
  efer: z.strictObject({ lme: z.boolean(), nxe: z.boolean() }),
  /** PKRU: key i has AD at bit 2i and WD at bit 2i+1. */
  pkru: z.int().min(0).max(0xffff_ffff).default(0),
  /** RFLAGS.AC (SMAP override for explicit supervisor accesses). */
  rflagsAc: z.boolean().default(false),
});

/** Index of a 64-bit word inside a 4-KiB page, as a JSON object key ("0" to "511"). */
const WordIndex = z.string().regex(/^(0|[1-9][0-9]{0,2})$/, "expected a word index 0..511")
  .refine((k) => Number(k) < 512, { message: "expected a word index 0..511" });

/** One 4-KiB page of guest memory: the non-zero 64-bit words by index. */
export const MemoryPage = z.strictObject({
  gfn: Gfn,
  words: z.record(WordIndex, Hex64),
});

/** A memslot: guest frames `[baseGfn, baseGfn + npages)` backed by host memory. */
export const Memslot = z.strictObject({
  slot: z.int().min(0).max(32767),
  baseGfn: Gfn,
  npages: z.int().min(1).max(1 << 20),
  readOnly: z.boolean().default(false),
});

/** Mechanisms of the system under test that can be switched off (all on by default). */
export const SutFeatures = z.strictObject({
  prefetch: z.boolean().default(true),
  unsync: z.boolean().default(true),
  fastPageFault: z.boolean().default(true),
  /** Model a 32-bit host: SPTEs are written and read as two halves (split-SPTE protocol). */
  splitSpte: z.boolean().default(false),
});

/** How the system under test runs this case. */
export const SutOptions = z.strictObject({
  features: SutFeatures.default(SutFeatures.parse({})),
  /** Names of injected historical bugs to switch on. */
  inject: z.array(z.string().min(1)).default([]),
});

/** Where a case came from and what it shows. */
export const CaseMeta = z.strictObject({
  title: z.string().default(""),
  found: z.strictObject({
    by: z.enum(["hand", "fuzz", "minimize", "sweep"]).default("hand"),
    seed: z.string().optional(),
    generator: z.string().optional(),
    date: z.string().optional(),
    /** The fast-check version the generator ran on (e.g. "4.10.2"): a seed replays with it. */
    fastCheck: z.string().optional(),
  }).default({ by: "hand" }),
  /** Divergence signature, used to deduplicate findings. */
  signature: z.string().optional(),
  tags: z.array(z.string()).default([]),
  notes: z.string().optional(),
});

const CaseObject = z.strictObject({
  format: z.literal(CASE_FORMAT),
  version: z.literal(CASE_VERSION),
  cpu: CpuModel,
  control: ControlState,
  vcpus: z.int().min(1).max(64).default(1),
  memory: z.array(MemoryPage).default([]),
  memslots: z.array(Memslot),
  program: z.array(Op),
  /**
   * A concurrent case: the threads' interleaving, as thread indices (vCPU i is thread i, the
   * host thread, which runs the host events, is thread `vcpus`). Absent: the program runs
   * sequentially, op by op. See `src/shadow/scheduler.ts`.
   */
  schedule: z.array(z.int().min(0).max(64)).max(100_000).optional(),
  // Defaults built per parse: zod copies a default value only shallowly, so a shared object
  // would hand every case the same `sut.features`, `sut.inject`, `meta.found` and `meta.tags`.
  sut: SutOptions.default(() => SutOptions.parse({})),
  meta: CaseMeta.default(() => CaseMeta.parse({})),
});

/**
 * A test case. Beyond field shapes it checks what the format itself can know: vCPU indices in
 * range, memslots that do not overlap, unique memory pages, control bits the CPU model has, and
 * a legal initial mode, once every field has the right shape. Architectural checks that need the
 * page tables (PAE PDPTE reserved bits) belong to the oracle.
 */
export const Case = CaseObject.superRefine((c, ctx) => {
  const feature = c.cpu.features;
  const need = (ok: boolean, path: (string | number)[], message: string) => {
    if (!ok) ctx.addIssue({ code: "custom", path, message });
  };
  const cr4 = c.control.cr4;
  need(!cr4.pse || feature.pse, ["control", "cr4", "pse"], "CR4.PSE needs cpu.features.pse");
  need(!cr4.smep || feature.smep, ["control", "cr4", "smep"], "CR4.SMEP needs cpu.features.smep");
  need(!cr4.smap || feature.smap, ["control", "cr4", "smap"], "CR4.SMAP needs cpu.features.smap");
  need(!cr4.pke || feature.pku, ["control", "cr4", "pke"], "CR4.PKE needs cpu.features.pku");
  need(!cr4.la57 || feature.la57, ["control", "cr4", "la57"], "CR4.LA57 needs cpu.features.la57");
  need(
    !cr4.pcide || feature.pcid,
    ["control", "cr4", "pcide"],
    "CR4.PCIDE needs cpu.features.pcid",
  );
  need(
    !c.control.efer.nxe || feature.nx,
    ["control", "efer", "nxe"],
    "EFER.NXE needs cpu.features.nx",
  );
  const lma = c.control.cr0.pg && c.control.efer.lme;
  need(
    !lma || cr4.pae,
    ["control", "cr4", "pae"],
    "IA-32e mode (CR0.PG and EFER.LME) needs CR4.PAE",
  );
  need(!cr4.pcide || lma, ["control", "cr4", "pcide"], "CR4.PCIDE needs IA-32e mode");
  const cr3 = c.control.cr3;
  need(
    cr3 >> BigInt(c.cpu.maxPhyAddr) === 0n,
    ["control", "cr3"],
    `CR3 has bits at or above MAXPHYADDR (${c.cpu.maxPhyAddr})`,
  );
  need(
    lma || cr3 >> 32n === 0n,
    ["control", "cr3"],
    "CR3 bits 63:32 must be 0 outside IA-32e mode",
  );

  c.program.forEach((op, i) => {
    if ("vcpu" in op && op.vcpu >= c.vcpus) {
      need(false, ["program", i, "vcpu"], `vCPU ${op.vcpu} does not exist (vcpus is ${c.vcpus})`);
    }
  });

  c.schedule?.forEach((t, i) => {
    if (t > c.vcpus) {
      need(false, ["schedule", i], `thread ${t} does not exist (threads 0..${c.vcpus})`);
    }
  });

  const seen = new Map<bigint, number>();
  c.memory.forEach((page, i) => {
    const first = seen.get(page.gfn);
    need(first === undefined, ["memory", i, "gfn"], `page ${page.gfn} repeats memory[${first}]`);
    seen.set(page.gfn, i);
  });

  const slots = new Map<number, number>();
  c.memslots.forEach((slot, i) => {
    const first = slots.get(slot.slot);
    need(first === undefined, ["memslots", i, "slot"], `slot id repeats memslots[${first}]`);
    slots.set(slot.slot, i);
    need(
      slot.baseGfn + BigInt(slot.npages) <= 1n << 40n,
      ["memslots", i, "npages"],
      "memslot ends above gfn 2^40",
    );
    c.memslots.forEach((other, j) => {
      if (j >= i) return;
      const overlap = slot.baseGfn < other.baseGfn + BigInt(other.npages) &&
        other.baseGfn < slot.baseGfn + BigInt(slot.npages);
      need(!overlap, ["memslots", i], `memslot overlaps memslots[${j}]`);
    });
  });
}, {
  // Only on a value whose every field parsed: zod runs refinements after non-aborting issues
  // too (a failed hex pattern leaves a string where a bigint belongs, and `cr3 >> n` throws).
  when: (payload) => payload.issues.length === 0,
});

/** A decoded case (bigints for 64-bit values, defaults filled in). */
export type Case = z.output<typeof Case>;
/** A case as JSON text holds it. */
export type CaseJson = z.input<typeof Case>;
/** The CPU model. */
export type CpuModel = z.output<typeof CpuModel>;
/** The control state. */
export type ControlState = z.output<typeof ControlState>;
/** A memslot. */
export type Memslot = z.output<typeof Memslot>;
