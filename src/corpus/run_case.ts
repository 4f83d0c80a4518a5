/**
 * One run of a case for the corpus tools: the differential runner with the SUT's invariant audit
 * after every step (`kvm_mmu_audit`, as `fuzz` replays the corpus), reduced to a verdict and, on
 * a divergence, the signature that deduplicates findings (the fuzzer's and the minimizer's).
 *
 * @module
 */
import { InitialStateError } from "../../oracles/control_state.ts";
import { type DiffResult, runDifferential } from "../diff/differential.ts";
import { divergenceSignature } from "../diff/explain.ts";
import { basicSignature } from "../diff/fuzz_run.ts";
import type { Case } from "../model/case.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";

/** What one run of a case gave. */
export type RunVerdict =
  | { status: "pass" }
  | {
    status: "divergence";
    step: number;
    kind: string;
    detail: string;
    signature: string;
  }
  | { status: "unsupported"; reason: string }
  /** The harness threw: a harness bug, never the case's fault. */
  | { status: "crash"; message: string };

/**
 * Runs `c` on both sides with the audit. Never throws for a harness failure (it becomes a
 * `crash` verdict), only for bad input.
 *
 * @throws {InitialStateError} when the case's initial state is impossible (an input error)
 */
export function runCase(c: Case): RunVerdict {
  let r: DiffResult;
  try {
    r = runDifferential(c, { audit: kvm_mmu_audit });
    const v = r.verdict;
    if (v.status === "pass") return { status: "pass" };
    if (v.status === "unsupported") return { status: "unsupported", reason: v.reason };
    const d = v.divergence;
    const signature = divergenceSignature(c, r) ?? basicSignature(c, r);
    return { status: "divergence", step: d.step, kind: d.kind, detail: d.detail, signature };
  } catch (e: unknown) {
    if (e instanceof InitialStateError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    return { status: "crash", message: message.split("\n")[0]! };
  }
}

/** A verdict in a few words, for one line of text. */
export function verdictText(v: RunVerdict): string {
  switch (v.status) {
    case "pass":
      return "passed";
    case "divergence":
      return `diverged at step ${v.step} (${v.kind}: ${v.detail.split("\n")[0]})`;
    case "unsupported":
      return `unsupported (${v.reason})`;
    case "crash":
      return `harness exception: ${v.message}`;
  }
}
