/**
 * What one step of a program shows to the guest or the host: the vocabulary the oracle's
 * allowed sets and the system under test's results are both written in.
 *
 * @module
 */
import { hex } from "./hex.ts";

/** The observable result of one step. */
export type Observation =
  /** An access that translated: its guest-physical address and, for loads and fetches, the 8 bytes read. */
  | { readonly kind: "ok"; readonly gpa: bigint; readonly value: bigint | null }
  /** A #PF delivered to the guest. */
  | { readonly kind: "pf"; readonly errorCode: number; readonly cr2: bigint }
  /** #GP(0): a non-canonical address, or an illegal control-register write. */
  | { readonly kind: "gp" }
  /** #SS(0): a non-canonical stack reference. */
  | { readonly kind: "ss" }
  /** A non-access op that completed. */
  | { readonly kind: "done" }
  /**
   * The dirty bitmap of a get-and-clear, as gfns. From the oracle this is the set the log must
   * contain (extra pages are allowed; a missing one is data loss).
   */
  | { readonly kind: "dirtyLog"; readonly slot: number; readonly gfns: readonly bigint[] };

/**
 * A short, stable text form of an observation, used in reports and as a comparison key.
 *
 * @example
 * ```ts
 * import { formatObservation } from "./observation.ts";
 * import { equal } from "node:assert/strict";
 * equal(formatObservation({ kind: "pf", errorCode: 7, cr2: 0x1000n }), "#PF ec=0x7 cr2=0x1000");
 * ```
 */
export function formatObservation(o: Observation): string {
  switch (o.kind) {
    case "ok":
      return o.value === null
        ? `ok gpa=${hex(o.gpa)}`
        : `ok gpa=${hex(o.gpa)} value=${hex(o.value)}`;
    case "pf":
      return `#PF ec=0x${o.errorCode.toString(16)} cr2=${hex(o.cr2)}`;
    case "gp":
      return "#GP(0)";
    case "ss":
      return "#SS(0)";
    case "done":
      return "done";
    case "dirtyLog":
      return `dirty log of slot ${o.slot}: [${o.gfns.map(hex).join(", ")}]`;
  }
}
