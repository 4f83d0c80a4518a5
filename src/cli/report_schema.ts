/**
 * Reading fuzz reports back (for `report merge` and `fuzz --resume`): the zod schema of the
 * JSON report (`shadow-mmu-fuzz-report` version 2) and a reader whose errors name the file and
 * the JSON path, e.g. `a.json: $.totals.cases: expected a number`.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { jsonPath } from "../model/json_path.ts";
import { decodeIndexSet, indexCount } from "./case_index_set.ts";
import { FUZZ_REPORT_FORMAT, FUZZ_REPORT_VERSION, type FuzzReportJson } from "./fuzz_report.ts";

const Count = z.int().min(0);

const Signature = z.strictObject({
  signature: z.string(),
  cases: z.int().min(1),
  firstIndex: Count,
  firstSeed: Count,
  file: z.string(),
  kind: z.string(),
  step: z.int().nullable(),
  detail: z.string(),
});

/** The JSON report, version 2. */
export const FuzzReport = z.strictObject({
  format: z.literal(FUZZ_REPORT_FORMAT),
  version: z.literal(FUZZ_REPORT_VERSION, {
    error: (iss) =>
      `expected ${FUZZ_REPORT_VERSION}, got ${JSON.stringify(iss.input)}` +
      (iss.input === 1 ? " (version 1 reports do not list their cases: run again)" : ""),
  }),
  generator: z.string(),
  plan: z.strictObject({
    seed: Count,
    discipline: z.enum(["strict", "relaxed", "mixed"]),
    modes: z.array(z.string()),
    inject: z.array(z.string()),
    /** `--vcpus` (null: each case drew 1 to 4). */
    vcpus: z.int().min(1).max(4).nullable().default(null),
    /** `--host32` (null: one case in four). */
    host32: z.boolean().nullable().default(null),
    runs: Count.nullable(),
    shard: z.strictObject({ index: z.int().min(1), count: z.int().min(1) })
      .refine((s) => s.index <= s.count, "expected 1 ≤ index ≤ count")
      .nullable(),
  }),
  completed: z.strictObject({
    stride: z.int().min(1),
    ranges: z.array(
      z.tuple([Count, Count]).refine(([start, end]) => start < end, "expected start < end"),
    ),
  }),
  corpus: z.strictObject({
    cases: Count,
    pass: Count,
    expected: Count,
    unsupported: Count,
    unexpected: z.array(z.string()),
  }).nullable(),
  totals: z.strictObject({
    cases: Count,
    steps: Count,
    pass: Count,
    divergences: Count,
    unsupported: Count,
    crashes: Count,
    signatures: Count,
    interrupted: z.boolean(),
  }),
  coverage: z.strictObject({
    mechanisms: z.record(z.string(), z.strictObject({ total: Count, cases: Count })),
    errorCodes: z.record(z.string(), Count),
    modes: z.record(z.string(), Count),
    disciplines: z.record(z.string(), Count),
    unsupported: z.record(z.string(), Count),
  }),
  findings: z.array(Signature),
  known: z.array(Signature.extend({ known: z.string() })),
  timing: z.strictObject({
    elapsedSeconds: z.number().min(0),
    casesPerSecond: z.number().min(0),
    stepsPerSecond: z.number().min(0),
    workers: z.int().min(1),
  }),
}).superRefine((r, ctx) => {
  // Only on a report whose every field parsed.
  const listed = indexCount(r.completed);
  if (listed !== r.totals.cases) {
    ctx.addIssue({
      code: "custom",
      path: ["completed"],
      message: `lists ${listed} cases, $.totals.cases is ${r.totals.cases}`,
    });
    return;
  }
  const decoded = decodeIndexSet(r.completed);
  if ("overlap" in decoded) {
    ctx.addIssue({
      code: "custom",
      path: ["completed", "ranges", decoded.overlap],
      message: "repeats a case index of an earlier range",
    });
  }
}, { when: (payload) => payload.issues.length === 0 }) satisfies z.ZodType<FuzzReportJson>;

const article = (what: string) => (/^[aeiou]/.test(what) ? `an ${what}` : `a ${what}`);

/** Short messages: `expected a number`, `missing (expected an object)`. */
const messages: z.core.$ZodErrorMap = (iss) => {
  if (iss.code !== "invalid_type") return undefined;
  const want = `expected ${article(iss.expected)}`;
  return iss.input === undefined ? `missing (${want})` : want;
};

/** A report that could not be read or is not a valid report; the message names file and path. */
export class ReportFileError extends Error {
  /** Builds the error from `file: path: message` lines. */
  constructor(lines: readonly string[]) {
    super(lines.join("\n"));
    this.name = "ReportFileError";
  }
}

/** Validates parsed JSON as a report; `file` names it in errors. */
export function validateReport(json: unknown, file: string): FuzzReportJson {
  const parsed = FuzzReport.safeParse(json, { error: messages });
  if (parsed.success) return parsed.data;
  throw new ReportFileError(
    parsed.error.issues.slice(0, 10).map((i) => `${file}: ${jsonPath(i.path)}: ${i.message}`),
  );
}

/**
 * Reads and validates a report file. `file` is how errors name it; `path` where it is read.
 *
 * @throws {ReportFileError} when the file cannot be read, is not JSON or is not a valid report.
 */
export function readReport(file: string, path = file): FuzzReportJson {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e: unknown) {
    throw new ReportFileError([`${file}: $: cannot read file: ${(e as Error).message}`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e: unknown) {
    const why = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
    throw new ReportFileError([`${file}: $: invalid JSON: ${why}`]);
  }
  return validateReport(json, file);
}
