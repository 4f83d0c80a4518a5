/**
 * Running the exhaustive sweep: every combination of a mode (`sweep_combinations.ts`) becomes
 * its own fresh case (`sweep_case.ts`) and goes through the differential runner with the SUT's
 * invariant audit after every step, as `fuzz` runs its cases. Verdicts are counted (pass,
 * unsupported, known KVM divergence, divergence); each divergence signature that is not a known
 * divergence is a finding, kept with the first combination that gave it and its case text.
 *
 * With `inject`, every case switches on those SUT bugs, so the sweep is a second bug detector;
 * `stopAtFirst` returns at the first finding, with how many combinations and how long it took.
 *
 * @module
 */
import { type DiffResult, runDifferential } from "../diff/differential.ts";
import { divergenceSignature } from "../diff/explain.ts";
import { basicSignature } from "../diff/fuzz_run.ts";
import { knownDivergenceOf } from "../diff/known_divergences.ts";
import { encodeCase } from "../corpus/load_case.ts";
import type { Case } from "../model/case.ts";
import { checkBugNames } from "../shadow/bugs.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";
import {
  countSweepCombinations,
  type SweepCombination,
  sweepCombinations,
} from "./sweep_combinations.ts";
import { sweepCase } from "./sweep_case.ts";
import type { SweepMode } from "./sweep_layout.ts";

/** Options of {@link runSweep}. */
export interface SweepOptions {
  readonly mode: SweepMode;
  /** Injected SUT bugs every case switches on (names from `src/shadow/bugs.ts`). */
  readonly inject?: readonly string[];
  /** Run at most this many combinations (the first ones, or the first of the stride). */
  readonly limit?: number;
  /** Run only the combinations whose index is a multiple of `stride` (default 1: all). */
  readonly stride?: number;
  /** Return at the first finding (a divergence that is not a known one, or a crash). */
  readonly stopAtFirst?: boolean;
  /** Called every `progressEvery` combinations and once at the end. */
  readonly onProgress?: (p: SweepProgress) => void;
  /** Default 5000. */
  readonly progressEvery?: number;
}

/** The counts so far. */
export interface SweepCounts {
  /** Combinations run. */
  combinations: number;
  pass: number;
  /** Divergences whose signature is a triaged KVM divergence (`known_divergences.ts`). */
  known: number;
  unsupported: number;
  /** Divergences (and harness crashes) that are findings. */
  divergences: number;
}

/** A progress report. */
export interface SweepProgress extends Readonly<SweepCounts> {
  readonly mode: SweepMode;
  /** Combinations the run will try (the space, or fewer with `limit`/`stride`). */
  readonly planned: number;
  readonly findings: number;
  readonly seconds: number;
}

/** One distinct finding: a signature and the first combination that gave it. */
export interface SweepFinding {
  readonly mode: SweepMode;
  readonly signature: string;
  /** The first combination's name and index. */
  readonly combination: string;
  readonly index: number;
  /** How many combinations gave this signature. */
  readonly count: number;
  readonly step: number | null;
  readonly kind: string;
  readonly detail: string;
  /** The first combination's case, encoded, with `meta.signature` and `meta.notes` set. */
  readonly caseText: string;
}

/** A known divergence the sweep met: how often, and the first combination. */
export interface SweepKnown {
  readonly id: string;
  readonly signature: string;
  readonly combination: string;
  readonly count: number;
}

/** The result of a sweep of one mode. */
export interface SweepResult extends Readonly<SweepCounts> {
  readonly mode: SweepMode;
  readonly inject: readonly string[];
  /** The size of the mode's space. */
  readonly space: number;
  /** Combinations the run was to try (the space, or fewer with `limit`/`stride`). */
  readonly planned: number;
  /** Unsupported combinations per reason (numbers in the reason replaced by `N`). */
  readonly unsupportedReasons: Readonly<Record<string, number>>;
  /** Known divergences by signature, in order of first appearance. */
  readonly knownDivergences: readonly SweepKnown[];
  /** Findings by signature, in order of first appearance. */
  readonly findings: readonly SweepFinding[];
  /** True when `stopAtFirst` ended the run early. */
  readonly stopped: boolean;
  /** Wall-clock time of the run (timing: not deterministic). */
  readonly seconds: number;
  readonly combinationsPerSecond: number;
  /** The first finding: combinations run up to and including it, and the time it took. */
  readonly firstFinding: { readonly combinations: number; readonly seconds: number } | null;
}

/** Replaces the numbers in a message's first line by N, so messages group the same failure. */
function generic(text: string): string {
  return text.split("\n")[0]!.replace(/0x[0-9a-f]+|\b\d+\b/gi, "N").slice(0, 80);
}

/** What one combination gave. */
type Outcome =
  | { readonly status: "pass" }
  | { readonly status: "unsupported"; readonly reason: string }
  | {
    readonly status: "divergence";
    readonly signature: string;
    readonly step: number | null;
    readonly kind: string;
    readonly detail: string;
  };

/** Runs one case; a harness exception becomes a divergence signed `harness-exception:…`. */
function runOne(c: Case): Outcome {
  let r: DiffResult;
  try {
    r = runDifferential(c, { audit: kvm_mmu_audit, sut: { logEvents: false } });
  } catch (e: unknown) {
    const message = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
    return {
      status: "divergence",
      signature: `harness-exception:${generic(message)}`,
      step: null,
      kind: "harness exception",
      detail: message,
    };
  }
  const v = r.verdict;
  if (v.status === "pass") return v;
  if (v.status === "unsupported") return { status: "unsupported", reason: v.reason };
  const d = v.divergence;
  return {
    status: "divergence",
    signature: divergenceSignature(c, r) ?? basicSignature(c, r),
    step: d.step,
    kind: `${d.kind} divergence`,
    detail: `${d.detail}\n  SUT:     ${d.got}\n  allowed: ${d.expected.join(" | ")}`,
  };
}

/** The combinations a run tries, in order. */
function* planned(o: SweepOptions): Generator<SweepCombination, void, void> {
  const stride = o.stride ?? 1;
  const limit = o.limit ?? Infinity;
  let n = 0;
  for (const k of sweepCombinations(o.mode)) {
    if (n >= limit) return;
    if (k.index % stride !== 0) continue;
    n++;
    yield k;
  }
}

/**
 * Runs the sweep of one mode. Deterministic apart from the timing fields: the same options
 * give the same counts, findings and case texts.
 *
 * @throws {RangeError} on an unknown injected bug name, a stride below 1 or a negative limit
 *
 * @example Usage
 * ```ts
 * import { runSweep } from "./run_sweep.ts";
 * import { equal } from "node:assert/strict";
 * const r = runSweep({ mode: "ia32e4", limit: 20 });
 * equal(r.combinations, 20);
 * equal(r.findings.length, 0);
 * ```
 */
export function runSweep(options: SweepOptions): SweepResult {
  const inject = [...(options.inject ?? [])];
  checkBugNames(inject);
  const stride = options.stride ?? 1;
  if (!Number.isInteger(stride) || stride < 1) {
    throw new RangeError(`Cannot sweep with stride ${stride}: expected an integer of at least 1`);
  }
  if (options.limit !== undefined && !(options.limit >= 0)) {
    throw new RangeError(
      `Cannot sweep with limit ${options.limit}: expected a number of at least 0`,
    );
  }
  const space = countSweepCombinations(options.mode);
  const plan = Math.min(Math.ceil(space / stride), options.limit ?? Infinity);
  const counts: SweepCounts = {
    combinations: 0,
    pass: 0,
    known: 0,
    unsupported: 0,
    divergences: 0,
  };
  const reasons: Record<string, number> = {};
  const known = new Map<string, { id: string; combination: string; count: number }>();
  const findings = new Map<string, SweepFinding & { count: number }>();
  let firstFinding: SweepResult["firstFinding"] = null;
  let stopped = false;
  const every = options.progressEvery ?? 5000;
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const progress = () =>
    options.onProgress?.({
      mode: options.mode,
      planned: plan,
      ...counts,
      findings: findings.size,
      seconds: seconds(),
    });
  for (const k of planned(options)) {
    const c = sweepCase(k, { inject });
    const o = runOne(c);
    counts.combinations++;
    if (o.status === "pass") counts.pass++;
    else if (o.status === "unsupported") {
      counts.unsupported++;
      const why = generic(o.reason);
      reasons[why] = (reasons[why] ?? 0) + 1;
    } else {
      const id = knownDivergenceOf(o.signature)?.id;
      if (id !== undefined) {
        counts.known++;
        const seen = known.get(o.signature);
        if (seen) seen.count++;
        else known.set(o.signature, { id, combination: k.name, count: 1 });
      } else {
        counts.divergences++;
        const seen = findings.get(o.signature);
        if (seen) seen.count++;
        else {
          c.meta.signature = o.signature;
          c.meta.notes = `${o.kind} at step ${o.step ?? "-"} of sweep combination ${k.name}: ` +
            o.detail;
          findings.set(o.signature, {
            mode: options.mode,
            signature: o.signature,
            combination: k.name,
            index: k.index,
            count: 1,
            step: o.step,
            kind: o.kind,
            detail: o.detail,
            caseText: encodeCase(c),
          });
          firstFinding ??= { combinations: counts.combinations, seconds: seconds() };
          if (options.stopAtFirst) {
            stopped = true;
            break;
          }
        }
      }
    }
    if (counts.combinations % every === 0) progress();
  }
  progress();
  const elapsed = seconds();
  return {
    mode: options.mode,
    inject,
    space,
    planned: plan,
    ...counts,
    unsupportedReasons: reasons,
    knownDivergences: [...known].map(([signature, v]) => ({
      id: v.id,
      signature,
      combination: v.combination,
      count: v.count,
    })),
    findings: [...findings.values()],
    stopped,
    seconds: elapsed,
    combinationsPerSecond: counts.combinations / Math.max(elapsed, 1e-3),
    firstFinding,
  };
}
