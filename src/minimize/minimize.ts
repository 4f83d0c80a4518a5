/**
 * The case minimizer: reduces a diverging case to a small one that still diverges *with the
 * same signature* (`explain.ts`), so the reduced case shows the same bug, not just any bug.
 *
 * Passes, repeated until none changes the case (a fixed point) or the budget is spent:
 *
 * 1. the program is cut after the diverging step, then `ddmin` over its ops (1-minimal);
 *    a concurrent case's schedule is cut to the entries its run consumed, replaced by an empty
 *    one (program order) or none (a sequential case) when the signature survives that, else its
 *    choices (preemptions, ops started out of program order) are dropped one by one, last
 *    first. Entries are positional, so a candidate is re-recorded from the remaining choices
 *    by anchor (the op and its atomic step, `ScheduleEntry.anchor`), as is a candidate without
 *    some ops: the choices stay with the ops they were made in;
 * 2. memory: `ddmin` over whole pages, then over the non-zero words (clearing entries);
 * 3. values, one change at a time, kept when the signature survives: clear each set bit of each
 *    memory word and stored value (flags, reserved bits, then address bits, high to low), lower
 *    each linear address the program uses (clear its set bits, high to low, in every op that
 *    uses it, so the ops that meant the same page still do), drop
 *    memslots, turn off CPU features and control bits (CR0.WP, CR4 bits, EFER.NXE, RFLAGS.AC,
 *    PKRU), fewer vCPUs, and switch off SUT mechanisms the bug does not need.
 *
 * Every candidate is re-validated through the case format (so it is a case a user can load) and
 * run through the same differential runner, audit and signer as the fuzzer. Deterministic: the
 * order of candidates is fixed, so the same case and budget give the same result unless the
 * budget ran out (reported as `exhausted`).
 *
 * @module
 */
import type { Case } from "../model/case.ts";
import { encodeCase, parseCase } from "../corpus/load_case.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";
import { runDifferential } from "../diff/differential.ts";
import { divergenceSignature } from "../diff/explain.ts";
import { basicSignature } from "../diff/fuzz_run.ts";
import { type Budget, budgetOf, ddmin } from "./ddmin.ts";
import { anchoredDecider } from "../shadow/scheduler.ts";

/** Options of {@link minimizeCase}. */
export interface MinimizeOptions {
  /** Wall-clock budget in milliseconds (default 30 s). */
  readonly budgetMs?: number;
  /** Test budget: at most this many candidate runs (default 20 000). */
  readonly maxTests?: number;
  /** The signature to keep (default: the case's own, computed by running it). */
  readonly signature?: string;
}

/** What {@link minimizeCase} did. */
export interface MinimizeResult {
  /** The reduced case (the input itself when nothing could be removed). */
  readonly case: Case;
  /** The signature the reduced case keeps. */
  readonly signature: string;
  /** Candidate cases run (each one full differential run). */
  readonly tests: number;
  /** Rounds of all passes (the last one changed nothing unless the budget ran out). */
  readonly rounds: number;
  /** True when the budget ran out before a fixed point. */
  readonly exhausted: boolean;
  readonly before: CaseSize;
  readonly after: CaseSize;
}

/** The size of a case, in the units a reader counts. */
export interface CaseSize {
  readonly ops: number;
  readonly pages: number;
  readonly words: number;
  /** Schedule entries (0 for a sequential case). */
  readonly schedule: number;
}

/** The size of `c`. */
export function caseSize(c: Case): CaseSize {
  return {
    ops: c.program.length,
    pages: c.memory.length,
    words: c.memory.reduce((n, p) => n + Object.keys(p.words).length, 0),
    schedule: c.schedule?.length ?? 0,
  };
}

/**
 * The fuzzer's signature of `c`'s run: the divergence signature, the basic one when that cannot
 * tell, `pass` or `unsupported` when the case does not diverge, `harness-exception` if the
 * harness throws.
 */
export function signatureOf(c: Case): string {
  try {
    const r = runDifferential(c, { audit: kvm_mmu_audit });
    return divergenceSignature(c, r) ?? basicSignature(c, r);
  } catch (e: unknown) {
    return `harness-exception:${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`;
  }
}

/** Re-validates a candidate through the case format; null if it is not a legal case. */
function legal(c: Case): Case | null {
  let text: string;
  try {
    text = encodeCase(c);
  } catch {
    return null;
  }
  const r = parseCase(text, "candidate");
  return r.ok ? r.case : null;
}

/**
 * Minimizes a diverging case (see the module doc). Throws if `c` does not diverge (its
 * signature is `pass` or `unsupported`): there is nothing to keep.
 */
export function minimizeCase(c: Case, options: MinimizeOptions = {}): MinimizeResult {
  const target = options.signature ?? signatureOf(c);
  if (target === "pass" || target === "unsupported") {
    throw new Error(`the case does not diverge (${target}): nothing to minimize`);
  }
  const budget = budgetOf(options.maxTests ?? 20_000, options.budgetMs ?? 30_000);
  let tests = 0;
  const fails = (candidate: Case): boolean => {
    tests++;
    return signatureOf(candidate) === target;
  };
  const before = caseSize(c);
  let current = structuredClone(c);
  let rounds = 0;
  for (;;) {
    rounds++;
    const start = encodeCase(current);
    for (const pass of PASSES) {
      current = pass(current, fails, budget);
      if (budget.exhausted) break;
    }
    if (budget.exhausted || encodeCase(current) === start) break;
  }
  return {
    case: current,
    signature: target,
    tests,
    rounds,
    exhausted: budget.exhausted,
    before,
    after: caseSize(current),
  };
}

type Pass = (c: Case, fails: (c: Case) => boolean, budget: Budget) => Case;

/** Replaces one part of a case through `ddmin`, keeping only legal candidates. */
function ddminPart<T>(
  c: Case,
  items: readonly T[],
  rebuild: (c: Case, items: readonly T[]) => Case,
  fails: (c: Case) => boolean,
  budget: Budget,
): Case {
  const kept = ddmin(items, (subset) => {
    const candidate = legal(rebuild(c, subset));
    return candidate !== null && fails(candidate);
  }, budget);
  return kept.length === items.length ? c : legal(rebuild(c, kept)) ?? c;
}

const ops: Pass = (c, fails, budget) => {
  // Ops after the diverging step never matter: cut them first (one test).
  const r = runDifferential(c, { audit: kvm_mmu_audit });
  const step = r.verdict.status === "divergence" ? r.verdict.divergence.step : c.program.length;
  if (step < c.program.length && budget.spend()) {
    const cut = legal({ ...c, program: c.program.slice(0, step) });
    if (cut && fails(cut)) c = cut;
  }
  if (!c.schedule?.length) {
    return ddminPart(
      c,
      c.program,
      (c, program) => ({ ...c, program: [...program] }),
      fails,
      budget,
    );
  }
  // A concurrent case: the choices of its schedule follow the ops they are anchored to.
  const choices = choicesOf(c);
  const indices = c.program.map((_, i) => i);
  const whole = c;
  return ddminPart(
    c,
    indices,
    (c, kept) => {
      const program = kept.map((i) => whole.program[i]!);
      return withChoices({ ...c, program }, remapChoices(choices, kept)) ?? { ...c, program };
    },
    fails,
    budget,
  );
};

const schedule: Pass = (c, fails, budget) => {
  if (c.schedule === undefined) return c;
  // The run stops at the divergence: the entries after what it consumed never matter.
  const ran = runDifferential(c, { audit: kvm_mmu_audit }).schedule;
  if (ran && ran.length < c.schedule.length && budget.spend()) {
    const cut = legal({ ...c, schedule: [...ran] });
    if (cut && fails(cut)) c = cut;
  }
  c = greedy(
    c,
    function* () {
      yield (c) => ({ ...c, schedule: [] });
      yield ({ schedule: _, ...sequential }) => sequential;
    },
    fails,
    budget,
  );
  if (c.schedule === undefined || c.schedule.length === 0) return c;
  return dropChoices(c, fails, budget);
};

/**
 * The choices of `c`'s run, by anchor (`ScheduleEntry.anchor`): the entries that are not what the
 * scheduler does without a schedule (a preemption, an op started out of program order).
 */
function choicesOf(c: Case): Map<string, number> {
  const r = runDifferential(c, { audit: kvm_mmu_audit });
  const out = new Map<string, number>();
  for (const e of r.scheduleEntries ?? []) if (e.thread !== e.dflt) out.set(e.anchor, e.thread);
  return out;
}

/**
 * `c` with a schedule that makes `choices` (by anchor) and the defaults elsewhere, recorded by a
 * run with {@link anchoredDecider} and cut after its last choice; null if that is not a legal
 * case. A choice whose anchor the run never reaches is not made.
 */
function withChoices(c: Case, choices: ReadonlyMap<string, number>): Case | null {
  const r = runDifferential({ ...c, schedule: [] }, {
    audit: kvm_mmu_audit,
    decider: anchoredDecider(choices),
  });
  const recorded = r.schedule ?? [];
  let last = recorded.length - 1;
  while (last >= 0 && recorded[last] === r.scheduleEntries![last]!.dflt) last--;
  return legal({ ...c, schedule: recorded.slice(0, last + 1) });
}

/**
 * The choices of a schedule dropped one by one, last first, each gone for good when the
 * signature survives without it. The others stay where they were: a schedule's entries are
 * positional (dropping one moves what every later entry means), so the case is re-recorded
 * from the remaining choices by anchor.
 */
function dropChoices(c: Case, fails: (c: Case) => boolean, budget: Budget): Case {
  let choices = choicesOf(c);
  for (const at of [...choices.keys()].reverse()) {
    if (!choices.has(at) || !budget.spend()) continue;
    const fewer = new Map(choices);
    fewer.delete(at);
    const candidate = withChoices(c, fewer);
    if (candidate && fails(candidate)) {
      c = candidate;
      choices = choicesOf(c);
    }
  }
  return c;
}

/** The anchors of `choices` after ops were removed: `kept[i]` is the old index of op `i`. */
function remapChoices(
  choices: ReadonlyMap<string, number>,
  kept: readonly number[],
): Map<string, number> {
  const index = new Map(kept.map((old, i) => [old, i]));
  const out = new Map<string, number>();
  for (const [at, t] of choices) {
    const p = /^p:(\d+):(.*)$/.exec(at);
    if (!p) {
      out.set(at, t);
      continue;
    }
    const i = index.get(Number(p[1]));
    if (i !== undefined) out.set(`p:${i}:${p[2]}`, t);
  }
  return out;
}

const pages: Pass = (c, fails, budget) =>
  ddminPart(c, c.memory, (c, memory) => ({ ...c, memory: [...memory] }), fails, budget);

const words: Pass = (c, fails, budget) => {
  const all = c.memory.flatMap((p, i) => Object.keys(p.words).map((k) => [i, k] as const));
  return ddminPart(
    c,
    all,
    (c, kept) => {
      const memory = c.memory.map((p) => ({ gfn: p.gfn, words: {} as Record<string, bigint> }));
      for (const [i, k] of kept) memory[i]!.words[k] = c.memory[i]!.words[k]!;
      return { ...c, memory: memory.filter((p) => Object.keys(p.words).length > 0) };
    },
    fails,
    budget,
  );
};

/** Tries each candidate in order on the current case; keeps each one that still fails. */
function greedy(
  c: Case,
  candidates: (c: Case) => Iterable<(c: Case) => Case | null>,
  fails: (c: Case) => boolean,
  budget: Budget,
): Case {
  let text = encodeCase(c);
  for (const change of candidates(c)) {
    const made = change(c);
    const candidate = made && legal(made);
    const candidateText = candidate && encodeCase(candidate);
    if (!candidate || candidateText === text) continue;
    if (!budget.spend()) return c;
    if (fails(candidate)) [c, text] = [candidate, candidateText!];
  }
  return c;
}

/** Set bits of `v`, high to low. */
function setBits(v: bigint): bigint[] {
  const out: bigint[] = [];
  for (let b = 63n; b >= 0n; b--) if ((v >> b) & 1n) out.push(b);
  return out;
}

const wordBits: Pass = (c, fails, budget) =>
  greedy(
    c,
    function* (c0) {
      for (let i = 0; i < c0.memory.length; i++) {
        for (const k of Object.keys(c0.memory[i]!.words)) {
          for (const b of setBits(c0.memory[i]!.words[k]!)) {
            yield (c) => {
              const page = c.memory[i];
              const v = page?.words[k];
              if (!page || v === undefined || !((v >> b) & 1n)) return null;
              const w = { ...page.words };
              const nv = v & ~(1n << b);
              if (nv === 0n) delete w[k];
              else w[k] = nv;
              const memory = [...c.memory];
              memory[i] = { gfn: page.gfn, words: w };
              return { ...c, memory };
            };
          }
        }
      }
    },
    fails,
    budget,
  );

const storedValues: Pass = (c, fails, budget) =>
  greedy(
    c,
    function* (c0) {
      for (let i = 0; i < c0.program.length; i++) {
        const op = c0.program[i]!;
        if (op.op !== "store") continue;
        for (const b of setBits(op.value)) {
          yield (c) => {
            const o = c.program[i];
            if (o?.op !== "store") return null;
            const program = [...c.program];
            program[i] = { ...o, value: o.value & ~(1n << b) };
            return { ...c, program };
          };
        }
      }
    },
    fails,
    budget,
  );

/** The index of the first op using each linear address of the program, in program order. */
function firstUses(c: Case): number[] {
  const seen = new Set<bigint>();
  const out: number[] = [];
  c.program.forEach((o, i) => {
    if (!("la" in o) || seen.has(o.la)) return;
    seen.add(o.la);
    out.push(i);
  });
  return out;
}

const addresses: Pass = (c, fails, budget) =>
  greedy(
    c,
    function* (c0) {
      for (const i of firstUses(c0)) {
        const first = c0.program[i]!;
        if (!("la" in first)) continue;
        for (const b of setBits(first.la)) {
          yield (c) => {
            // Op i still holds the address's current value: this pass changes no op's index.
            const o = c.program[i];
            if (!o || !("la" in o) || !((o.la >> b) & 1n)) return null;
            const from = o.la, to = o.la & ~(1n << b);
            if (c.program.some((p) => "la" in p && p.la === to)) return null; // no merging
            return {
              ...c,
              program: c.program.map((p) => "la" in p && p.la === from ? { ...p, la: to } : p),
            };
          };
        }
      }
    },
    fails,
    budget,
  );

const environment: Pass = (c, fails, budget) =>
  greedy(
    c,
    function* (c0) {
      for (let i = c0.memslots.length - 1; i >= 0; i--) {
        const slot = c0.memslots[i]!.slot;
        yield (c) => ({ ...c, memslots: c.memslots.filter((s) => s.slot !== slot) });
      }
      const maxVcpu = Math.max(0, ...c0.program.map((o) => ("vcpu" in o ? o.vcpu : 0)));
      if (maxVcpu + 1 < c0.vcpus) {
        // The host thread is thread `vcpus`; the dropped vCPUs had no ops, so their schedule
        // entries were always skipped.
        const vcpus = maxVcpu + 1;
        yield (c) => ({
          ...c,
          vcpus,
          ...(c.schedule === undefined ? {} : {
            schedule: c.schedule.flatMap((t) => t === c.vcpus ? [vcpus] : t >= vcpus ? [] : [t]),
          }),
        });
      }
      for (const f of Object.keys(c0.cpu.features) as (keyof Case["cpu"]["features"])[]) {
        yield (c) => ({ ...c, cpu: { ...c.cpu, features: { ...c.cpu.features, [f]: false } } });
      }
      yield (c) => ({ ...c, control: { ...c.control, cr0: { ...c.control.cr0, wp: false } } });
      for (const f of Object.keys(c0.control.cr4) as (keyof Case["control"]["cr4"])[]) {
        yield (c) => ({ ...c, control: { ...c.control, cr4: { ...c.control.cr4, [f]: false } } });
      }
      yield (c) => ({ ...c, control: { ...c.control, efer: { ...c.control.efer, nxe: false } } });
      yield (c) => ({ ...c, control: { ...c.control, rflagsAc: false } });
      yield (c) => ({ ...c, control: { ...c.control, pkru: 0 } });
      for (const f of ["prefetch", "unsync", "fastPageFault"] as const) {
        yield (c) => ({ ...c, sut: { ...c.sut, features: { ...c.sut.features, [f]: false } } });
      }
    },
    fails,
    budget,
  );

const PASSES: readonly Pass[] = [
  ops,
  schedule,
  pages,
  words,
  wordBits,
  storedValues,
  addresses,
  environment,
];
