/**
 * `corpus check`: every case file must be a valid case and behave as it documents
 * (`expectation.ts`): pass, or diverge when it is tagged `expect:divergence` or injects bugs,
 * and a case tied to an injected bug must diverge with the bug on and pass with it off. Each
 * run is on both sides with the SUT's invariant audit after every step.
 *
 * One bad file never stops the others: a file that cannot be read, parsed or validated, or
 * whose initial state is impossible, is `invalid` (with the JSON path of each problem); a run
 * that does not give what the case documents, including a harness exception, is `unexpected`.
 *
 * @module
 */
import { InitialStateError } from "../../oracles/control_state.ts";
import type { Case } from "../model/case.ts";
import { expectationOf } from "./expectation.ts";
import { caseFilesIn, type CaseProblem, loadCaseFile } from "./load_case.ts";
import { runCase, type RunVerdict, verdictText } from "./run_case.ts";

/** The format name of `corpus check --json`. */
export const CHECK_FORMAT = "shadow-mmu-corpus-check";
/** The version of that format. */
export const CHECK_VERSION = 1;

/**
 * How a file behaved: `pass` (must pass and passed), `expected` (must diverge and diverged),
 * `unsupported` (the SUT cannot run it as written), `invalid` (not a valid case), `unexpected`.
 */
export type CheckStatus = "pass" | "expected" | "unsupported" | "invalid" | "unexpected";

/** One run of a checked case. */
export interface CheckedRun {
  readonly label: string;
  readonly inject: readonly string[];
  readonly expect: "pass" | "divergence";
  readonly got: RunVerdict;
  /** The run gave what the case documents. */
  readonly ok: boolean;
}

/** The check of one file. */
export interface FileCheck {
  /** The file as shown to the user. */
  readonly file: string;
  readonly status: CheckStatus;
  /** Why the file is invalid: JSON path and message of each problem. */
  readonly problems: readonly CaseProblem[];
  /** The runs made (the case as written first). */
  readonly runs: readonly CheckedRun[];
}

/** Files by status. */
export interface CheckSummary {
  files: number;
  pass: number;
  expected: number;
  unsupported: number;
  invalid: number;
  unexpected: number;
  /** Runs with an injected bug switched on or off beyond the case as written. */
  bugRuns: number;
}

/** The check of a set of files. */
export interface CorpusCheck {
  readonly summary: CheckSummary;
  readonly files: readonly FileCheck[];
  /** The exit status: 2 if any file is invalid, else 1 if any is unexpected, else 0. */
  readonly status: 0 | 1 | 2;
}

/** Checks a decoded case. Never throws (an impossible initial state makes it `invalid`). */
export function checkCase(c: Case, file: string): FileCheck {
  const expectation = expectationOf(c);
  if (!expectation.ok) {
    return { file, status: "invalid", problems: expectation.problems, runs: [] };
  }
  const runs: CheckedRun[] = [];
  for (const planned of expectation.runs) {
    let got: RunVerdict;
    try {
      got = runCase({ ...c, sut: { ...c.sut, inject: [...planned.inject] } });
    } catch (e: unknown) {
      if (!(e instanceof InitialStateError)) throw e; // runCase lets nothing else out
      return { file, status: "invalid", problems: [{ path: e.path, message: e.message }], runs };
    }
    const ok = got.status === planned.expect; // unsupported or a crash is never what it expects
    runs.push({ ...planned, got, ok });
    if (runs.length === 1 && got.status === "unsupported") {
      return { file, status: "unsupported", problems: [], runs };
    }
  }
  const first = runs[0]!;
  const status = runs.every((r) => r.ok)
    ? (first.expect === "divergence" ? "expected" : "pass")
    : "unexpected";
  return { file, status, problems: [], runs };
}

/** Loads and checks one case file; `shown` is the name reported for it. Never throws. */
export function checkCaseFile(path: string, shown: string = path): FileCheck {
  const loaded = loadCaseFile(path);
  if (!loaded.ok) {
    return { file: shown, status: "invalid", problems: loaded.error.problems, runs: [] };
  }
  try {
    return checkCase(loaded.case, shown);
  } catch (e: unknown) {
    // Not reached (runCase turns harness failures into verdicts); kept so that one file can
    // never stop the check of the others.
    const message = e instanceof Error ? e.message : String(e);
    const got: RunVerdict = { status: "crash", message };
    return {
      file: shown,
      status: "unexpected",
      problems: [],
      runs: [{ label: "as written", inject: [], expect: "pass", got, ok: false }],
    };
  }
}

/**
 * Checks every case file in `paths` (files, or directories searched recursively for `*.json`
 * except `*.schema.json`), in path order. `show` names a file in the results.
 */
export function checkCorpus(
  paths: readonly string[],
  show: (path: string) => string = (p) => p,
): CorpusCheck {
  const files = caseFilesIn(paths).map((p) => checkCaseFile(p, show(p)));
  return { summary: summarize(files), files, status: exitStatusOf(files) };
}

/** Counts files by status. */
export function summarize(files: readonly FileCheck[]): CheckSummary {
  const s: CheckSummary = {
    files: files.length,
    pass: 0,
    expected: 0,
    unsupported: 0,
    invalid: 0,
    unexpected: 0,
    bugRuns: 0,
  };
  for (const f of files) {
    s[f.status]++;
    s.bugRuns += Math.max(0, f.runs.length - 1);
  }
  return s;
}

/** 2 if any file is invalid, else 1 if any behaved unexpectedly, else 0. */
export function exitStatusOf(files: readonly FileCheck[]): 0 | 1 | 2 {
  if (files.some((f) => f.status === "invalid")) return 2;
  return files.some((f) => f.status === "unexpected") ? 1 : 0;
}

/**
 * The one line that reports a file that failed the check (null for one that did not): the
 * file, then the JSON path and message of its first problem (and the paths of the others), or
 * what each failing run gave against what the case documents.
 */
export function failureLine(f: FileCheck): string | null {
  if (f.status === "invalid") {
    const [first, ...more] = f.problems;
    const rest = more.length === 0
      ? ""
      : ` (+${more.length} more: ${more.slice(0, 5).map((p) => p.path).join(", ")}${
        more.length > 5 ? ", …" : ""
      })`;
    return `${f.file}: ${first?.path ?? "$"}: ${first?.message ?? "invalid"}${rest}`;
  }
  if (f.status !== "unexpected") return null;
  const why = f.runs.filter((r) => !r.ok).map((r) =>
    `${r.label}: ${verdictText(r.got)}, expected ${r.expect === "pass" ? "a pass" : "a divergence"}`
  );
  return `${f.file}: unexpected: ${why.join("; ")}`;
}

/** One line per file, whatever its status (for `--verbose`). */
export function statusLine(f: FileCheck): string {
  const failed = failureLine(f);
  if (failed !== null) return failed;
  const runs = f.runs.map((r) => `${r.label}: ${verdictText(r.got)}`).join("; ");
  return `${f.file}: ${f.status}: ${runs}`;
}

/** The summary line. */
export function summaryLine(s: CheckSummary): string {
  return `corpus check: ${s.files} file(s): ${s.pass} pass, ${s.expected} diverge as expected, ` +
    `${s.unsupported} unsupported, ${s.invalid} invalid, ${s.unexpected} unexpected ` +
    `(${s.bugRuns} injected-bug run(s) on top)`;
}
