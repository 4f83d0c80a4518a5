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
import { type Decider, type ScheduleEntry, Scheduler, threadOf } from "../shadow/scheduler.ts";
import { COUNTERS } from "../shadow/stats.ts";
import { DirtyLogContract } from "./dirty_log_contract.ts";
import { wordMaskOf } from "./mem_write.ts";
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
  /** A concurrent case's choices once its schedule is used up (the fuzzer's); recorded. */
  readonly decider?: Decider;
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
  /** The op's index in the program (steps are in completion order in a concurrent case). */
  readonly index: number;
  /**
   * A concurrent case: the ops whose result was final but whose thread was still in KVM when
   * this one completed (an emulated store before its page-track zap).
   */
  readonly finishing?: readonly number[];
  /**
   * A concurrent case: whether memory was compared and the audit run after this op (only when
   * nothing was in flight), and passed. Absent in a sequential case (always after every op).
   */
  audited?: boolean;
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
  /**
   * A concurrent case's schedule as run (its entries consumed, then the decider's choices):
   * with it in place of the case's, the case replays the same way. Null for a sequential case.
   */
  readonly schedule: readonly number[] | null;
  /** For each entry of {@link schedule}, where it was consumed and what it chose there. */
  readonly scheduleEntries: readonly ScheduleEntry[] | null;
}

/** Text of a SUT step, in the oracle's vocabulary. */
export function formatSutStep(s: SutStep): string {
  return s.kind === "observation"
    ? formatObservation(s.observation)
    : `SUT failure (${s.reason}): ${s.detail}`;
}

/**
 * True if the SUT's observation is what the allowed one says (a dirty log may have more; in a
 * concurrent case its content is judged by {@link DirtyLogContract} instead).
 */
function matches(allowed: Observation, got: Observation, concurrent: boolean): boolean {
  if (allowed.kind === "dirtyLog" && got.kind === "dirtyLog") {
    const have = new Set(got.gfns);
    return allowed.slot === got.slot && (concurrent || allowed.gfns.every((g) => have.has(g)));
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
    const mask = wordMaskOf(w);
    return (word & mask) === mask;
  });
}

/** How many of an outcome's A/D writes would change the oracle's memory now. */
function changedBits(m: ReferenceMachine, outcome: StepChoices["outcomes"][number]): number {
  return outcome.writes.filter((w) =>
    w.kind !== "store" && (m.memory.read(w.addr, w.bytes) & w.mask) !== w.mask
  ).length;
}

/** All counters at zero. */
const ZERO_COUNTERS = Object.fromEntries(COUNTERS.map((k) => [k, 0])) as Record<Counter, number>;

/** Bits that may differ between the two memories: A of an 8-byte or of either 4-byte entry. */
const A_LOW = 1n << 5n;
const A_HIGH = 1n << 37n;
/** D of an 8-byte or of either 4-byte entry. */
const D_LOW = 1n << 6n;
const D_HIGH = 1n << 38n;

/**
 * Compares guest memory; adopts speculative A bits into the oracle. Returns the first word that
 * differs in a way the architecture does not allow, or null. Between full comparisons (`full`:
 * every page either side has) only the pages written since the last comparison are compared:
 * the oracle's committed writes and the SUT's recorded guest writes (`written`). With
 * `adoptOnly` (a concurrent case with ops in flight) only the A bits are adopted, and the D
 * bits an op in flight may have set (`inFlightD`: 8-byte-aligned gpa → bits), so what the next
 * op reads from memory includes them; nothing is reported.
 */
function compareMemory(
  m: ReferenceMachine,
  sut: ShadowMachine,
  vcpus: number,
  committed: CommittedStep | undefined,
  adopted: string[],
  full: boolean,
  written: ReadonlySet<bigint>,
  adoptOnly = false,
  inFlightD: () => ReadonlyMap<bigint, bigint> = () => new Map(),
): { gpa: bigint; oracle: bigint; sut: bigint } | null {
  const gfns = new Set<bigint>(written);
  if (full) {
    for (const [gfn] of m.memory.pages()) gfns.add(gfn);
    for (const gfn of sut.kvm.ram.backedGfns()) gfns.add(BigInt(gfn));
  }
  for (const gfn of [...gfns].sort((a, b) => (a < b ? -1 : 1))) {
    const page = m.memory.page(gfn);
    const sutPage = sut.guestPage(Number(gfn));
    for (let i = 0; i < 512; i++) {
      const o = page?.[i] ?? 0n;
      const s = sutPage?.[i] ?? 0n;
      if (o === s) continue;
      const gpa = gfn * 4096n + BigInt(i * 8);
      const dirty = (s & ~o & (D_LOW | D_HIGH)) === 0n ? 0n : inFlightD().get(gpa) ?? 0n;
      const ok = adoptable(m, vcpus, committed, gpa, o, s, dirty, []);
      if (!ok && adoptOnly) continue;
      if (!ok) return { gpa, oracle: o, sut: s };
      m.memory.write(gpa, 8, s);
      adopted.push(`${hex(gpa)}: ${hex(o)} -> ${hex(s)}`);
    }
  }
  return null;
}

/**
 * Whether the SUT's word `s` at `gpa` differs from the oracle's `o` only by bits the oracle can
 * adopt: A bits of entries a walk may have set (MAY_A, spec §5.2; also in the tables as they were
 * at one of `pastSteps`, read by a walk in flight since, which is not atomic), and the D bits
 * `dirty` that a store in flight may have set.
 */
function adoptable(
  m: ReferenceMachine,
  vcpus: number,
  committed: CommittedStep | undefined,
  gpa: bigint,
  o: bigint,
  s: bigint,
  dirty: bigint,
  pastSteps: readonly number[],
): boolean {
  const added = s & ~o & ~dirty;
  if ((s & ~o) !== (s ^ o) || (added & ~(A_LOW | A_HIGH)) !== 0n) return false;
  return [A_LOW, A_HIGH].every((bit) => {
    if ((added & bit) === 0n) return true;
    const entry = bit === A_LOW ? gpa : gpa + 4n;
    for (let v = 0; v < vcpus; v++) {
      if (m.accessedMayBeSet(v, entry, committed)) return true;
      if (pastSteps.some((t) => m.accessedMayBeSet(v, entry, committed, t))) return true;
    }
    return false;
  });
}

/** What one completed op is checked for (see {@link runDifferential}). */
interface CheckScope {
  /** Compare guest memory now (the pages written since the last comparison). */
  readonly memory: boolean;
  /** Run the audit now. */
  readonly audit: boolean;
  /** Judge a dirty log by the concurrent contract instead of the oracle's list. */
  readonly dirtyLog: ((got: Observation) => string | null) | null;
  /** Program indices of the ops in flight (a concurrent case). */
  readonly inFlight: readonly number[];
  /** Program indices of the ops retired but still in KVM (a concurrent case). */
  readonly finishing?: readonly number[];
}

/**
 * The D bits the stores in flight may have set already (their walks run before they complete),
 * by 8-byte-aligned gpa: those the oracle's outcomes for them would set now.
 */
function inFlightDirty(
  oracle: ReferenceMachine,
  c: Case,
  inFlight: readonly number[],
): Map<bigint, bigint> {
  const bits = new Map<bigint, bigint>();
  for (const i of inFlight) {
    const op = c.program[i]!;
    if (op.op !== "store") continue;
    for (const o of oracle.allowed(op).outcomes) {
      for (const w of o.writes) {
        if (w.kind !== "D") continue;
        const word = w.addr & ~7n;
        const mask = wordMaskOf(w);
        bits.set(word, (bits.get(word) ?? 0n) | mask);
      }
    }
  }
  return bits;
}

/**
 * Runs a case on the oracle and the SUT and compares them op by op, stopping at the first
 * divergence. A case with a `schedule` runs concurrently ({@link Scheduler}): ops are checked
 * in the order they complete in the SUT, with the concurrent contract of the README.
 *
 * @throws {InitialStateError} when the case's initial state is impossible (from the oracle)
 */
export function runDifferential(c: Case, options: DiffOptions = {}): DiffResult {
  const oracle = new ReferenceMachine(c, options.oracle);
  const why = unsupportedReason(c);
  if (why) {
    return {
      verdict: { status: "unsupported", step: null, reason: why },
      steps: [],
      sut: null,
      schedule: null,
      scheduleEntries: null,
    };
  }
  let sut: ShadowMachine;
  try {
    sut = new ShadowMachine(c, options.sut);
  } catch (e: unknown) {
    if (e instanceof RangeError) throw e; // an unknown injected bug: bad input
    const reason = e instanceof Error ? e.message : String(e);
    const verdict: DiffVerdict = { status: "unsupported", step: null, reason };
    return {
      verdict,
      steps: [],
      sut: null,
      schedule: null,
      scheduleEntries: null,
    };
  }
  const steps: DiffStep[] = [];
  const written = new Set<bigint>();
  /** Pages the SUT wrote since the last adoption pass (a concurrent case's ops in flight). */
  const unadopted = new Set<bigint>();
  /**
   * gpte updates KVM's walker made for ops in flight, not yet seen by the oracle, with the
   * oracle steps their walks started at and the D bits their stores may set. One a later op overwrote is adopted, as it was, before
   * that op is checked (so a translation cached from it stays allowed); the others after the
   * next commit, which usually makes them itself (the op that walked completing).
   */
  const published: { word: bigint; value: bigint; past: number[]; dirty: bigint }[] = [];
  /** Adopts the published words that `overwritten` selects (see {@link published}). */
  const adoptPublished = (overwritten: boolean) => {
    const rest: typeof published = [];
    for (const p of published.splice(0)) {
      if ((sut.readGuestWord(p.word) !== p.value) !== overwritten) {
        rest.push(p);
        continue;
      }
      const o = oracle.memory.read(p.word, 8);
      if (o === p.value) continue;
      if (adoptable(oracle, c.vcpus, undefined, p.word, o, p.value, p.dirty, p.past)) {
        oracle.memory.write(p.word, 8, p.value);
      }
    }
    published.push(...rest);
  };
  const takeSutWrites = () => {
    for (const gfn of sut.kvm.ram.takeWritten()) {
      written.add(BigInt(gfn));
      unadopted.add(BigInt(gfn));
    }
  };
  let verdict: DiffVerdict | null = null;
  let before = { ...sut.kvm.stats.counters };
  const threadBefore = new Map<number, Record<Counter, number>>();
  /** A concurrent case: each op's mechanisms, completed when its thread is done with it. */
  const ownMechanisms = new Map<number, Partial<Record<Counter, number>>>();
  let lastCommitted: CommittedStep | undefined;

  /** The last op whose committed write covers `bits` of the word at `gpa`, if any. */
  const blame = (gpa: bigint, bits: bigint): number | null =>
    steps.findLast((s) =>
      s.committed?.outcome.writes.some((w) => {
        const mask = w.kind === "store" ? ~0n : wordMaskOf(w);
        return (w.addr & ~7n) === gpa && (mask & bits) !== 0n;
      })
    )?.index ?? null;

  /**
   * After op `index`, the last one checked: compares guest memory (all of it when `full`) and
   * runs the audit. False (with `verdict` set) on a divergence.
   */
  const settle = (index: number, full: boolean): boolean => {
    const step = steps[steps.length - 1]!;
    const fail = (
      kind: DivergenceKind,
      detail: string,
      expected: string[],
      got: string,
      at = index,
    ) => {
      verdict = { status: "divergence", divergence: { step: at + 1, kind, expected, got, detail } };
      return false;
    };
    takeSutWrites();
    unadopted.clear();
    const adopted = step.adoptedA as string[];
    const bad = compareMemory(oracle, sut, c.vcpus, lastCommitted, adopted, full, written);
    written.clear();
    if (bad) {
      // Compared late (a concurrent case with ops in flight): the last op whose committed write
      // covers the bits that differ is the one to blame, not the last one.
      const at = c.schedule !== undefined ? blame(bad.gpa, bad.oracle ^ bad.sut) ?? index : index;
      const detail = `${describe(c.program[at]!)}: guest memory at ${hex(bad.gpa)} differs`;
      return fail("memory", detail, [hex(bad.oracle)], hex(bad.sut), at);
    }
    const findings = options.audit?.(sut.kvm) ?? [];
    if (findings.length === 0) {
      if (c.schedule !== undefined) step.audited = true;
      return true;
    }
    return fail(
      "invariant",
      findings.map((f) => `${f.invariant}: ${f.detail}`).join("\n"),
      ["no invariant violation"],
      findings.map((f) => f.invariant).join(", "),
    );
  };

  /** Checks op `index`'s SUT result: its commit, or null (with `verdict` set) on a divergence. */
  const check = (index: number, got: SutStep, scope: CheckScope): CommittedStep | null => {
    const op = c.program[index]!;
    takeSutWrites();
    adoptPublished(true);
    // Ops still in flight may have set A bits the oracle has not seen (their walks, or
    // speculative ones): adopt them first, so this op's reads of page tables see them too.
    // Which op set one is unknown, so no step's own rights fault rules its leaf out.
    if (c.schedule !== undefined) {
      const d = memo(() => inFlightDirty(oracle, c, scope.inFlight));
      compareMemory(oracle, sut, c.vcpus, undefined, [], false, unadopted, true, d);
      unadopted.clear();
    }
    const choices = oracle.allowed(op);
    // The counters the op moved: in a concurrent case, its own thread's since its last op.
    const stats = sut.kvm.stats;
    const thread = threadOf(op, c.vcpus);
    const now = c.schedule === undefined ? stats.counters : stats.threadCounters(thread);
    const was = c.schedule === undefined ? before : threadBefore.get(thread) ?? ZERO_COUNTERS;
    const mechanisms: Partial<Record<Counter, number>> = {};
    for (const [k, n] of Object.entries(now) as [Counter, number][]) {
      if (n !== was[k]) mechanisms[k] = n - was[k];
    }
    if (c.schedule === undefined) before = { ...now };
    else {
      threadBefore.set(thread, { ...now });
      ownMechanisms.set(index, mechanisms);
    }
    const expected = [...new Set(choices.outcomes.map((o) => formatObservation(o.observation)))];
    const diverge = (
      kind: DivergenceKind,
      detail: string,
      exp = expected,
      text = formatSutStep(got),
      at = index,
    ) => {
      verdict = {
        status: "divergence",
        divergence: { step: at + 1, kind, expected: exp, got: text, detail },
      };
      return null;
    };
    /** Records this op's step (with its commit, or null when it diverged). */
    const record = (committed: CommittedStep | null) =>
      steps.push({
        index,
        ...(scope.finishing?.length ? { finishing: scope.finishing } : {}),
        choices,
        sut: got,
        committed,
        adoptedA: [],
        mechanisms,
        ...(c.schedule === undefined ? {} : { audited: false }),
      });
    if (got.kind === "failure") {
      record(null);
      if (got.reason === "emulation_failure") {
        verdict = { status: "unsupported", step: index + 1, reason: got.detail };
        return null;
      }
      return diverge("sut-failure", got.detail);
    }
    const candidates = choices.outcomes.flatMap((o, i) =>
      matches(o.observation, got.observation, scope.dirtyLog !== null) ? [i] : []
    );
    if (candidates.length === 0) {
      record(null);
      // A concurrent case compares memory late: a value read from a RAM word where the memories
      // already differ shows an earlier op's memory divergence, which is the one to report.
      const read = got.observation.kind === "ok" ? got.observation : null;
      if (
        c.schedule !== undefined && read?.value != null && oracle.memory.slotOf(read.gpa >> 12n)
      ) {
        const word = read.gpa & ~7n;
        const o = oracle.memory.read(word, 8);
        const s = sut.readGuestWord(word);
        const at = o === s ? null : blame(word, o ^ s);
        if (at !== null) {
          const detail = `${describe(c.program[at]!)}: guest memory at ${hex(word)} differs`;
          return diverge("memory", detail, [hex(o)], hex(s), at);
        }
      }
      return diverge("observation", `${describe(op)}: the SUT's result is not allowed`);
    }
    // The allowed outcome whose A/D writes the SUT made: of those whose writes are all visible,
    // the one that changes the most bits (a TLB hit that set D explains more than one that set
    // nothing; setting a bit that is already set shows nothing), the first one on a tie.
    const visible = candidates.filter((i) => writesVisible(oracle, sut, i, choices));
    const gain = (i: number) => changedBits(oracle, choices.outcomes[i]!);
    const chosen = visible.reduce(
      (best, i) => (gain(i) > gain(best) ? i : best),
      visible[0] ?? candidates[0]!,
    );
    const committed = oracle.commit(choices, chosen);
    lastCommitted = committed;
    adoptPublished(false);
    for (const w of committed.outcome.writes) written.add(w.addr >> 12n);
    record(committed);
    const missing = scope.dirtyLog?.(got.observation) ?? null;
    if (missing !== null) return diverge("observation", `${describe(op)}: ${missing}`);
    if (scope.memory && !settle(index, steps.length === c.program.length)) return null;
    return committed;
  };

  let schedule: ReturnType<typeof runConcurrent> | null = null;
  if (c.schedule === undefined) {
    const scope: CheckScope = { memory: true, audit: true, dirtyLog: null, inFlight: [] };
    c.program.every((op, i) => check(i, sut.step(op), scope) !== null);
  } else {
    // KVM's walker set A/D in a gpte for an op in flight: the oracle sees them now, so a
    // translation an op caches from that gpte is allowed even if the gpte changes before the
    // op completes.
    const startedAt = new Map<number, number>();
    const publish = (gpa: number, inFlight: readonly number[]) => {
      const word = BigInt(gpa) & ~7n;
      const past = [...new Set(inFlight.map((i) => startedAt.get(i) ?? 0))];
      const value = sut.readGuestWord(word);
      // The D bits a store in flight may set: as the oracle sees it now, or, since a walk is not
      // atomic (its reads come before its A/D updates), in an entry a store's walk could reach
      // when it started.
      const newD = value & ~oracle.memory.read(word, 8) & (D_LOW | D_HIGH);
      let dirty = newD === 0n ? 0n : inFlightDirty(oracle, c, inFlight).get(word) ?? 0n;
      if ((newD & ~dirty) !== 0n && inFlight.some((i) => c.program[i]!.op === "store")) {
        for (const [bit, entry] of [[D_LOW, word], [D_HIGH, word + 4n]] as const) {
          if ((newD & bit) === 0n) continue;
          const reached = past.some((t) =>
            Array.from({ length: c.vcpus }, (_, v) => v).some((v) =>
              oracle.accessedMayBeSet(v, entry, undefined, t)
            )
          );
          if (reached) dirty |= bit;
        }
      }
      published.push({ word, value, past, dirty });
    };
    const start = (index: number) => startedAt.set(index, oracle.committedSteps);
    // An op that completed early (retired) goes on in KVM: what its thread moves until it is
    // done is its own too, not its thread's next op's.
    const end = (index: number, thread: number) => {
      const own = ownMechanisms.get(index);
      if (!own) return;
      const now = sut.kvm.stats.threadCounters(thread);
      const was = threadBefore.get(thread) ?? ZERO_COUNTERS;
      for (const [k, n] of Object.entries(now) as [Counter, number][]) {
        if (n !== was[k]) own[k] = (own[k] ?? 0) + n - was[k];
      }
      threadBefore.set(thread, { ...now });
    };
    schedule = runConcurrent(
      c,
      oracle,
      sut,
      check,
      settle,
      { publish, start, end },
      options.decider ?? null,
    );
  }
  return {
    verdict: verdict ?? { status: "pass" },
    steps,
    sut,
    schedule: schedule?.recorded ?? null,
    scheduleEntries: schedule?.entries ?? null,
  };
}

/**
 * The concurrent contract (README, "Concurrent cases"): ops are checked in SUT completion
 * order; guest memory and the audit only when no op is in flight; a dirty log by the interval
 * rule of {@link DirtyLogContract}.
 */
function runConcurrent(
  c: Case,
  oracle: ReferenceMachine,
  sut: ShadowMachine,
  check: (index: number, got: SutStep, scope: CheckScope) => CommittedStep | null,
  settle: (index: number, full: boolean) => boolean,
  hooks: {
    publish: (gpa: number, inFlight: readonly number[]) => void;
    start: (index: number) => void;
    end: (index: number, thread: number) => void;
  },
  decider: Decider | null,
): { recorded: readonly number[]; entries: readonly ScheduleEntry[] } {
  const scheduler = new Scheduler(sut, c.program, c.vcpus, c.schedule ?? [], decider);
  const log = new DirtyLogContract();
  let last: number | null = null;
  let failed = false;
  const livelock = scheduler.run((done) => {
    const dirtyLog = (got: Observation): string | null =>
      got.kind === "dirtyLog"
        ? log.harvest(got.slot, got.gfns, done, (gpa) => sut.readGuestWord(gpa))
        : null;
    const committed = check(done.index, done.step, {
      memory: done.quiescent,
      audit: done.quiescent,
      dirtyLog,
      inFlight: done.inFlight,
      finishing: done.finishing,
    });
    if (committed === null) return !(failed = true);
    log.note(oracle, c.program[done.index]!, committed, done);
    last = done.index;
    return true;
  }, (index) => {
    // An op that retired early (its thread was still in KVM): checked once its thread is done.
    if (index !== last) return true;
    return settle(index, false) || !(failed = true);
  }, hooks);
  if (livelock !== null) {
    const failure: SutStep = { kind: "failure", reason: "livelock", detail: livelock.detail };
    check(livelock.index, failure, { memory: false, audit: false, dirtyLog: null, inFlight: [] });
  } else if (!failed && last !== null) {
    settle(last, true);
  }
  const { recorded, entries } = scheduler;
  return { recorded, entries };
}

/** `f`, computed at the first call only. */
function memo<T>(f: () => T): () => T {
  let value: { v: T } | null = null;
  return () => (value ??= { v: f() }).v;
}

/** A one-line description of an op for divergence details. */
function describe(op: Op): string {
  const vcpu = "vcpu" in op ? ` on vCPU ${op.vcpu}` : "";
  const la = "la" in op ? ` ${hex(op.la)}` : "";
  const cpl = "cpl" in op ? ` at CPL${op.cpl}` : "";
  return `${op.op}${la}${cpl}${vcpu}`;
}
