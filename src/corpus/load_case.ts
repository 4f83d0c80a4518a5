/**
 * Reading cases from text and files, with errors that name the file and the JSON path.
 *
 * @module
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { Case } from "../model/case.ts";
import { jsonPath } from "../model/json_path.ts";
import { INJECTED_BUGS } from "../shadow/bugs.ts";

/** One problem in a case file: where it is and what is wrong. */
export interface CaseProblem {
  /** JSONPath of the offending value (`$` for the document itself). */
  path: string;
  message: string;
}

/** A case file that could not be read, parsed or validated. */
export class CaseFileError extends SyntaxError {
  /** The file (or label) the text came from. */
  readonly file: string;
  /** Every problem found, in document order. */
  readonly problems: readonly CaseProblem[];

  /** Builds the error; the message lists every problem as `file: path: message`. */
  constructor(file: string, problems: readonly CaseProblem[]) {
    super(problems.map((p) => `${file}: ${p.path}: ${p.message}`).join("\n"));
    this.name = "CaseFileError";
    this.file = file;
    this.problems = problems;
  }
}

/** The result of reading one case: the case, or the problems. */
export type CaseLoad =
  | { ok: true; file: string; case: Case }
  | { ok: false; file: string; error: CaseFileError };

/**
 * Parses and validates case JSON text. Never throws for bad input: the problems come back in
 * the result.
 *
 * @example A bad address names its JSON path
 * ```ts
 * import { parseCase } from "./load_case.ts";
 * import { equal } from "node:assert/strict";
 * const r = parseCase('{"format": "shadow-mmu-case", "version": 1}', "x.json");
 * equal(r.ok, false);
 * if (!r.ok) equal(r.error.problems[0]?.path, "$.cpu");
 * ```
 */
export function parseCase(text: string, file: string): CaseLoad {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e: unknown) {
    // The parser's message may quote the input across lines: keep one problem on one line.
    const why = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
    return {
      ok: false,
      file,
      error: new CaseFileError(file, [{ path: "$", message: `invalid JSON: ${why}` }]),
    };
  }
  return validateCase(json, file);
}

/** Validates an already-parsed JSON value as a case. */
export function validateCase(json: unknown, file: string): CaseLoad {
  const parsed = Case.safeParse(json);
  const problems = [
    ...protoKeys(json),
    ...(parsed.success ? unknownBugs(parsed.data) : problemsOf(parsed.error)),
  ];
  if (parsed.success && problems.length === 0) return { ok: true, file, case: parsed.data };
  return { ok: false, file, error: new CaseFileError(file, problems) };
}

/**
 * zod records skip a `"__proto__"` key without a word; a word index named so would be lost
 * silently, so it is reported here.
 */
function protoKeys(json: unknown): CaseProblem[] {
  const memory = (json as { memory?: unknown } | null)?.memory;
  if (!Array.isArray(memory)) return [];
  return memory.flatMap((page, i) => {
    const words = (page as { words?: unknown } | null)?.words;
    const own = words !== null && typeof words === "object" && Object.hasOwn(words, "__proto__");
    return own
      ? [{ path: jsonPath(["memory", i, "words", "__proto__"]), message: "expected a word index" }]
      : [];
  });
}

/** `sut.inject` names that no injected bug of the SUT has. */
function unknownBugs(c: Case): CaseProblem[] {
  const known = new Set<string>(INJECTED_BUGS.map((b) => b.name));
  return c.sut.inject.flatMap((name, i) =>
    known.has(name) ? [] : [{
      path: jsonPath(["sut", "inject", i]),
      message: `unknown injected bug "${name}"; known: ${[...known].join(", ")}`,
    }]
  );
}

function problemsOf(error: z.ZodError): CaseProblem[] {
  return error.issues.map((issue) => ({ path: jsonPath(issue.path), message: issue.message }));
}

/** Reads one case file. I/O errors become problems too. */
export function loadCaseFile(file: string): CaseLoad {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e: unknown) {
    const why = e instanceof Error ? e.message : String(e);
    return {
      ok: false,
      file,
      error: new CaseFileError(file, [{ path: "$", message: `cannot read file: ${why}` }]),
    };
  }
  return parseCase(text, file);
}

/**
 * Expands files and directories into the case files they hold, sorted by path. Directories are
 * searched recursively for `*.json`, skipping `*.schema.json`.
 */
export function caseFilesIn(paths: readonly string[]): string[] {
  const out: string[] = [];
  const visit = (p: string, top: boolean) => {
    let isDir = false;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      if (top) out.push(p); // let loadCaseFile report the missing file
      return;
    }
    if (!isDir) {
      if (top || (p.endsWith(".json") && !p.endsWith(".schema.json"))) out.push(p);
      return;
    }
    for (const name of readdirSync(p).sort()) visit(join(p, name), false);
  };
  for (const p of paths) visit(p, true);
  return out;
}

/** Encodes a case back to canonical JSON text (2-space indent, trailing newline). */
export function encodeCase(c: Case): string {
  return JSON.stringify(z.encode(Case, c), null, 2) + "\n";
}
