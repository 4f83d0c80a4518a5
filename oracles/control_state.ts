/**
 * A vCPU's architectural control state and what writes to it do: validity (#GP), PAE PDPTE
 * register loads, and the TLB invalidations they imply (SDM 3A §4.4.1, §4.10.4; spec §1.2, §6.2).
 *
 * @module
 */
import type { ControlState, CpuModel } from "../src/model/case.ts";
import type { Op } from "../src/model/op.ts";
import { bits } from "./bits.ts";
import { paePdpteReservedMask } from "./entry_format.ts";
import { isIa32e, type PagingMode, pagingModeOf } from "./paging_mode.ts";
import type { WalkContext } from "./walk.ts";

/** A vCPU's control state, including its PAE PDPTE registers. */
export interface VcpuControl {
  readonly cr0: { readonly pg: boolean; readonly wp: boolean };
  readonly cr3: bigint;
  readonly cr4: {
    readonly pse: boolean;
    readonly pae: boolean;
    readonly pge: boolean;
    readonly smep: boolean;
    readonly smap: boolean;
    readonly pke: boolean;
    readonly la57: boolean;
    readonly pcide: boolean;
  };
  readonly efer: { readonly lme: boolean; readonly nxe: boolean };
  readonly pkru: number;
  readonly rflagsAc: boolean;
  /** PDPTE0-3, loaded while PAE paging is in use; null otherwise. */
  readonly pdpteRegs: readonly bigint[] | null;
}

/** A TLB/paging-structure-cache invalidation an event causes (spec §6.2). */
export type Invalidation =
  /** Everything, global entries and every PCID included. */
  | { readonly kind: "all" }
  /** Non-global TLB entries and every PSC entry of one PCID. */
  | { readonly kind: "pcid"; readonly pcid: number }
  /** INVLPG: la's page in `pcid`, la's global entries in any PCID, and every PSC of `pcid`. */
  | { readonly kind: "invlpg"; readonly pcid: number; readonly la: bigint }
  /** #PF on la: every TLB entry for la (global too) and the PSC entries la would use. */
  | { readonly kind: "pf"; readonly pcid: number; readonly la: bigint };

/** The result of a control-register write: the new state and flushes, or #GP. */
export type ControlWrite =
  | {
    readonly kind: "ok";
    readonly next: VcpuControl;
    readonly invalidations: readonly Invalidation[];
  }
  | { readonly kind: "gp"; readonly reason: string };

/** Reads 8 bytes of guest memory now. */
export type WordReader = (addr: bigint) => bigint;

/** EFER.LMA = CR0.PG ∧ EFER.LME. */
export function lmaOf(ctl: VcpuControl): boolean {
  return ctl.cr0.pg && ctl.efer.lme;
}

/** The paging mode a control state selects. */
export function modeOf(
  cpu: CpuModel,
  ctl: VcpuControl,
  pdpteSource?: "registers" | "memory",
): PagingMode {
  return pagingModeOf(cpu, {
    pg: ctl.cr0.pg,
    pae: ctl.cr4.pae,
    lme: ctl.efer.lme,
    la57: ctl.cr4.la57,
    pse: ctl.cr4.pse,
    nxe: ctl.efer.nxe,
  }, pdpteSource ? { pdpteSource } : {});
}

/** The current PCID: CR3[11:0] with CR4.PCIDE=1, else 0. */
export function pcidOf(ctl: VcpuControl): number {
  return ctl.cr4.pcide ? Number(ctl.cr3 & 0xfffn) : 0;
}

/** The top table's base from CR3 (spec §1.1–§1.3). */
export function rootOf(mode: PagingMode, cr3: bigint): bigint {
  switch (mode.kind) {
    case "legacy32":
      return cr3 & 0xffff_f000n;
    case "pae":
      return cr3 & 0xffff_ffe0n;
    case "ia32e4":
    case "ia32e5":
      return cr3 & bits(mode.maxPhyAddr - 1, 12);
    case "disabled":
      return 0n;
  }
}

/** Builds the walker's context from a control state. */
export function walkContextOf(
  cpu: CpuModel,
  ctl: VcpuControl,
  pdpteSource: "registers" | "memory" = "registers",
): WalkContext {
  const mode = modeOf(cpu, ctl, pdpteSource);
  const ia32e = isIa32e(mode);
  return {
    mode,
    root: rootOf(mode, ctl.cr3),
    pdpteRegs: mode.kind === "pae" && pdpteSource === "registers" ? ctl.pdpteRegs : null,
    pge: ctl.cr4.pge,
    wp: ctl.cr0.wp,
    smep: ctl.cr4.smep,
    smap: ctl.cr4.smap,
    rflagsAc: ctl.rflagsAc,
    pke: ia32e && ctl.cr4.pke,
    pks: false,
    pkru: ctl.pkru,
    pkrs: 0,
  };
}

/** The outcomes of loading the PAE PDPTE registers from the PDPT at `cr3` (spec §1.2). */
export function loadPdptes(
  cpu: CpuModel,
  cr3: bigint,
  read: WordReader,
): { regs: bigint[]; gp: string | null; gpAllowed: string | null } {
  const base = cr3 & 0xffff_ffe0n;
  const mask = paePdpteReservedMask(cpu.maxPhyAddr);
  const regs = [0, 1, 2, 3].map((i) => read(base + BigInt(i * 8)));
  let gp: string | null = null;
  let gpAllowed: string | null = null;
  regs.forEach((e, i) => {
    if ((e & mask) === 0n) return;
    const why = `PDPTE${i} = 0x${e.toString(16)} has reserved bits 0x${(e & mask).toString(16)}`;
    if ((e & 1n) === 1n) gp ??= why;
    // SDM footnote: some processors check reserved bits in not-present PDPTEs too.
    else gpAllowed ??= `${why} (not present: some processors check it)`;
  });
  return { regs, gp, gpAllowed };
}

/** A case whose initial architectural state cannot exist (its `path` is the JSON path to blame). */
export class InitialStateError extends RangeError {
  /** JSONPath of the part of the case to blame. */
  readonly path: string;
  /** Builds the error. */
  constructor(path: string, message: string) {
    super(message);
    this.name = "InitialStateError";
    this.path = path;
  }
}

/**
 * Where a PAE walk takes its PDPTEs from: the PDPTE registers loaded at MOV CR3 and mode changes
 * (Intel, AMD without nested paging), or memory at each walk (AMD NPT, spec §1.6: no load, so no
 * #GP at MOV CR3, and a reserved PDPTE bit faults at the access instead).
 */
export type PdpteSource = "registers" | "memory";

/**
 * The initial control state of every vCPU, from a case: PDPTE registers are loaded from memory
 * when the source is "registers".
 */
export function initialControl(
  cpu: CpuModel,
  c: ControlState,
  read: WordReader,
  pdpteSource: PdpteSource = "registers",
): VcpuControl {
  const ctl: VcpuControl = { ...c, pdpteRegs: null };
  if (pdpteSource === "memory") return ctl;
  return withPdptes(cpu, ctl, read, "initial state");
}

function withPdptes(cpu: CpuModel, ctl: VcpuControl, read: WordReader, what: string): VcpuControl {
  if (modeOf(cpu, ctl).kind !== "pae") return { ...ctl, pdpteRegs: null };
  const load = loadPdptes(cpu, ctl.cr3, read);
  if (load.gp) {
    throw new InitialStateError(
      "$.control.cr3",
      `Cannot load PDPTE registers for the ${what}: ${load.gp}`,
    );
  }
  return { ...ctl, pdpteRegs: load.regs };
}

/**
 * A PDPTE load as a list of alternatives: ok with the new registers, and/or #GP. With PDPTEs
 * read from memory at each walk there is no load and nothing to fault on.
 */
function pdpteAlternatives(
  cpu: CpuModel,
  next: VcpuControl,
  read: WordReader,
  invalidations: Invalidation[],
  source: PdpteSource,
): ControlWrite[] {
  if (source === "memory") {
    return [{ kind: "ok", next: { ...next, pdpteRegs: null }, invalidations }];
  }
  const load = loadPdptes(cpu, next.cr3, read);
  if (load.gp) return [{ kind: "gp", reason: load.gp }];
  const ok: ControlWrite = { kind: "ok", next: { ...next, pdpteRegs: load.regs }, invalidations };
  return load.gpAllowed ? [ok, { kind: "gp", reason: load.gpAllowed }] : [ok];
}

/**
 * Applies a control op (MOV CR3, MOV CR0, MOV CR4, WRMSR EFER, PKRU, RFLAGS.AC) and returns every
 * architecturally allowed result; more than one only where the SDM leaves a choice (a reserved
 * bit in a not-present PAE PDPTE).
 *
 * Policy: the model has no code segment. Accesses made while EFER.LMA=1 run in 64-bit mode; a
 * MOV to CR0 that clears PG with LMA=1 is taken to run in compatibility mode, as it must.
 */
export function writeControl(
  cpu: CpuModel,
  ctl: VcpuControl,
  op: Extract<
    Op,
    { op: "movCr3" | "writeCr0" | "writeCr4" | "writeEfer" | "writePkru" | "writeRflagsAc" }
  >,
  read: WordReader,
  pdpteSource: PdpteSource = "registers",
): ControlWrite[] {
  const gp = (reason: string): ControlWrite[] => [{ kind: "gp", reason }];
  const mode = modeOf(cpu, ctl);
  const changedMode = (next: VcpuControl) => modeOf(cpu, next).kind !== mode.kind;
  switch (op.op) {
    case "movCr3": {
      if (isIa32e(mode)) {
        if (op.noFlush && !ctl.cr4.pcide) return gp("CR3 bit 63 is reserved with CR4.PCIDE=0");
        if (op.cr3 >> BigInt(cpu.maxPhyAddr) !== 0n) {
          return gp("CR3 has bits at or above MAXPHYADDR");
        }
        const next = { ...ctl, cr3: op.cr3 };
        const flush: Invalidation[] = op.noFlush ? [] : [{ kind: "pcid", pcid: pcidOf(next) }];
        return [{ kind: "ok", next, invalidations: flush }];
      }
      // Outside 64-bit mode the operand is 32 bits wide (no bit 63, no PCIDs).
      const next = { ...ctl, cr3: op.cr3 & 0xffff_ffffn };
      const flush: Invalidation[] = [{ kind: "pcid", pcid: 0 }];
      if (mode.kind === "pae") return pdpteAlternatives(cpu, next, read, flush, pdpteSource);
      return [{ kind: "ok", next, invalidations: flush }];
    }
    case "writeCr0": {
      const cr0 = { pg: op.pg ?? ctl.cr0.pg, wp: op.wp ?? ctl.cr0.wp };
      const next: VcpuControl = { ...ctl, cr0 };
      if (cr0.pg && !ctl.cr0.pg && ctl.efer.lme && !ctl.cr4.pae) {
        return gp("entering IA-32e mode needs CR4.PAE");
      }
      if (!cr0.pg && ctl.cr0.pg && ctl.cr4.pcide) {
        return gp("CR0.PG cannot be cleared with CR4.PCIDE=1");
      }
      const flush: Invalidation[] = (ctl.cr0.pg && !cr0.pg) || changedMode(next)
        ? [{ kind: "all" }]
        : [];
      if (modeOf(cpu, next).kind === "pae" && cr0.pg !== ctl.cr0.pg) {
        return pdpteAlternatives(cpu, next, read, flush, pdpteSource);
      }
      return [{
        kind: "ok",
        next: { ...next, pdpteRegs: modeOf(cpu, next).kind === "pae" ? ctl.pdpteRegs : null },
        invalidations: flush,
      }];
    }
    case "writeCr4": {
      const cr4 = {
        pse: op.pse ?? ctl.cr4.pse,
        pae: op.pae ?? ctl.cr4.pae,
        pge: op.pge ?? ctl.cr4.pge,
        smep: op.smep ?? ctl.cr4.smep,
        smap: op.smap ?? ctl.cr4.smap,
        pke: op.pke ?? ctl.cr4.pke,
        la57: op.la57 ?? ctl.cr4.la57,
        pcide: op.pcide ?? ctl.cr4.pcide,
      };
      const f = cpu.features;
      if (cr4.pse && !f.pse) return gp("CR4.PSE is not supported");
      if (cr4.smep && !f.smep) return gp("CR4.SMEP is not supported");
      if (cr4.smap && !f.smap) return gp("CR4.SMAP is not supported");
      if (cr4.pke && !f.pku) return gp("CR4.PKE is not supported");
      if (cr4.la57 && !f.la57) return gp("CR4.LA57 is not supported");
      if (cr4.pcide && !f.pcid) return gp("CR4.PCIDE is not supported");
      const lma = lmaOf(ctl);
      if (lma && cr4.la57 !== ctl.cr4.la57) return gp("CR4.LA57 cannot change while EFER.LMA=1");
      if (lma && !cr4.pae) return gp("CR4.PAE cannot be cleared while EFER.LMA=1");
      if (cr4.pcide && !ctl.cr4.pcide && (!lma || (ctl.cr3 & 0xfffn) !== 0n)) {
        return gp("CR4.PCIDE can be set only with EFER.LMA=1 and CR3[11:0]=0");
      }
      const next: VcpuControl = { ...ctl, cr4 };
      const flush: Invalidation[] = [];
      if (cr4.pge !== ctl.cr4.pge || (ctl.cr4.pcide && !cr4.pcide) || changedMode(next)) {
        flush.push({ kind: "all" });
      } else if (cr4.pae !== ctl.cr4.pae || (cr4.smep && !ctl.cr4.smep)) {
        flush.push({ kind: "pcid", pcid: pcidOf(ctl) });
      }
      const reloads = cr4.pae !== ctl.cr4.pae || cr4.pge !== ctl.cr4.pge ||
        cr4.pse !== ctl.cr4.pse ||
        cr4.smep !== ctl.cr4.smep;
      if (modeOf(cpu, next).kind === "pae" && reloads) {
        return pdpteAlternatives(cpu, next, read, flush, pdpteSource);
      }
      return [{
        kind: "ok",
        next: { ...next, pdpteRegs: modeOf(cpu, next).kind === "pae" ? ctl.pdpteRegs : null },
        invalidations: flush,
      }];
    }
    case "writeEfer": {
      const efer = { lme: op.lme ?? ctl.efer.lme, nxe: op.nxe ?? ctl.efer.nxe };
      if (efer.nxe && !cpu.features.nx) return gp("EFER.NXE is not supported");
      if (efer.lme !== ctl.efer.lme && ctl.cr0.pg) {
        return gp("EFER.LME cannot change while CR0.PG=1");
      }
      // No invalidation is required for an NXE change (spec §6.2); the TLB model accepts stale
      // entries under either interpretation of XD (spec §9.6).
      return [{ kind: "ok", next: { ...ctl, efer }, invalidations: [] }];
    }
    case "writePkru":
      return [{ kind: "ok", next: { ...ctl, pkru: op.pkru }, invalidations: [] }];
    case "writeRflagsAc":
      return [{ kind: "ok", next: { ...ctl, rflagsAc: op.ac }, invalidations: [] }];
  }
}
