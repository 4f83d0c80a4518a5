/**
 * The replay entry point: runs a case step by step on the oracle and the system under test
 * (the differential runner, `differential.ts`) and records, per step, the outcomes the oracle
 * allows, the SUT's result, the outcome committed (the SUT's), its memory writes and
 * (optionally) the walk trace and the SUT's event log; per case, the verdict and the SUT's
 * counters. With `sides: "oracle"` only the oracle runs and the first outcome (the fresh walk)
 * is committed. Every tool (replay, fuzz, minimize) drives the two sides through here.
 *
 * The report is plain JSON (64-bit values as `"0x…"` strings) and its shape is stable: fields
 * are only ever added, under a new `version` (2 added `sides`, `verdict`, `sut`, `counters`,
 * `events`, and `committed: null` on a diverging step; later in version 2, `divergence` on a
 * diverging case: the side-by-side explanation and signature of `explain.ts`).
 *
 * @module
 */
import { modeOf } from "../../oracles/control_state.ts";
import {
  type AllowedOutcome,
  type MachineOptions,
  ReferenceMachine,
  type StepChoices,
} from "../../oracles/machine.ts";
import type { Case } from "../model/case.ts";
import { hex } from "../model/hex.ts";
import type { Observation } from "../model/observation.ts";
import { Op } from "../model/op.ts";
import { z } from "zod";
import type { ShadowMachineOptions, SutStep } from "../shadow/machine.ts";
import { type AuditFinding, type Divergence, runDifferential } from "./differential.ts";
import type { Kvm } from "../shadow/kvm.ts";
import { type DivergenceExplanation, explainDivergence } from "./explain.ts";

/**
 * The `meta.tags` entry of a corpus case that documents a known divergence (for example one
 * where the SUT is faithful to KVM and KVM differs from the architecture): replaying it is
 * expected to diverge. Cases with injected bugs are expected to diverge too.
 */
export const EXPECT_DIVERGENCE = "expect:divergence";

/** The report format name. */
export const REPLAY_FORMAT = "shadow-mmu-replay";
/** The report format version. */
export const REPLAY_VERSION = 2;

/** An observation in JSON form. */
export type ObservationJson =
  | { kind: "ok"; gpa: string; value: string | null }
  | { kind: "pf"; errorCode: string; cr2: string }
  | { kind: "gp" | "ss" | "done" }
  | { kind: "dirtyLog"; slot: number; gfns: string[] };

/** One level of a walk trace in JSON form. */
export interface TraceJson {
  level: string;
  addr: string;
  value: string;
  source: "memory" | "register" | "snapshot";
  snapshot?: number;
}

/** One allowed outcome in JSON form. */
export interface OutcomeJson {
  observation: ObservationJson;
  via: AllowedOutcome["via"];
  writes: { addr: string; bytes: 4 | 8; kind: "A" | "D" | "store"; bits: string }[];
  note: string | null;
  /** With `trace`: the entries the walk used, top first (the failing one last on a fault). */
  trace?: TraceJson[];
}

/** One step in JSON form. */
export interface StepJson {
  step: number;
  vcpu: number | null;
  op: z.input<typeof Op>;
  allowed: OutcomeJson[];
  /** The SUT's result (absent when only the oracle ran). */
  sut?: SutJson;
  /** Index into `allowed` of the outcome committed; null when the step diverged. */
  committed: number | null;
  /** For each write of the committed outcome: "written", or dropped by "mmio" / "rom". */
  fates: string[];
}

/** A SUT step in JSON form. */
export type SutJson =
  | { kind: "observation"; observation: ObservationJson; adoptedA: string[] }
  | { kind: "failure"; reason: string; detail: string };

/** The verdict on a case in JSON form. */
export type VerdictJson =
  | { status: "oracle-only" | "pass" }
  | { status: "unsupported"; step: number | null; reason: string }
  | { status: "divergence" } & Divergence;

/**
 * One choice of a schedule: at entry `entry`, thread `thread` (vCPU, or the host thread
 * `vcpus`) starts op `starts` (a program index) on top of op `running` at its atomic step
 * `step`, or, with nothing running (`running` null, `step` "start"), before the op that comes
 * first in program order.
 */
export interface ScheduleChoiceJson {
  entry: number;
  thread: string;
  step: string;
  running: { index: number; op: z.input<typeof Op> } | null;
  starts: { index: number; op: z.input<typeof Op> } | null;
}

/** The replay of one case. */
export interface CaseReplayJson {
  title: string;
  mode: string;
  /** Which sides ran. */
  sides: "both" | "oracle";
  verdict: VerdictJson;
  steps: StepJson[];
  /** The SUT's non-zero counters (both sides only). */
  counters?: Record<string, number>;
  /** The SUT's event log (with `events`). */
  events?: { step: number; vcpu: number | null; what: string }[];
  /**
   * A concurrent case's schedule as run: its length and its choices, the entries that are not
   * what the scheduler does without a schedule (the others let the running thread go on, or
   * start the next op in program order).
   */
  schedule?: { entries: number; choices: ScheduleChoiceJson[] };
  /**
   * On a diverging case: both sides at the diverging step (walks per level, shadow pages),
   * the mechanisms and events that led there, and the signature that deduplicates findings.
   */
  divergence?: DivergenceExplanation;
}

/** Encodes an observation for JSON. */
export function observationJson(o: Observation): ObservationJson {
  switch (o.kind) {
    case "ok":
      return { kind: "ok", gpa: hex(o.gpa), value: o.value === null ? null : hex(o.value) };
    case "pf":
      return { kind: "pf", errorCode: `0x${o.errorCode.toString(16)}`, cr2: hex(o.cr2) };
    case "dirtyLog":
      return { kind: "dirtyLog", slot: o.slot, gfns: o.gfns.map(hex) };
    default:
      return { kind: o.kind };
  }
}

function outcomeJson(o: AllowedOutcome, trace: boolean): OutcomeJson {
  const out: OutcomeJson = {
    observation: observationJson(o.observation),
    via: o.via,
    writes: o.writes.map((w) => ({
      addr: hex(w.addr),
      bytes: w.bytes,
      kind: w.kind,
      bits: hex(w.kind === "store" ? w.value : w.mask),
    })),
    note: o.note,
  };
  if (trace && o.walk && "path" in o.walk) {
    out.trace = o.walk.path.map((e) => ({
      level: e.level,
      addr: hex(e.addr),
      value: hex(e.value),
      source: e.source,
      ...(e.snapshot === undefined ? {} : { snapshot: e.snapshot }),
    }));
  }
  return out;
}

/** Options of a replay. */
export interface ReplayOptions extends MachineOptions {
  /** Include each outcome's walk trace. */
  readonly trace?: boolean;
  /** Which sides run (default both). */
  readonly sides?: "both" | "oracle";
  /** Include the SUT's event log. */
  readonly events?: boolean;
  /** Options of the SUT. */
  readonly sut?: ShadowMachineOptions;
  /** An audit of the SUT's invariants after every step. */
  readonly audit?: (kvm: Kvm) => readonly AuditFinding[];
}

function stepJson(
  choices: StepChoices,
  committed: number | null,
  fates: readonly string[],
  trace: boolean,
  sut?: SutJson,
): StepJson {
  return {
    step: choices.step,
    vcpu: choices.vcpu,
    op: z.encode(Op, choices.op),
    allowed: choices.outcomes.map((o) => outcomeJson(o, trace)),
    ...(sut ? { sut } : {}),
    committed,
    fates: [...fates],
  };
}

function sutJson(s: SutStep, adoptedA: readonly string[]): SutJson {
  return s.kind === "observation"
    ? { kind: "observation", observation: observationJson(s.observation), adoptedA: [...adoptedA] }
    : { kind: "failure", reason: s.reason, detail: s.detail };
}

/**
 * Replays a case. Both sides (the default): the SUT runs and the oracle commits the SUT's
 * outcome, up to the first divergence. Oracle only: the first allowed outcome (the fresh walk)
 * is committed at every step.
 *
 * @throws {InitialStateError} when the case's initial state is impossible
 */
export function replayCase(c: Case, options: ReplayOptions = {}): CaseReplayJson {
  const trace = options.trace ?? false;
  const oracleOptions: MachineOptions = {
    ...(options.strictHardware === undefined ? {} : { strictHardware: options.strictHardware }),
    ...(options.pdpteSource === undefined ? {} : { pdpteSource: options.pdpteSource }),
  };
  const mode = modeOf(c.cpu, new ReferenceMachine(c, oracleOptions).control(0)).kind;
  if (options.sides === "oracle") {
    const machine = new ReferenceMachine(c, oracleOptions);
    const steps = c.program.map((op): StepJson => {
      const committed = machine.step(op);
      return stepJson(committed.choices, committed.chosen, committed.fates, trace);
    });
    return {
      title: c.meta.title,
      mode,
      sides: "oracle",
      verdict: { status: "oracle-only" },
      steps,
    };
  }
  const r = runDifferential(c, {
    oracle: oracleOptions,
    ...(options.sut ? { sut: options.sut } : {}),
    ...(options.audit ? { audit: options.audit } : {}),
  });
  const steps = r.steps.map((s) =>
    stepJson(
      s.choices,
      s.committed?.chosen ?? null,
      s.committed?.fates ?? [],
      trace,
      sutJson(s.sut, s.adoptedA),
    )
  );
  const v = r.verdict;
  const verdict: VerdictJson = v.status === "divergence"
    ? { status: "divergence", ...v.divergence }
    : v.status === "unsupported"
    ? { status: "unsupported", step: v.step, reason: v.reason }
    : { status: "pass" };
  const out: CaseReplayJson = { title: c.meta.title, mode, sides: "both", verdict, steps };
  if (r.sut) {
    out.counters = Object.fromEntries(
      Object.entries(r.sut.kvm.stats.counters).filter(([, n]) => n !== 0),
    );
    if (options.events) out.events = r.sut.kvm.stats.events.map((e) => ({ ...e }));
  }
  if (r.schedule && r.scheduleEntries) {
    const opAt = (i: number) => (i < 0 ? null : { index: i, op: z.encode(Op, c.program[i]!) });
    const thread = (t: number) => (t === c.vcpus ? "host" : `cpu${t}`);
    const choices = r.scheduleEntries.flatMap((e, entry) =>
      e.thread === e.dflt ? [] : [{
        entry,
        thread: thread(e.thread),
        step: e.step,
        running: opAt(e.running),
        starts: opAt(e.starts),
      }]
    );
    out.schedule = { entries: r.schedule.length, choices };
  }
  const divergence = explainDivergence(c, r);
  if (divergence) out.divergence = divergence;
  return out;
}
