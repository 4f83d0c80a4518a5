/**
 * `deno task fuzz`: the nightly job. Until the shadow MMU and the fast-check fuzzer land, it
 * (1) replays every case of the corpus through the oracle and (2) self-checks the oracle on
 * seeded random programs (see `src/diff/oracle_selfcheck.ts`) until the time or run budget is
 * spent. A failing case is written atomically to the findings directory the moment it is found.
 *
 * Exit status: 0 nothing found, 1 findings, 2 usage or input error.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, encodeCase, loadCaseFile } from "../corpus/load_case.ts";
import { EXPECT_DIVERGENCE, replayCase } from "../diff/replay.ts";
import { selfCheck } from "../diff/oracle_selfcheck.ts";
import { SELFCHECK_GENERATOR, selfCheckCase } from "../gen/oracle_selfcheck_case.ts";
import { writeFileAtomic } from "./write_atomic.ts";

const USAGE =
  `usage: deno task fuzz [--seed N] [--time SECONDS | --runs N] [--discipline strict|relaxed|mixed]
                       [--corpus DIR] [--out DIR] [--quiet]

Replays the corpus through the oracle, then self-checks the oracle on seeded random programs.
  --seed N          first seed (default: random, printed so the run can be repeated)
  --time SECONDS    time budget for the self-check (default 60)
  --runs N          number of generated cases instead of a time budget
  --discipline D    strict (one allowed outcome per access), relaxed, or mixed (default)
  --corpus DIR      corpus to replay first (default corpus/)
  --out DIR         where failing cases are written (default findings/)
  --quiet           only the summary`;

/** Runs the fuzz command; returns the exit status. */
export function main(args: string[]): number {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        seed: { type: "string" },
        time: { type: "string" },
        runs: { type: "string" },
        discipline: { type: "string", default: "mixed" },
        corpus: { type: "string", default: "corpus" },
        out: { type: "string", default: "findings" },
        quiet: { type: "boolean" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (e: unknown) {
    console.error(`fuzz: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const int = (name: string, text: string | undefined, fallback: number) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`--${name} must be a non-negative integer, got "${text}"`);
    }
    return n;
  };
  let seed: number, seconds: number, runs: number;
  try {
    seed = int("seed", values.seed, crypto.getRandomValues(new Uint32Array(1))[0]!);
    seconds = int("time", values.time, 60);
    runs = int("runs", values.runs, Infinity);
  } catch (e: unknown) {
    console.error(`fuzz: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const discipline = values.discipline;
  if (discipline !== "strict" && discipline !== "relaxed" && discipline !== "mixed") {
    console.error(
      `fuzz: --discipline must be strict, relaxed or mixed, got "${discipline}"\n${USAGE}`,
    );
    return 2;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const say = (line: string) => values.quiet || console.log(line);

  // 1. The corpus, through the oracle and the SUT.
  let status = 0;
  const files = caseFilesIn([resolve(base, values.corpus)]);
  const tally = { pass: 0, expected: 0, unsupported: 0, unexpected: 0 };
  for (const file of files) {
    const loaded = loadCaseFile(file);
    if (!loaded.ok) {
      console.error(loaded.error.message);
      status = 2;
      continue;
    }
    try {
      const v = replayCase(loaded.case).verdict;
      const c = loaded.case;
      const expectDivergence = c.sut.inject.length > 0 || c.meta.tags.includes(EXPECT_DIVERGENCE);
      if (v.status === "unsupported") tally.unsupported++;
      else if ((v.status === "divergence") === expectDivergence) {
        tally[expectDivergence ? "expected" : "pass"]++;
      } else {
        tally.unexpected++;
        status = 1;
        console.error(
          v.status === "divergence"
            ? `${file}: step ${v.step}: ${v.kind} divergence: ${v.detail}`
            : `${file}: expected a divergence (${EXPECT_DIVERGENCE} or sut.inject), the SUT passed`,
        );
      }
    } catch (e: unknown) {
      if (!(e instanceof InitialStateError)) throw e;
      console.error(`${file}: ${e.path}: ${e.message}`);
      status = 2;
    }
  }
  say(
    `corpus: ${files.length} cases through the oracle and the SUT: ${tally.pass} pass, ` +
      `${tally.expected} diverge as expected, ${tally.unsupported} unsupported, ` +
      `${tally.unexpected} unexpected`,
  );

  // 2. The oracle self-check on generated programs.
  const started = performance.now();
  const deadline = values.runs === undefined ? started + seconds * 1000 : Infinity;
  let cases = 0, steps = 0, multi = 0, findings = 0, lastReport = started;
  const codes = new Set<string>();
  for (let i = 0; i < runs && performance.now() < deadline; i++) {
    const caseSeed = (seed + i) >>> 0;
    const strict = discipline === "strict" || (discipline === "mixed" && i % 2 === 0);
    const c = selfCheckCase(caseSeed, strict ? "strict" : "relaxed");
    const r = selfCheck(c, { strict, determinism: i % 16 === 0 });
    cases++;
    steps += r.steps;
    multi += r.multiOutcomeSteps;
    r.errorCodes.forEach((e) => codes.add(e));
    if (r.failure) {
      findings++;
      c.meta.signature = `oracle-selfcheck:${r.failure.property}`;
      c.meta.notes = `step ${r.failure.step}: ${r.failure.detail}`;
      const path = join(resolve(base, values.out), `oracle-selfcheck-${caseSeed}.json`);
      writeFileAtomic(path, encodeCase(c));
      console.error(
        `finding: ${r.failure.property} at step ${r.failure.step} (seed ${caseSeed}): ${r.failure.detail}\n  -> ${path}`,
      );
    }
    const now = performance.now();
    if (now - lastReport > 10_000) {
      lastReport = now;
      say(
        `  ${
          ((now - started) / 1000).toFixed(0)
        } s: ${cases} cases, ${steps} steps, ${findings} findings`,
      );
    }
  }
  const elapsed = (performance.now() - started) / 1000;
  console.log(
    `self-check (${SELFCHECK_GENERATOR}, seed ${seed}, ${discipline}): ${cases} cases, ${steps} steps in ${
      elapsed.toFixed(1)
    } s ` +
      `(${
        (steps / Math.max(elapsed, 1e-3)).toFixed(0)
      } steps/s); ${multi} steps allowed several outcomes; ` +
      `#PF error codes seen: ${[...codes].sort().join(" ") || "none"}; findings: ${findings}`,
  );
  if (findings > 0) return 1;
  return status;
}

if (import.meta.main) Deno.exit(main(Deno.args));
