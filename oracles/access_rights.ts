/**
 * Access rights: the decision table of spec §3.3 (SDM 3A §4.6), written as a plain if-chain.
 *
 * @module
 */

/** The three kinds of access (a read-modify-write counts as a write). */
export type AccessKind = "read" | "write" | "fetch";

/** Rights of a translation, combined over every level of its path (spec §3.2). */
export interface CombinedRights {
  /** AND of R/W. */
  readonly w: boolean;
  /** AND of U/S: true for a user-mode address. */
  readonly u: boolean;
  /** OR of XD (already 0 where XD is not interpreted). */
  readonly xd: boolean;
  /** Protection key of the leaf (IA-32e with PKE or PKS), else 0. */
  readonly pkey: number;
}

/** The control state that rights are evaluated against at the time of the access. */
export interface RightsControls {
  readonly wp: boolean;
  readonly smep: boolean;
  readonly smap: boolean;
  readonly rflagsAc: boolean;
  /** CR4.PKE in effect (IA-32e only). */
  readonly pke: boolean;
  /** CR4.PKS in effect (IA-32e only). */
  readonly pks: boolean;
  readonly pkru: number;
  readonly pkrs: number;
}

/** Who performs the access. */
export interface Accessor {
  readonly kind: AccessKind;
  readonly cpl: number;
  /** An implicit supervisor-mode access (GDT/LDT/IDT/TSS): supervisor whatever the CPL. */
  readonly implicitSupervisor: boolean;
}

/** The verdict of the rights check. */
export interface RightsVerdict {
  /** The ordinary rights (U/S, R/W, XD, SMEP, SMAP) forbid the access. */
  readonly violation: boolean;
  /** The protection-key condition blocks the access (sets PK in the error code). */
  readonly pkFault: boolean;
}

/** An access is user-mode iff CPL = 3 and it is not an implicit supervisor access (spec §3.1). */
export function isUserAccess(a: Accessor): boolean {
  return a.cpl === 3 && !a.implicitSupervisor;
}

function keyBits(register: number, key: number): { ad: boolean; wd: boolean } {
  return { ad: ((register >>> (2 * key)) & 1) === 1, wd: ((register >>> (2 * key + 1)) & 1) === 1 };
}

/**
 * Decides whether an access with the given combined rights is allowed (spec §3.3, §3.4): the
 * ordinary violation and the protection-key condition are computed separately, as a union.
 *
 * @example CR0.WP=0 lets a supervisor write a read-only page
 * ```ts
 * import { checkRights } from "./access_rights.ts";
 * import { equal } from "node:assert/strict";
 * const ctl = { wp: false, smep: false, smap: false, rflagsAc: false, pke: false, pks: false,
 *   pkru: 0, pkrs: 0 };
 * const v = checkRights({ w: false, u: false, xd: false, pkey: 0 }, ctl,
 *   { kind: "write", cpl: 0, implicitSupervisor: false });
 * equal(v.violation, false);
 * ```
 */
export function checkRights(r: CombinedRights, ctl: RightsControls, a: Accessor): RightsVerdict {
  const user = isUserAccess(a);
  const data = a.kind !== "fetch";
  let violation: boolean;
  let pkFault = false;
  if (user) {
    if (a.kind === "read") violation = !r.u;
    else if (a.kind === "write") violation = !(r.u && r.w); // CR0.WP is irrelevant for users
    else violation = !(r.u && !r.xd);
    if (data && r.u && ctl.pke) {
      const k = keyBits(ctl.pkru, r.pkey);
      pkFault = k.ad || (a.kind === "write" && k.wd);
    } else if (data && !r.u && ctl.pks) {
      // User access to a supervisor page under PKS: it faults anyway; whether PK is set is open
      // (spec §9.2). Policy "keys first" (Bochs, Xen): report PK when the key blocks.
      const k = keyBits(ctl.pkrs, r.pkey);
      pkFault = k.ad || (a.kind === "write" && k.wd);
    }
  } else {
    // SMAP blocks supervisor data accesses to user-mode addresses unless an explicit access
    // runs with RFLAGS.AC=1; implicit accesses are always checked.
    const smapBlocks = ctl.smap && (a.implicitSupervisor || !ctl.rflagsAc);
    if (a.kind === "read") violation = r.u && smapBlocks;
    else if (a.kind === "write") violation = (r.u && smapBlocks) || (!r.w && ctl.wp);
    else violation = r.xd || (r.u && ctl.smep); // SMAP never covers fetches
    if (data && r.u && ctl.pke) {
      const k = keyBits(ctl.pkru, r.pkey);
      pkFault = k.ad || (a.kind === "write" && k.wd && ctl.wp);
    } else if (data && !r.u && ctl.pks) {
      const k = keyBits(ctl.pkrs, r.pkey);
      pkFault = k.ad || (a.kind === "write" && k.wd && ctl.wp);
    }
  }
  return { violation, pkFault };
}
