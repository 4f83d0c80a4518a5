/**
 * The access and control dimensions of the sweep: the access sequences (one access, or two in a
 * row), the control states each sequence runs under (rule C1 of `sweep_combinations.ts`: a
 * control is enumerated when the sequence has an access it can change, and otherwise held at its
 * restrictive value), and the protection-key states.
 *
 * @module
 */

/** What an access does. */
export type AccessKind = "read" | "write" | "fetch";

/** One guest access of the sweep: a kind at a CPL (explicit, never implicit supervisor). */
export interface SweepAccess {
  readonly kind: AccessKind;
  readonly cpl: 0 | 3;
}

/** CR4.SMAP with RFLAGS.AC: `off` (SMAP=0, AC=0), `ac0` or `ac1` (SMAP=1). */
export type SmapState = "off" | "ac0" | "ac1";

/** CR0.WP, CR4.SMEP and CR4.SMAP with RFLAGS.AC. */
export interface SweepControls {
  readonly wp: boolean;
  readonly smep: boolean;
  readonly smap: SmapState;
}

/** CR4.PKE=1 with PKRU.AD/WD of the leaf's key (every other key gets the opposite). */
export interface PkeState {
  readonly ad: boolean;
  readonly wd: boolean;
}

/** The six accesses, in the order the sweep enumerates them. */
export const ACCESSES: readonly SweepAccess[] = (["read", "write", "fetch"] as const).flatMap((
  kind,
) => ([0, 3] as const).map((cpl) => ({ kind, cpl })));

/** The PKE=1 states: PKRU.AD x PKRU.WD of the leaf's key. */
export const PKE_STATES: readonly PkeState[] = [
  { ad: false, wd: false },
  { ad: false, wd: true },
  { ad: true, wd: false },
  { ad: true, wd: true },
];

/**
 * Every access sequence: each access once, then each ordered pair (the second access sees what
 * the first one cached: shadow pages and SPTEs, the hardware TLB, the A/D bits it set).
 *
 * @example Usage
 * ```ts
 * import { accessSequences } from "./sweep_controls.ts";
 * import { equal } from "node:assert/strict";
 * equal(accessSequences().length, 6 + 36);
 * ```
 */
export function accessSequences(): (readonly SweepAccess[])[] {
  return [
    ...ACCESSES.map((a) => [a]),
    ...ACCESSES.flatMap((a) => ACCESSES.map((b) => [a, b])),
  ];
}

/**
 * The control states a sequence runs under (rule C1). CR0.WP varies when the sequence has a
 * supervisor write (else 1); CR4.SMEP when it has a fetch (it decides supervisor fetches and
 * the I/D bit of every fetch fault; else 1); SMAP/AC when it has a supervisor read or write
 * (else SMAP=1, AC=0). Spec §3.3 and §4.1: no other access depends on them.
 *
 * @example Usage
 * ```ts
 * import { controlStates } from "./sweep_controls.ts";
 * import { equal } from "node:assert/strict";
 * equal(controlStates([{ kind: "read", cpl: 3 }]).length, 1);
 * equal(controlStates([{ kind: "write", cpl: 0 }, { kind: "fetch", cpl: 3 }]).length, 12);
 * ```
 */
export function controlStates(sequence: readonly SweepAccess[]): SweepControls[] {
  const has = (p: (a: SweepAccess) => boolean) => sequence.some(p);
  const wps = has((a) => a.kind === "write" && a.cpl === 0) ? [false, true] : [true];
  const smeps = has((a) => a.kind === "fetch") ? [false, true] : [true];
  const smaps: SmapState[] = has((a) => a.kind !== "fetch" && a.cpl === 0)
    ? ["off", "ac0", "ac1"]
    : ["ac0"];
  return wps.flatMap((wp) => smeps.flatMap((smep) => smaps.map((smap) => ({ wp, smep, smap }))));
}

/** True when the sequence has a data access (protection keys never affect fetches). */
export function hasDataAccess(sequence: readonly SweepAccess[]): boolean {
  return sequence.some((a) => a.kind !== "fetch");
}
