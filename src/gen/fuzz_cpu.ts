/**
 * The CPU model and initial control state of a fuzz case, decoded from two packed genes.
 *
 * PKU is always absent (KVM hides it under shadow paging, so a case with CR4.PKE is
 * unsupported). MAXPHYADDR stays at or below the SUT host's 46 most of the time.
 *
 * @module
 */
import type { GuestMode } from "./fuzz_shape.ts";

/** CPUID-visible features, as the case format names them. */
export interface FuzzFeatures {
  nx: boolean;
  pse: boolean;
  pse36: boolean;
  gbPages: boolean;
  smep: boolean;
  smap: boolean;
  pku: boolean;
  la57: boolean;
  pcid: boolean;
}

/** The CPU model of a case. */
export interface FuzzCpu {
  readonly maxPhyAddr: number;
  readonly vendor: "intel" | "amd";
  readonly features: FuzzFeatures;
}

/** The initial control bits of every vCPU (CR3 comes from the layout). */
export interface FuzzControl {
  readonly pg: boolean;
  readonly wp: boolean;
  readonly pse: boolean;
  readonly pae: boolean;
  readonly pge: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  readonly la57: boolean;
  readonly pcide: boolean;
  readonly lme: boolean;
  readonly nxe: boolean;
  readonly ac: boolean;
}

/** MAXPHYADDR choices: 46 (the SUT host's) most often, above 46 in 2 of 16. */
const MAX_PHY_ADDR = [46, 46, 46, 40, 36, 39, 42, 45, 46, 43, 44, 36, 41, 46, 48, 52];

/** True unless the 3-bit field at `shift` is all ones (7 in 8). */
function likely(bits: number, shift: number): boolean {
  return ((bits >> shift) & 7) !== 7;
}

/** The CPU model from its gene. */
export function cpuOf(mode: GuestMode, gene: number): FuzzCpu {
  const legacyPse = mode === "legacy32-pse";
  const features: FuzzFeatures = {
    nx: likely(gene, 7),
    // 32-bit PSE cases keep PSE-36, whose reserved bits KVM hard-wires (kvm-shadow-mmu.md §4.5).
    pse: legacyPse || likely(gene, 10),
    pse36: legacyPse || likely(gene, 13),
    gbPages: likely(gene, 16),
    smep: likely(gene, 19),
    smap: likely(gene, 22),
    pku: false,
    la57: mode === "ia32e5" || ((gene >> 25) & 1) === 1,
    pcid: ((gene >> 26) & 1) === 1,
  };
  return {
    maxPhyAddr: MAX_PHY_ADDR[gene & 15]!,
    vendor: ((gene >> 4) & 7) === 7 ? "amd" : "intel",
    features,
  };
}

/** The initial control state from its gene; every bit the CPU lacks stays clear. */
export function controlOf(mode: GuestMode, gene: number, cpu: FuzzCpu): FuzzControl {
  const f = cpu.features;
  const ia32e = mode === "ia32e4" || mode === "ia32e5";
  return {
    pg: mode !== "disabled",
    wp: (gene & 3) !== 3,
    pse: mode === "legacy32-pse" ||
      (mode !== "legacy32" && f.pse && ((gene >> 11) & 1) === 1),
    pae: mode === "pae" || ia32e,
    pge: ((gene >> 4) & 3) === 3,
    smep: f.smep && ((gene >> 2) & 1) === 1,
    smap: f.smap && ((gene >> 3) & 1) === 1,
    la57: mode === "ia32e5",
    // PCIDs on in 3 of 4 IA-32e cases of a CPU that has them: PCID-tagged root caching is
    // where MOV CR3 with and without NOFLUSH differ.
    pcide: ia32e && f.pcid && ((gene >> 9) & 3) !== 0,
    lme: ia32e,
    nxe: f.nx && ((gene >> 6) & 3) !== 3,
    ac: ((gene >> 8) & 1) === 1,
  };
}
