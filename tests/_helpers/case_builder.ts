/**
 * Builders for hand-written test cases: a default CPU and control state per paging mode, memory
 * given as a flat map from physical address to entry value, and one memslot covering it all.
 *
 * @module
 */
import { Case, type CaseJson } from "../../src/model/case.ts";
import type { Op } from "../../src/model/op.ts";
import { hex } from "../../src/model/hex.ts";

/** Guest modes a builder can set up. */
export type GuestMode = "disabled" | "legacy32" | "pae" | "ia32e4" | "ia32e5";

/** What a test may override. Memory is `[physical address, value, bytes?]`; 4-byte values are merged. */
export interface CaseSpec {
  mode: GuestMode;
  cr3?: bigint;
  maxPhyAddr?: number;
  vendor?: "intel" | "amd";
  features?: Partial<CaseJson["cpu"]["features"]>;
  cr0?: Partial<{ pg: boolean; wp: boolean }>;
  cr4?: Partial<CaseJson["control"]["cr4"]>;
  efer?: Partial<{ lme: boolean; nxe: boolean }>;
  pkru?: number;
  rflagsAc?: boolean;
  memory?: readonly (readonly [bigint, bigint] | readonly [bigint, bigint, 4])[];
  memslots?: CaseJson["memslots"];
  program?: readonly unknown[];
  vcpus?: number;
}

/** Memory of a case spec: `[physical address, value, bytes?]` entries, later ones win. */
export type Mem = NonNullable<CaseSpec["memory"]>;

/** Builds and validates a case; throws with the zod message if the spec is not a valid case. */
export function buildCase(spec: CaseSpec): Case {
  const m = spec.mode;
  const pages = new Map<bigint, Map<number, bigint>>();
  for (const [addr, value, bytes] of spec.memory ?? []) {
    const page = pages.get(addr >> 12n) ?? new Map<number, bigint>();
    pages.set(addr >> 12n, page);
    const index = Number((addr >> 3n) & 511n);
    if (bytes === 4) {
      const old = page.get(index) ?? 0n;
      const shift = (addr & 4n) === 0n ? 0n : 32n;
      page.set(index, (old & ~(0xffff_ffffn << shift)) | ((value & 0xffff_ffffn) << shift));
    } else page.set(index, value);
  }
  const json: CaseJson = {
    format: "shadow-mmu-case",
    version: 1,
    cpu: {
      maxPhyAddr: spec.maxPhyAddr ?? 46,
      vendor: spec.vendor ?? "intel",
      features: {
        nx: true,
        pse: true,
        pse36: true,
        gbPages: true,
        smep: true,
        smap: true,
        pku: true,
        la57: true,
        pcid: true,
        ...spec.features,
      },
    },
    control: {
      cr0: { pg: m !== "disabled", wp: true, ...spec.cr0 },
      cr3: hex(spec.cr3 ?? 0x1000n),
      cr4: {
        pse: m === "legacy32",
        pae: m === "pae" || m === "ia32e4" || m === "ia32e5",
        pge: false,
        smep: false,
        smap: false,
        pke: false,
        la57: m === "ia32e5",
        pcide: false,
        ...spec.cr4,
      },
      efer: {
        lme: m === "ia32e4" || m === "ia32e5",
        nxe: m !== "legacy32" && m !== "disabled",
        ...spec.efer,
      },
      pkru: spec.pkru ?? 0,
      rflagsAc: spec.rflagsAc ?? false,
    },
    vcpus: spec.vcpus ?? 1,
    memory: [...pages].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([gfn, words]) => ({
      gfn: hex(gfn),
      words: Object.fromEntries([...words].map(([i, v]) => [String(i), hex(v)])),
    })),
    memslots: spec.memslots ?? [{ slot: 0, baseGfn: "0x0", npages: 1 << 20, readOnly: false }],
    program: (spec.program ?? []) as CaseJson["program"],
  };
  return Case.parse(json);
}

/** Shorthand ops with hex addresses, as JSON would carry them. */
export const op = {
  load: (la: bigint, cpl: 0 | 3 = 0, vcpu = 0) => ({ op: "load", vcpu, la: hex(la), cpl }),
  store: (la: bigint, value: bigint, cpl: 0 | 3 = 0, vcpu = 0) => ({
    op: "store",
    vcpu,
    la: hex(la),
    cpl,
    value: hex(value),
  }),
  fetch: (la: bigint, cpl: 0 | 3 = 0, vcpu = 0) => ({ op: "fetch", vcpu, la: hex(la), cpl }),
  invlpg: (la: bigint, vcpu = 0) => ({ op: "invlpg", vcpu, la: hex(la) }),
  movCr3: (cr3: bigint, noFlush = false, vcpu = 0) => ({
    op: "movCr3",
    vcpu,
    cr3: hex(cr3),
    noFlush,
  }),
  writeCr0: (bits: { pg?: boolean; wp?: boolean }, vcpu = 0) => ({ op: "writeCr0", vcpu, ...bits }),
  writeCr4: (bits: Record<string, boolean>, vcpu = 0) => ({ op: "writeCr4", vcpu, ...bits }),
  writeEfer: (bits: { lme?: boolean; nxe?: boolean }, vcpu = 0) => ({
    op: "writeEfer",
    vcpu,
    ...bits,
  }),
  writePkru: (pkru: number, vcpu = 0) => ({ op: "writePkru", vcpu, pkru }),
  writeRflagsAc: (ac: boolean, vcpu = 0) => ({ op: "writeRflagsAc", vcpu, ac }),
} satisfies Record<string, (...args: never[]) => unknown>;

/** A decoded op from a shorthand (for `machine.step`). */
export function decodeOp(json: unknown): Op {
  return Case.parse({ ...buildCaseJsonSkeleton(), program: [json] }).program[0]!;
}

function buildCaseJsonSkeleton(): Omit<CaseJson, "program"> {
  return {
    format: "shadow-mmu-case",
    version: 1,
    cpu: {
      maxPhyAddr: 52,
      features: {
        nx: true,
        pse: true,
        pse36: true,
        gbPages: true,
        smep: true,
        smap: true,
        pku: true,
        la57: true,
        pcid: true,
      },
    },
    control: {
      cr0: { pg: false, wp: false },
      cr3: "0x0",
      cr4: {
        pse: false,
        pae: false,
        pge: false,
        smep: false,
        smap: false,
        pke: false,
        la57: false,
        pcide: false,
      },
      efer: { lme: false, nxe: false },
    },
    vcpus: 64,
    memslots: [],
  };
}

/**
 * The standard 4-level layout of spec §7: PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at
 * 0x4000, data frame at 0x5000, each entry present, writable, user, A=D=0 (flags 0x7), for the
 * linear address `LA4`. `flags` overrides an entry's low bits per level; `extra` ORs bits in.
 */
export const LA4 = 0x0000_0000_4020_1008n; // PML4[0] PDPT[1] PD[1] PT[1], offset 8
/** Entry addresses of the standard layout for LA4. */
export const ADDR4 = { PML4: 0x1000n, PDPT: 0x2008n, PD: 0x3008n, PT: 0x4008n } as const;

/** Memory entries of the standard 4-level layout, with per-level extra bits (XORed into 0x7). */
export function tables4(
  extra: Partial<Record<"PML4" | "PDPT" | "PD" | "PT", bigint>> = {},
): [bigint, bigint][] {
  return [
    [ADDR4.PML4, 0x2007n ^ (extra.PML4 ?? 0n)],
    [ADDR4.PDPT, 0x3007n ^ (extra.PDPT ?? 0n)],
    [ADDR4.PD, 0x4007n ^ (extra.PD ?? 0n)],
    [ADDR4.PT, 0x5007n ^ (extra.PT ?? 0n)],
  ];
}
