/**
 * The fuzz run's fixed pool of Deno Workers: batches of global case indices are handed out in
 * the order the run's index sequence gives them (every index, a shard's, or those a resumed run
 * has not done yet) until the sequence ends or the deadline is reached, findings are passed on the moment a
 * worker posts them, and SIGINT/SIGTERM stop the run (workers are terminated; what they already
 * reported is kept). A live status line is drawn on a TTY, plain lines every 10 s otherwise.
 *
 * @module
 */
import type { CaseOutcome, Finding, FuzzPlan } from "../diff/fuzz_run.ts";
import type { BatchRequest } from "./fuzz_worker.ts";

/** Cases per batch: small enough to stop soon after the deadline, large enough to amortize. */
export const BATCH_SIZE = 8;

/** What the pool needs. */
export interface PoolOptions {
  readonly plan: FuzzPlan;
  readonly workers: number;
  /** The global case indices to run, in order; finite for a case budget, endless for a time one. */
  readonly cases: Iterator<number>;
  /** `performance.now()` after which no batch is started (Infinity: run every case). */
  readonly deadline: number;
  readonly onFinding: (f: Finding) => void;
  readonly onOutcomes: (batch: readonly CaseOutcome[]) => void;
  /** "tty": a redrawn status line; "lines": a line every 10 s; null: silent. */
  readonly status: "tty" | "lines" | null;
  /** Stops the run like SIGINT does (for embedding and tests). */
  readonly abort?: AbortSignal;
}

type WorkerMessage =
  | { type: "finding"; finding: Finding }
  | { type: "batch"; outcomes: CaseOutcome[] };

/** Runs the pool to completion (or interruption). */
export function runPool(o: PoolOptions): Promise<{ interrupted: boolean }> {
  const started = performance.now();
  let inflight = 0, cases = 0, steps = 0, findings = 0;
  let interrupted = false;
  const workers: Worker[] = [];
  const { promise, resolve, reject } = Promise.withResolvers<{ interrupted: boolean }>();
  let lastLine = started;
  const line = () => {
    const s = (performance.now() - started) / 1000;
    return `${s.toFixed(0)} s: ${cases} cases (${(cases / Math.max(s, 1e-3)).toFixed(0)}/s), ` +
      `${steps} steps (${(steps / Math.max(s, 1e-3)).toFixed(0)}/s), ${findings} divergences`;
  };
  const ticker = o.status === null ? null : setInterval(() => {
    if (o.status === "tty") {
      Deno.stdout.writeSync(new TextEncoder().encode(`\r\x1b[K${line()}`));
    } else if (performance.now() - lastLine >= 10_000) {
      lastLine = performance.now();
      console.log(line());
    }
  }, 500);
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const finish = () => {
    if (ticker !== null) clearInterval(ticker);
    if (o.status === "tty") Deno.stdout.writeSync(new TextEncoder().encode("\r\x1b[K"));
    for (const s of signals) Deno.removeSignalListener(s, stop);
    for (const w of workers) w.terminate();
    resolve({ interrupted });
  };
  const stop = () => {
    if (interrupted) return;
    interrupted = true;
    console.error("fuzz: interrupted; keeping what was found");
    finish();
  };
  for (const s of signals) Deno.addSignalListener(s, stop);
  o.abort?.addEventListener("abort", stop);

  const dispatch = (w: Worker): boolean => {
    if (interrupted || performance.now() >= o.deadline) return false;
    const indices: number[] = [];
    while (indices.length < BATCH_SIZE) {
      const next = o.cases.next();
      if (next.done) break;
      indices.push(next.value);
    }
    if (indices.length === 0) return false;
    const req: BatchRequest = { plan: o.plan, indices };
    inflight++;
    w.postMessage(req);
    return true;
  };
  for (let i = 0; i < Math.max(1, o.workers); i++) {
    const w = new Worker(new URL("./fuzz_worker.ts", import.meta.url).href, { type: "module" });
    w.onmessage = (e: MessageEvent<WorkerMessage>) => {
      if (interrupted) return;
      const m = e.data;
      if (m.type === "finding") {
        findings++;
        o.onFinding(m.finding);
        return;
      }
      inflight--;
      cases += m.outcomes.length;
      for (const c of m.outcomes) steps += c.steps;
      o.onOutcomes(m.outcomes);
      if (!dispatch(w) && inflight === 0) finish();
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      for (const s of signals) Deno.removeSignalListener(s, stop);
      if (ticker !== null) clearInterval(ticker);
      for (const x of workers) x.terminate();
      reject(new Error(`fuzz worker failed: ${e.message}`));
    };
    workers.push(w);
  }
  let any = false;
  for (const w of workers) any = dispatch(w) || any;
  if (!any) finish();
  return promise;
}
