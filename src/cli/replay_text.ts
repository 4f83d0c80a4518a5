/**
 * The human-readable form of a replay: one line per step, the allowed outcomes, the A/D writes
 * committed and, with `--trace`, the walk per level; for a diverging case, after the verdict, a
 * side-by-side block of the oracle's walk and the SUT's shadow walk (`explain.ts`).
 *
 * @module
 */
import { explanationText } from "../diff/explain.ts";
import type { CaseReplayJson, ObservationJson, OutcomeJson, StepJson } from "../diff/replay.ts";

/** Text of an observation. */
export function observationText(o: ObservationJson): string {
  switch (o.kind) {
    case "ok":
      return o.value === null ? `ok gpa=${o.gpa}` : `ok gpa=${o.gpa} value=${o.value}`;
    case "pf":
      return `#PF ec=${o.errorCode} cr2=${o.cr2}`;
    case "gp":
      return "#GP(0)";
    case "ss":
      return "#SS(0)";
    case "done":
      return "done";
    case "dirtyLog":
      return `dirty log slot ${o.slot} must contain [${o.gfns.join(" ")}]`;
  }
}

/** Text of an op, compact: `load la=0x1000 cpl3`. */
export function opText(op: StepJson["op"]): string {
  const { op: kind, ...rest } = op as Record<string, unknown> & { op: string };
  delete rest.vcpu;
  const fields = Object.entries(rest).map((
    [k, v],
  ) => (k === "cpl" ? `cpl${v}` : `${k}=${String(v)}`));
  return [kind, ...fields].join(" ");
}

function writesText(o: OutcomeJson): string {
  const ad = o.writes.filter((w) => w.kind !== "store");
  return ad.length === 0 ? "" : `  [${ad.map((w) => `${w.kind}@${w.addr}`).join(" ")}]`;
}

/** Text of a SUT step. */
function sutText(s: NonNullable<StepJson["sut"]>): string {
  return s.kind === "observation"
    ? observationText(s.observation)
    : `SUT failure (${s.reason}): ${s.detail}`;
}

/** Text of a verdict. */
function verdictText(r: CaseReplayJson): string[] {
  const v = r.verdict;
  switch (v.status) {
    case "oracle-only":
      return [];
    case "pass":
      return ["  verdict: pass (every SUT result allowed, guest memory equal)"];
    case "unsupported":
      return [`  verdict: unsupported${v.step === null ? "" : ` at step ${v.step}`}: ${v.reason}`];
    case "divergence":
      return [
        `  verdict: DIVERGENCE at step ${v.step} (${v.kind}): ${v.detail}`,
        `    SUT:     ${v.got}`,
        `    allowed: ${v.expected.join(" | ")}`,
      ];
  }
}

/** The choices of a concurrent case's schedule, one line each. */
function scheduleText(s: NonNullable<CaseReplayJson["schedule"]>): string[] {
  const n = s.choices.length;
  const lines = [
    `  schedule: ${s.entries} entries, ${n} choice${n === 1 ? "" : "s"}${
      n === 0
        ? ""
        : " (every other entry lets the running op go on, or starts the next op in program order)"
    }${n === 0 ? "" : ":"}`,
  ];
  for (const c of s.choices) {
    const starts = c.starts
      ? `starts $.program[${c.starts.index}] (${opText(c.starts.op)})`
      : "names a thread with nothing to start (skipped)";
    const where = c.running
      ? `on top of $.program[${c.running.index}] (${opText(c.running.op)}) at ${c.step}`
      : "with nothing running, out of program order";
    lines.push(`    entry ${c.entry}: ${c.thread} ${starts} ${where}`);
  }
  return lines;
}

/** Renders a replayed case as text lines. */
export function replayText(file: string, r: CaseReplayJson, trace: boolean): string[] {
  const sides = r.sides === "both" ? "oracle + SUT" : "oracle only";
  const lines = [
    `${file}${r.title ? `: ${r.title}` : ""}  (${r.mode}, ${r.steps.length} steps, ${sides})`,
  ];
  const events = Map.groupBy(r.events ?? [], (e) => e.step);
  for (const s of r.steps) {
    const who = s.vcpu === null ? "host" : `cpu${s.vcpu}`;
    const chosen = s.committed === null ? null : s.allowed[s.committed]!;
    const result = chosen
      ? `${observationText(chosen.observation)}${writesText(chosen)}`
      : `${s.sut ? sutText(s.sut) : "?"}  <- not allowed`;
    lines.push(`  #${s.step} ${who} ${opText(s.op)} -> ${result}`);
    if (s.allowed.length > 1 || chosen === null) {
      s.allowed.forEach((o, i) => {
        const mark = i === s.committed ? "*" : " ";
        lines.push(
          `      ${mark} allowed (${o.via}): ${observationText(o.observation)}${writesText(o)}`,
        );
      });
    }
    if (chosen?.note) lines.push(`      note: ${chosen.note}`);
    if (s.sut?.kind === "observation" && s.sut.adoptedA.length > 0) {
      lines.push(`      speculative A bits set by the SUT: ${s.sut.adoptedA.join(", ")}`);
    }
    for (const e of events.get(s.step) ?? []) {
      lines.push(`      sut: ${e.vcpu === null ? "vm" : `cpu${e.vcpu}`} ${e.what}`);
    }
    if (trace) {
      for (const o of s.allowed) {
        for (const e of o.trace ?? []) {
          const when = e.source === "snapshot" ? `snapshot@${e.snapshot}` : e.source;
          lines.push(`        ${o.via} ${e.level.padEnd(4)} @${e.addr} = ${e.value} (${when})`);
        }
      }
    }
  }
  if (r.schedule) lines.push(...scheduleText(r.schedule));
  lines.push(...verdictText(r));
  if (r.divergence) lines.push(...explanationText(r.divergence).map((l) => `    ${l}`));
  if (r.counters && Object.keys(r.counters).length > 0) {
    const shown = Object.entries(r.counters).map(([k, n]) => `${k}=${n}`).join(" ");
    lines.push(`  sut counters: ${shown}`);
  }
  return lines;
}
