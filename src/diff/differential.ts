/**
 * The differential runner: the comparison contract of ARCHITECTURE.md §7.
 *
 * Each op runs on the oracle (which computes every allowed outcome) and on the system under
 * test (which produces one observation). The step passes when the SUT's observation is among
 * the allowed ones; the oracle then commits that outcome, so it follows the SUT's choice of
 * stale TLB entry or spurious fault. After the step, guest memory must agree word for word,
 * except for accessed bits the SUT set in paging entries the processor could have walked
 * speculatively (MAY_A, spec §5.2); those are adopted into the oracle's memory. A dirty log may
 * contain more gfns than the oracle requires, never fewer. An optional audit of the SUT's
 * internal invariants runs after every step.
 *
 * The oracle and the SUT meet only here: each is built from the case alone.
 *
 * @module
 */
import {
  type CommittedStep,
  type MachineOptions,
  ReferenceMachine,
  type StepChoices,
} from "../../oracles/machine.ts";
import type { Case } from "../model/case.ts";
import { hex } from "../model/hex.ts";
import { formatObservation, type Observation } from "../model/observation.ts";
import type { Op } from "../model/op.ts";
import type { Kvm } from "../shadow/kvm.ts";
import type { Counter } from "../shadow/stats.ts";
import {
  ShadowMachine,
  type ShadowMachineOptions,
  type SutStep,
  unsupportedReason,
} from "../shadow/machine.ts";

/** An internal-invariant violation reported by an audit of the SUT. */
export interface AuditFinding {
  readonly invariant: string;
  readonly detail: string;
}

/** Options of a differential run. */
export interface DiffOptions {
  readonly oracle?: MachineOptions;
  readonly sut?: ShadowMachineOptions;
  /** Runs after every step on the SUT's VM (e.g. `kvm_mmu_audit`); findings are divergences. */
  readonly audit?: (kvm: Kvm) => readonly AuditFinding[];
}

/** How a step failed the contract. */
export type DivergenceKind = "observation" | "memory" | "sut-failure" | "invariant";

/** A failed comparison. */
export interface Divergence {
  readonly step: number;
  readonly kind: DivergenceKind;
  /** What the oracle allowed (observations, or the expected memory word). */
  readonly expected: readonly string[];
  /** What the SUT did. */
  readonly got: string;
  readonly detail: string;
}

/** The verdict on a case. */
export type DiffVerdict =
  | { readonly status: "pass" }
  | { readonly status: "unsupported"; readonly step: number | null; readonly reason: string }
  | { readonly status: "divergence"; readonly divergence: Divergence };

/** One step of a differential run. */
export interface DiffStep {
  readonly choices: StepChoices;
  readonly sut: SutStep;
  /** The oracle's commit of the SUT's outcome (null when the step diverged). */
  readonly committed: CommittedStep | null;
  /** Accessed bits the SUT set speculatively, as `gpa: old -> new`. */
  readonly adoptedA: readonly string[];
  /** The SUT counters that moved during the step, with how much (the mechanisms involved). */
  readonly mechanisms: Readonly<Partial<Record<Counter, number>>>;
}

/** The result of a differential run. */
export interface DiffResult {
  readonly verdict: DiffVerdict;
  readonly steps: readonly DiffStep[];
  /** The SUT (null when it could not be built). */
  readonly sut: ShadowMachine | null;
}

/** Text of a SUT step, in the oracle's vocabulary. */
export function formatSutStep(s: SutStep): string {
  return s.kind === "observation"
    ? formatObservation(s.observation)
    : `SUT failure (${s.reason}): ${s.detail}`;
}

/** True if the SUT's observation is what the allowed one says (a dirty log may have more). */
function matches(allowed: Observation, got: Observation): boolean {
  if (allowed.kind === "dirtyLog" && got.kind === "dirtyLog") {
    const have = new Set(got.gfns);
    return allowed.slot === got.slot && allowed.gfns.every((g) => have.has(g));
  }
  return formatObservation(allowed) === formatObservation(got);
}

/** Whether an outcome's own writes are visible in the SUT's memory (RAM only). */
function writesVisible(m: ReferenceMachine, sut: ShadowMachine, index: number, c: StepChoices) {
  const outcome = c.outcomes[index]!;
  const stores = outcome.writes.filter((w) => w.kind === "store");
  return outcome.writes.every((w) => {
    const slot = m.memory.slotOf(w.addr >> 12n);
    if (!slot || slot.readOnly) return true;
    // An A/D write that the access's own store then overwrote (a store to its own PTE) left no
    // trace in memory: it cannot rule the outcome out.
    if (
      w.kind !== "store" &&
      stores.some((s) => s.addr < w.addr + BigInt(w.bytes) && w.addr < s.addr + BigInt(s.bytes))
    ) return true;
    const word = sut.readGuestWord(w.addr);
    if (w.kind === "store") return word === w.value;
    const mask = w.bytes === 4 && (w.addr & 4n) !== 0n ? w.mask << 32n : w.mask;
    return (word & mask) === mask;
  });
}

/** How many of an outcome's A/D writes would change the oracle's memory now. */
function changedBits(m: ReferenceMachine, outcome: StepChoices["outcomes"][number]): number {
  return outcome.writes.filter((w) =>
    w.kind !== "store" && (m.memory.read(w.addr, w.bytes) & w.mask) !== w.mask
  ).length;
}

/** Bits that may differ between the two memories: A of an 8-byte or of either 4-byte entry. */
const A_LOW = 1n << 5n;
const A_HIGH = 1n << 37n;

/**
 * Compares guest memory; adopts speculative A bits into the oracle. Returns the first word that
 * differs in a way the architecture does not allow, or null. Between full comparisons (`full`:
 * every page either side has) only the pages written in the step are compared: the oracle's
 * committed writes and the SUT's recorded guest writes.
 */
function compareMemory(
  m: ReferenceMachine,
  sut: ShadowMachine,
  vcpus: number,
  committed: CommittedStep,
  adopted: string[],
  full: boolean,
): { gpa: bigint; oracle: bigint; sut: bigint } | null {
  const gfns = new Set<bigint>();
  if (full) {
    for (const [gfn] of m.memory.pages()) gfns.add(gfn);
    for (const gfn of sut.kvm.ram.backedGfns()) gfns.add(BigInt(gfn));
  } else {
    for (const w of committed.outcome.writes) gfns.add(w.addr >> 12n);
  }
  for (const gfn of sut.kvm.ram.takeWritten()) gfns.add(BigInt(gfn));
  for (const gfn of [...gfns].sort((a, b) => (a < b ? -1 : 1))) {
    const page = m.memory.page(gfn);
    const sutPage = sut.guestPage(Number(gfn));
    for (let i = 0; i < 512; i++) {
      const o = page?.[i] ?? 0n;
      const s = sutPage?.[i] ?? 0n;
      if (o === s) continue;
      const gpa = gfn * 4096n + BigInt(i * 8);
      const added = s & ~o;
      const mayA = added === (s ^ o) && (added & ~(A_LOW | A_HIGH)) === 0n &&
        [A_LOW, A_HIGH].every((bit) => {
          if ((added & bit) === 0n) return true;
          const entry = bit === A_LOW ? gpa : gpa + 4n;
          for (let v = 0; v < vcpus; v++) {
            if (m.accessedMayBeSet(v, entry, committed)) return true;
          }
          return false;
        });
      if (!mayA) return { gpa, oracle: o, sut: s };
      m.memory.write(gpa, 8, s);
      adopted.push(`${hex(gpa)}: ${hex(o)} -> ${hex(s)}`);
    }
  }
  return null;
}

/**
 * Runs a case on the oracle and the SUT and compares them step by step, stopping at the first
 * divergence.
 *
 * @throws {InitialStateError} when the case's initial state is impossible (from the oracle)
 */
export function runDifferential(c: Case, options: DiffOptions = {}): DiffResult {
  const oracle = new ReferenceMachine(c, options.oracle);
  const why = unsupportedReason(c);
  if (why) {
    return { verdict: { status: "unsupported", step: null, reason: why }, steps: [], sut: null };
  }
  let sut: ShadowMachine;
  try {
    sut = new ShadowMachine(c, options.sut);
  } catch (e: unknown) {
    if (e instanceof RangeError) throw e; // an unknown injected bug: bad input
    const reason = e instanceof Error ? e.message : String(e);
    return { verdict: { status: "unsupported", step: null, reason }, steps: [], sut: null };
  }
  const steps: DiffStep[] = [];
  const stop = (verdict: DiffVerdict): DiffResult => ({ verdict, steps, sut });
  for (const op of c.program) {
    const choices = oracle.allowed(op);
    const before = { ...sut.kvm.stats.counters };
    const got = sut.step(op);
    const mechanisms: Partial<Record<Counter, number>> = {};
    for (const [k, n] of Object.entries(sut.kvm.stats.counters) as [Counter, number][]) {
      if (n !== before[k]) mechanisms[k] = n - before[k];
    }
    const expected = [...new Set(choices.outcomes.map((o) => formatObservation(o.observation)))];
    const diverge = (
      kind: DivergenceKind,
      detail: string,
      exp = expected,
      text = formatSutStep(got),
    ) =>
      stop({
        status: "divergence",
        divergence: { step: choices.step, kind, expected: exp, got: text, detail },
      });
    if (got.kind === "failure") {
      steps.push({ choices, sut: got, committed: null, adoptedA: [], mechanisms });
      if (got.reason === "emulation_failure") {
        return stop({ status: "unsupported", step: choices.step, reason: got.detail });
      }
      return diverge("sut-failure", got.detail);
    }
    const candidates = choices.outcomes.flatMap((
      o,
      i,
    ) => (matches(o.observation, got.observation) ? [i] : []));
    if (candidates.length === 0) {
      steps.push({ choices, sut: got, committed: null, adoptedA: [], mechanisms });
      return diverge("observation", `${describe(op)}: the SUT's result is not allowed`);
    }
    // The allowed outcome whose A/D writes the SUT made: of those whose writes are all visible,
    // the one that changes the most bits (a TLB hit that set D explains more than one that set
    // nothing; setting a bit that is already set shows nothing), the first one on a tie.
    const visible = candidates.filter((i) => writesVisible(oracle, sut, i, choices));
    const gain = (i: number) => changedBits(oracle, choices.outcomes[i]!);
    const index = visible.reduce(
      (best, i) => (gain(i) > gain(best) ? i : best),
      visible[0] ?? candidates[0]!,
    );
    const committed = oracle.commit(choices, index);
    const adoptedA: string[] = [];
    const last = choices.step === c.program.length;
    const bad = compareMemory(oracle, sut, c.vcpus, committed, adoptedA, last);
    steps.push({ choices, sut: got, committed, adoptedA, mechanisms });
    if (bad) {
      return diverge(
        "memory",
        `${describe(op)}: guest memory at ${hex(bad.gpa)} differs`,
        [hex(bad.oracle)],
        hex(bad.sut),
      );
    }
    const findings = options.audit?.(sut.kvm) ?? [];
    if (findings.length > 0) {
      return diverge(
        "invariant",
        findings.map((f) => `${f.invariant}: ${f.detail}`).join("\n"),
        ["no invariant violation"],
        findings.map((f) => f.invariant).join(", "),
      );
    }
  }
  return stop({ status: "pass" });
}

/** A one-line description of an op for divergence details. */
function describe(op: Op): string {
  const vcpu = "vcpu" in op ? ` on vCPU ${op.vcpu}` : "";
  const la = "la" in op ? ` ${hex(op.la)}` : "";
  const cpl = "cpl" in op ? ` at CPL${op.cpl}` : "";
  return `${op.op}${la}${cpl}${vcpu}`;
}
