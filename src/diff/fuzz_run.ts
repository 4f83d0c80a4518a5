/**
 * One fuzz case, end to end: generate it from its seed, run it through the differential runner
 * with the SUT's invariant audit after every step, and reduce the result to what a fuzz run
 * aggregates (verdict, steps, coverage) plus, for a divergence or a crash, a finding: the
 * replayable case with its signature. Runs in a worker or in the main thread alike; nothing
 * here depends on time or on which worker runs it, so a run is reproducible case by case.
 *
 * @module
 */
import type { Case } from "../model/case.ts";
import { encodeCase } from "../corpus/load_case.ts";
import { hex } from "../model/hex.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";
import { COUNTERS } from "../shadow/stats.ts";
import { type DiffResult, runDifferential } from "./differential.ts";
import { scheduleDecider } from "../gen/fuzz_schedule.ts";

/** How cases are chosen. */
export interface FuzzPlan {
  /** The run's seed; case `i` gets {@link caseSeed}(seed, i). */
  readonly seed: number;
  readonly discipline: "strict" | "relaxed" | "mixed";
  /** Guest modes to generate (empty: all). */
  readonly modes: readonly string[];
  /** Injected bugs every case turns on. */
  readonly inject: readonly string[];
  /** vCPUs of every case (null: each case draws 1 to 4). */
  readonly vcpus: number | null;
  /** A 32-bit host (split SPTEs) for every case (null: one case in four). */
  readonly host32: boolean | null;
}

/** Makes the case for one seed (the generator). */
export type CaseSource = (
  seed: number,
  discipline: "strict" | "relaxed",
  plan: FuzzPlan,
) => Case;

/** A finding: a case that diverged (or crashed the harness), ready to be written. */
export interface Finding {
  readonly index: number;
  readonly seed: number;
  readonly signature: string;
  readonly step: number | null;
  readonly kind: string;
  readonly detail: string;
  /** The case file's text (canonical encoding), with signature and notes filled in. */
  readonly caseText: string;
}

/** What one case contributed to the run. */
export interface CaseOutcome {
  readonly index: number;
  readonly seed: number;
  readonly mode: string;
  readonly discipline: "strict" | "relaxed";
  readonly verdict: "pass" | "unsupported" | "divergence" | "crash";
  readonly unsupported: string | null;
  readonly steps: number;
  /** SUT counters summed over the case. */
  readonly counters: readonly number[];
  /** #PF error codes the SUT delivered (hex), deduplicated. */
  readonly errorCodes: readonly string[];
  readonly finding: Finding | null;
}

/** The seed of case `index` of a run seeded `seed` (a 32-bit mix, so neighbours differ). */
export function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e37_79b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85eb_ca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2_ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The discipline of case `index`: mixed runs alternate. */
export function caseDiscipline(plan: FuzzPlan, index: number): "strict" | "relaxed" {
  if (plan.discipline !== "mixed") return plan.discipline;
  return index % 2 === 0 ? "strict" : "relaxed";
}

/** A placeholder signature until `explain.ts` provides the real one. */
export type Signer = (c: Case, r: DiffResult) => string;

/** Strips numbers from a message so that signatures group the same failure. */
function generic(text: string): string {
  return text.split("\n")[0]!.replace(/0x[0-9a-f]+|\d+/gi, "N").slice(0, 80);
}

function modeOf(c: Case): string {
  return c.meta.tags.find((t) => t.startsWith("mode:"))?.slice(5) ?? "unknown";
}

/**
 * Runs case `index` of a plan. Never throws: an exception anywhere in the harness becomes a
 * "crash" finding with the case that caused it.
 */
export function runFuzzCase(
  index: number,
  plan: FuzzPlan,
  source: CaseSource,
  sign: Signer,
): CaseOutcome {
  const seed = caseSeed(plan.seed, index);
  const discipline = caseDiscipline(plan, index);
  let c: Case;
  try {
    c = source(seed, discipline, plan);
  } catch (e: unknown) {
    throw new Error(`the generator failed for seed ${seed}: ${(e as Error).message}`);
  }
  const base = { index, seed, mode: modeOf(c), discipline };
  const finding = (signature: string, step: number | null, kind: string, detail: string) => {
    const copy = structuredClone(c);
    if (schedule !== null) copy.schedule = [...schedule];
    copy.meta.signature = signature;
    copy.meta.notes = `${kind} at step ${step ?? "-"}: ${detail}`;
    return { index, seed, signature, step, kind, detail, caseText: encodeCase(copy) };
  };
  let r: DiffResult;
  let schedule: readonly number[] | null = null;
  try {
    const decider = c.schedule === undefined ? {} : { decider: scheduleDecider(seed) };
    r = runDifferential(c, { audit: kvm_mmu_audit, sut: { logEvents: true }, ...decider });
    schedule = r.schedule;
  } catch (e: unknown) {
    const message = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
    return {
      ...base,
      verdict: "crash",
      unsupported: null,
      steps: 0,
      counters: COUNTERS.map(() => 0),
      errorCodes: [],
      finding: finding(`harness-exception:${generic(message)}`, null, "harness exception", message),
    };
  }
  const counters = COUNTERS.map((k) => r.sut?.kvm.stats.counters[k] ?? 0);
  const codes = new Set<string>();
  for (const s of r.steps) {
    if (s.sut.kind === "observation" && s.sut.observation.kind === "pf") {
      codes.add(`0x${s.sut.observation.errorCode.toString(16)}`);
    }
  }
  const common = { ...base, steps: r.steps.length, counters, errorCodes: [...codes].sort() };
  const v = r.verdict;
  if (v.status === "pass") return { ...common, verdict: "pass", unsupported: null, finding: null };
  if (v.status === "unsupported") {
    return { ...common, verdict: "unsupported", unsupported: v.reason, finding: null };
  }
  const d = v.divergence;
  const detail = `${d.detail}\n  SUT:     ${d.got}\n  allowed: ${d.expected.join(" | ")}`;
  return {
    ...common,
    verdict: "divergence",
    unsupported: null,
    finding: finding(sign(c, r), d.step, `${d.kind} divergence`, detail),
  };
}

/** The default signature: divergence kind, mode, op kind and the diverging field's category. */
export function basicSignature(c: Case, r: DiffResult): string {
  const v = r.verdict;
  if (v.status !== "divergence") return v.status;
  const d = v.divergence;
  const op = c.program[d.step - 1]?.op ?? "?";
  return `${d.kind}:${modeOf(c)}:${op}:${generic(d.got.replace(/0x[0-9a-f]+/g, "N"))}`;
}

/** A short hex form of a seed for file names. */
export function seedName(seed: number): string {
  return hex(BigInt(seed)).slice(2).padStart(8, "0");
}
