/**
 * The replay entry point: runs a case step by step and records, per step, the outcomes the
 * oracle allows, the one committed, its memory writes and (optionally) the walk trace.
 *
 * Today only the oracle runs; the system under test and the comparison plug in here, so that
 * every tool (replay, fuzz, minimize) drives the oracle the same way.
 *
 * The report is plain JSON (64-bit values as `"0x…"` strings) and its shape is stable: fields
 * are only ever added, under a new `version`.
 *
 * @module
 */
import { modeOf } from "../../oracles/control_state.ts";
import {
  type AllowedOutcome,
  type MachineOptions,
  ReferenceMachine,
} from "../../oracles/machine.ts";
import type { Case } from "../model/case.ts";
import { hex } from "../model/hex.ts";
import type { Observation } from "../model/observation.ts";
import { Op } from "../model/op.ts";
import { z } from "zod";

/** The report format name. */
export const REPLAY_FORMAT = "shadow-mmu-replay";
/** The report format version. */
export const REPLAY_VERSION = 1;

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
  /** Index into `allowed` of the outcome committed. */
  committed: number;
  /** For each write of the committed outcome: "written", or dropped by "mmio" / "rom". */
  fates: string[];
}

/** The replay of one case. */
export interface CaseReplayJson {
  title: string;
  mode: string;
  steps: StepJson[];
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
}

/**
 * Replays a case on the oracle, committing the first allowed outcome (the fresh walk) at every
 * step.
 *
 * @throws {InitialStateError} when the case's initial state is impossible
 */
export function replayCase(c: Case, options: ReplayOptions = {}): CaseReplayJson {
  const machine = new ReferenceMachine(c, options);
  const mode = modeOf(c.cpu, machine.control(0)).kind;
  const steps = c.program.map((op): StepJson => {
    const committed = machine.step(op);
    return {
      step: committed.choices.step,
      vcpu: committed.choices.vcpu,
      op: z.encode(Op, op),
      allowed: committed.choices.outcomes.map((o) => outcomeJson(o, options.trace ?? false)),
      committed: committed.chosen,
      fates: [...committed.fates],
    };
  });
  return { title: c.meta.title, mode, steps };
}
