/**
 * The concurrency scheduler (`src/shadow/scheduler.ts`) and the concurrent contract
 * (`src/diff/differential.ts`): replay is byte-identical; a fuzz finding's recorded schedule
 * replays the run the decider made; an empty schedule is program order; entries naming a thread
 * that cannot run are skipped; the step budget turns a run that does not finish into a livelock
 * failure; preemption really nests ops and retries them at a contended mmu_lock.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { Case } from "../../src/model/case.ts";
import { encodeCase, loadCaseFile } from "../../src/corpus/load_case.ts";
import { type DiffResult, runDifferential } from "../../src/diff/differential.ts";
import { divergenceSignature } from "../../src/diff/explain.ts";
import { kvm_mmu_audit } from "../../src/shadow/audit.ts";
import { ShadowMachine } from "../../src/shadow/machine.ts";
import { anchoredDecider, Scheduler } from "../../src/shadow/scheduler.ts";
import { fuzzCase } from "../../src/gen/fuzz_case.ts";
import { scheduleDecider } from "../../src/gen/fuzz_schedule.ts";
import { buildCase, LA4, op, tables4 } from "../_helpers/case_builder.ts";

const RACE = "corpus/ia32e5/two-vcpus-emulated-pde-write-before-zap.json";

function load(file: string): Case {
  const l = loadCaseFile(file);
  if (!l.ok) throw l.error;
  return l.case;
}

/** Everything a run reports, as text: verdict, each step's op, result and commit, the schedule. */
function transcript(r: DiffResult): string {
  return JSON.stringify(
    {
      verdict: r.verdict,
      steps: r.steps.map((s) => [s.index, s.sut, s.committed?.chosen ?? null, s.adoptedA]),
      schedule: r.schedule,
      events: r.sut?.kvm.stats.events.map((e) => [e.step, e.vcpu, e.what]),
      counters: r.sut?.kvm.stats.counters,
    },
    (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v),
  );
}

Deno.test("scheduler: a concurrent case and its schedule replay byte-identically", () => {
  const c = load(RACE);
  ok(c.schedule !== undefined && c.schedule.length > 0 && c.vcpus === 4);
  const a = transcript(runDifferential(c, { audit: kvm_mmu_audit }));
  const b = transcript(runDifferential(load(RACE), { audit: kvm_mmu_audit }));
  equal(a, b);
  // The encoded case itself round-trips byte for byte (schedule included).
  equal(encodeCase(load(RACE)), Deno.readTextFileSync(RACE));
});

Deno.test("scheduler: a fuzz run's recorded schedule replays the same run without the decider", () => {
  let concurrent = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const c = fuzzCase(seed, { discipline: seed % 2 ? "strict" : "relaxed", vcpus: 3 });
    ok(c.schedule !== undefined);
    const fuzzed = runDifferential(c, { audit: kvm_mmu_audit, decider: scheduleDecider(seed) });
    const recorded = { ...c, schedule: [...fuzzed.schedule!] };
    const replayed = runDifferential(recorded, { audit: kvm_mmu_audit });
    deepStrictEqual(replayed.schedule, fuzzed.schedule, `seed ${seed}`);
    equal(transcript(replayed), transcript(fuzzed), `seed ${seed}`);
    equal(divergenceSignature(recorded, replayed), divergenceSignature(c, fuzzed));
    if (fuzzed.steps.some((s, i) => s.index !== i)) concurrent++;
  }
  // Not a sequential run in disguise: completion order differs from program order.
  ok(concurrent >= 20, `only ${concurrent} of 40 runs interleaved`);
});

Deno.test("scheduler: a run's choices, replayed by anchor, give the same run", () => {
  // The minimizer drops a choice by re-recording the others by anchor (op, step): that only
  // works if a choice's anchor does not depend on the entries before it.
  let withChoices = 0;
  for (let seed = 1; seed <= 30; seed++) {
    const c = fuzzCase(seed, { discipline: "relaxed", vcpus: 2 + (seed % 3) });
    const fuzzed = runDifferential(c, { audit: kvm_mmu_audit, decider: scheduleDecider(seed) });
    const choices = new Map<string, number>();
    for (const e of fuzzed.scheduleEntries!) {
      if (e.thread !== e.dflt) choices.set(e.anchor, e.thread);
    }
    if (choices.size > 0) withChoices++;
    const anchored = runDifferential({ ...c, schedule: [] }, {
      audit: kvm_mmu_audit,
      decider: anchoredDecider(choices),
    });
    equal(transcript({ ...anchored, schedule: null }), transcript({ ...fuzzed, schedule: null }));
    deepStrictEqual(anchored.schedule, fuzzed.schedule, `seed ${seed}`);
  }
  ok(withChoices >= 20, `only ${withChoices} of 30 runs made a choice`);
});

/** Two vCPUs that share page tables: each stores to the page, then reads the other's store. */
function twoVcpus(): Case {
  return buildCase({
    mode: "ia32e4",
    vcpus: 2,
    memory: tables4(),
    program: [
      op.store(LA4, 0x1234n, 0, 0),
      op.load(LA4, 0, 1),
      op.store(LA4 + 8n, 0x5678n, 3, 1),
      op.load(LA4 + 8n, 3, 0),
    ],
  });
}

Deno.test("scheduler: an empty schedule runs the program in program order", () => {
  const seq = runDifferential(twoVcpus(), { audit: kvm_mmu_audit });
  const conc = runDifferential({ ...twoVcpus(), schedule: [] }, { audit: kvm_mmu_audit });
  equal(seq.verdict.status, "pass");
  equal(conc.verdict.status, "pass");
  deepStrictEqual(conc.steps.map((s) => s.index), [0, 1, 2, 3]);
  deepStrictEqual(conc.steps.map((s) => s.sut), seq.steps.map((s) => s.sut));
  deepStrictEqual(conc.schedule, []);
});

Deno.test("scheduler: entries naming a thread that cannot run are skipped", () => {
  const c = twoVcpus();
  // Thread 2 is the host thread, which has no op here: every entry naming it is skipped.
  const m = new ShadowMachine({ ...c, schedule: [2, 2, 1, 2, 0] });
  const s = new Scheduler(m, c.program, c.vcpus, [2, 2, 1, 2, 0]);
  const order: number[] = [];
  const started: number[] = [];
  const r = s.run((done) => (order.push(done.index), true), undefined, {
    start: (i) => started.push(i),
  });
  equal(r, null);
  ok(s.stats.blocked >= 3, `blocked ${s.stats.blocked}`);
  // The first entry that names a runnable thread (1) starts vCPU 1's first op; the 0 after the
  // next skipped entry starts vCPU 0's store on top of it, at vCPU 1's first atomic step.
  deepStrictEqual(started.slice(0, 2), [1, 0]);
  equal(order[0], 0);
  deepStrictEqual([...order].sort(), [0, 1, 2, 3]);
});

/** Runs `c` with a decider that starts vCPU 1's next op whenever vCPU 0 is at `window`. */
function preemptAt(c: Case, window: string) {
  const m = new ShadowMachine(c);
  const s = new Scheduler(m, c.program, c.vcpus, [], {
    preempt: (running, ready, step) =>
      running === 0 && step === window ? ready.find((t) => t === 1) ?? null : null,
    start: (ready) => ready[0]!,
  });
  const done: { index: number; inFlight: readonly number[] }[] = [];
  equal(s.run((d) => (done.push({ index: d.index, inFlight: d.inFlight }), true)), null);
  deepStrictEqual(done.map((d) => d.index).sort(), [0, 1, 2, 3]);
  return { stats: s.stats, done };
}

Deno.test("scheduler: an op starts on top of another at its atomic step", () => {
  const { stats, done } = preemptAt(twoVcpus(), "mmu_lock:release");
  ok(stats.preemptions > 0);
  // vCPU 1's load ran and completed while vCPU 0's store was in flight.
  ok(done.some((d) => d.index === 1 && d.inFlight.includes(0)));
});

Deno.test("scheduler: an access that meets mmu_lock held below it retries, once per holding", () => {
  // A 32-bit host: writing a new SPTE takes two steps, an atomic step inside vCPU 0's fault.
  const c = twoVcpus();
  c.sut.features = { ...c.sut.features, splitSpte: true };
  const { stats } = preemptAt(c, "__set_spte:low");
  ok(stats.retries > 0, `retries ${stats.retries}`);
  // It is not started again while the same thread holds the lock (that would never end).
  ok(stats.retries <= 4, `retries ${stats.retries}`);
});

Deno.test("scheduler: a run that does not finish within the step budget is a livelock", () => {
  const c = twoVcpus();
  const m = new ShadowMachine(c);
  const s = new Scheduler(m, c.program, c.vcpus, [], null, 5);
  const r = s.run(() => true);
  ok(r !== null && /without finishing/.test(r.detail));
});
