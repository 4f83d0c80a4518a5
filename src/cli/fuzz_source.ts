/**
 * What a fuzz run generates and how it signs findings: the fast-check case generator and the
 * divergence signature, bound to the runner's interfaces (one place, shared by the workers and
 * the in-process path).
 *
 * @module
 */
import { fuzzCase } from "../gen/fuzz_case.ts";
import { basicSignature, type CaseSource, type Signer } from "../diff/fuzz_run.ts";
import { divergenceSignature } from "../diff/explain.ts";

/** The generator, with the plan's modes and injected bugs. */
export const fuzzSource: CaseSource = (seed, discipline, plan) =>
  fuzzCase(seed, {
    discipline,
    ...(plan.modes.length > 0 ? { modes: plan.modes as never } : {}),
    inject: plan.inject,
    ...(plan.vcpus === null ? {} : { vcpus: plan.vcpus }),
    ...(plan.host32 === null ? {} : { host32: plan.host32 }),
  });

/** The signature of a divergence (`explain.ts`; the basic one if it cannot tell). */
export const fuzzSigner: Signer = (c, r) => divergenceSignature(c, r) ?? basicSignature(c, r);
