/**
 * A reference machine on the standard 4-level layout (`tables4`) with a self-map through which
 * the guest edits its own page tables by ordinary stores, and helpers to run ops and read the
 * allowed outcomes as text.
 *
 * @module
 */
import { ReferenceMachine, type StepChoices } from "../../oracles/machine.ts";
import { formatObservation } from "../../src/model/observation.ts";
import { buildCase, type CaseSpec, decodeOp, type Mem, tables4 } from "./case_builder.ts";

/**
 * Linear addresses through which the guest edits its own tables: PD[2] points at a second page
 * table at 0xd000 whose entries 0 and 1 map the PT page and the PD page, so the edits do not
 * depend on the PD entry a test changes.
 */
export const MAP_PT = 0x4040_0000n;
/** Linear address of the PD page (see `MAP_PT`). */
export const MAP_PD = 0x4040_1000n;
/** The PTE of LA4 (PT[1]) as the guest writes it. */
export const PTE_VIA = MAP_PT + 8n;
/** The PDE of LA4 (PD[1]) as the guest writes it. */
export const PDE_VIA = MAP_PD + 8n;

/** A 4-level machine with the standard layout plus the self-map; `spec.memory` overrides. */
export function selfMappedMachine(spec: Partial<CaseSpec> = {}): ReferenceMachine {
  const memory: Mem = [
    ...tables4(),
    [0x3010n, 0xd067n], // PD[2] -> second PT
    [0xd000n, 0x4067n], // -> PT page
    [0xd008n, 0x3067n], // -> PD page
    ...(spec.memory ?? []),
  ];
  return new ReferenceMachine(buildCase({ mode: "ia32e4", ...spec, memory }));
}

/** Runs ops (shorthand JSON) committing the first outcome of each; returns the last choices. */
export function run(m: ReferenceMachine, ...ops: unknown[]): StepChoices {
  let last: StepChoices | undefined;
  for (const o of ops) {
    last = m.allowed(decodeOp(o));
    m.commit(last, 0);
  }
  return last!;
}

/** The distinct allowed observations of a step, as sorted text. */
export function allowed(choices: StepChoices): string[] {
  return [...new Set(choices.outcomes.map((o) => formatObservation(o.observation)))].sort();
}

/** The allowed observations of `op` as the machine's next step, as sorted text. */
export function allowedNext(m: ReferenceMachine, o: unknown): string[] {
  return allowed(m.allowed(decodeOp(o)));
}
