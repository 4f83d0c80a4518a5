/**
 * Properties the oracle must satisfy on its own, checked on generated cases:
 *
 * - strict discipline: once every store and control write has been followed by a completed
 *   flushing MOV CR3, each access has exactly one allowed observation (spec §6, ARCHITECTURE §7);
 * - bounded sets: no step allows more than `MAX_OUTCOMES` outcomes (a runaway enumeration);
 * - determinism: replaying the same case twice gives the same report.
 *
 * @module
 */
import { ReferenceMachine } from "../../oracles/machine.ts";
import type { Case } from "../model/case.ts";
import { formatObservation } from "../model/observation.ts";
import { replayCase } from "./replay.ts";

/** The most outcomes one step may allow before the self-check calls it a runaway. */
export const MAX_OUTCOMES = 64;

/** The verdict on one case. */
export interface SelfCheckResult {
  readonly steps: number;
  /** Steps whose allowed set had more than one observation. */
  readonly multiOutcomeSteps: number;
  /** Error codes of the #PF outcomes committed, as hex. */
  readonly errorCodes: readonly string[];
  /** The first property that failed, or null. */
  readonly failure: { step: number; property: string; detail: string } | null;
}

/** Runs one case through the oracle and checks the properties above. */
export function selfCheck(
  c: Case,
  options: { strict: boolean; determinism: boolean },
): SelfCheckResult {
  const m = new ReferenceMachine(c);
  let dirty = false;
  let multi = 0;
  const codes = new Set<string>();
  const fail = (step: number, property: string, detail: string): SelfCheckResult => ({
    steps: step,
    multiOutcomeSteps: multi,
    errorCodes: [...codes],
    failure: { step, property, detail },
  });
  for (const op of c.program) {
    const choices = m.allowed(op);
    const observations = new Set(choices.outcomes.map((o) => formatObservation(o.observation)));
    if (choices.outcomes.length > MAX_OUTCOMES) {
      return fail(choices.step, "bounded", `${choices.outcomes.length} outcomes`);
    }
    if (observations.size > 1) multi++;
    const access = op.op === "load" || op.op === "store" || op.op === "fetch";
    if (options.strict && access && !dirty && observations.size !== 1) {
      return fail(choices.step, "strict-single-outcome", [...observations].join(" | "));
    }
    const done = m.commit(choices, 0);
    const o = done.outcome.observation;
    if (o.kind === "pf") codes.add(`0x${o.errorCode.toString(16)}`);
    if (op.op === "store" || op.op.startsWith("write")) dirty = true;
    if (op.op === "movCr3" && o.kind === "done") dirty = false;
  }
  if (options.determinism) {
    const a = JSON.stringify(replayCase(c, { trace: true, sides: "oracle" }));
    const b = JSON.stringify(replayCase(c, { trace: true, sides: "oracle" }));
    if (a !== b) return fail(c.program.length, "determinism", "two replays differ");
  }
  return {
    steps: c.program.length,
    multiOutcomeSteps: multi,
    errorCodes: [...codes],
    failure: null,
  };
}
