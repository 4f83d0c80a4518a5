/**
 * The page-fault error code (SDM 3A §4.7, spec §4.1), built in one place.
 *
 * @module
 */
import { PFEC_ID, PFEC_P, PFEC_PK, PFEC_RSVD, PFEC_U, PFEC_W } from "./bits.ts";
import type { Accessor } from "./access_rights.ts";
import { isUserAccess } from "./access_rights.ts";
import type { PagingMode } from "./paging_mode.ts";

/** Why a walk produced a #PF. */
export type FaultReason = "not-present" | "reserved" | "rights";

/** The fetch-related controls the I/D bit depends on. */
export interface IdControls {
  readonly smep: boolean;
}

/**
 * Intel's I/D rule: the access is a fetch and (CR4.SMEP=1 or (CR4.PAE=1 and EFER.NXE=1)). The
 * rule holds for every fault type, not-present included.
 */
function idBit(mode: PagingMode, ctl: IdControls, a: Accessor): boolean {
  return a.kind === "fetch" && (ctl.smep || mode.nxe);
}

/**
 * Builds the error code of a #PF, plus the alternative codes the architecture also allows.
 *
 * The only alternative today is AMD's I/D bit for a fetch fault outside the Intel rule (spec
 * §9.1: accept I/D ∈ {0, 1} for AMD fetch faults with NXE off).
 *
 * @example A user write to a read-only page
 * ```ts
 * import { pageFaultErrorCode } from "./error_code.ts";
 * import { pagingModeOf } from "./paging_mode.ts";
 * import { equal } from "node:assert/strict";
 * const cpu = { maxPhyAddr: 46, vendor: "intel" as const, features: { nx: true, pse: true,
 *   pse36: true, gbPages: true, smep: true, smap: true, pku: true, la57: true, pcid: true } };
 * const mode = pagingModeOf(cpu, { pg: true, pae: true, lme: true, la57: false, pse: false, nxe: true });
 * const ec = pageFaultErrorCode(mode, { smep: false }, { kind: "write", cpl: 3,
 *   implicitSupervisor: false }, "rights", false);
 * equal(ec.errorCode, 0x07);
 * ```
 */
export function pageFaultErrorCode(
  mode: PagingMode,
  ctl: IdControls,
  a: Accessor,
  reason: FaultReason,
  pkFault: boolean,
): { errorCode: number; alternatives: number[] } {
  let ec = 0;
  if (reason !== "not-present") ec |= PFEC_P;
  if (reason === "reserved") ec |= PFEC_RSVD;
  if (a.kind === "write") ec |= PFEC_W;
  if (isUserAccess(a)) ec |= PFEC_U;
  if (idBit(mode, ctl, a)) ec |= PFEC_ID;
  if (reason === "rights" && pkFault && a.kind !== "fetch") ec |= PFEC_PK;
  const alternatives: number[] = [];
  if (mode.vendor === "amd" && a.kind === "fetch" && !mode.nxe) alternatives.push(ec ^ PFEC_ID);
  return { errorCode: ec, alternatives };
}
