/**
 * `deno task corpus <check|add|stats>`: keeps the regression corpus.
 *
 * - `check [FILE|DIR…]` (default `corpus/`): validates every case file and replays it on both
 *   sides with the SUT's audit; each must behave as it documents (`src/corpus/check.ts`). Exit
 *   status 0 all behaved, 1 an unexpected verdict, 2 an invalid file (every file is checked).
 * - `add FILE|DIR… [--to corpus] [--budget 10s]`: imports fuzz findings, minimized, deduplicated
 *   by signature, with provenance, as `<corpus>/<mode>/<slug>.json` (`src/corpus/add.ts`). Exit
 *   status 0, 1 when the harness failed on an input, 2 on an invalid input or usage error.
 * - `stats [DIR]` (default `corpus/`): what the corpus holds (`src/corpus/stats.ts`).
 *
 * `--json` prints one machine-readable document instead of text. Paths are taken relative to
 * the directory the task was started in (`INIT_CWD`); the default corpus is the checkout's.
 *
 * @module
 */
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { addFindings, type AddResult } from "../corpus/add.ts";
import {
  CHECK_FORMAT,
  CHECK_VERSION,
  checkCorpus,
  failureLine,
  statusLine,
  summaryLine,
} from "../corpus/check.ts";
import { caseFilesIn } from "../corpus/load_case.ts";
import { corpusStats, statsText } from "../corpus/stats.ts";
import { parseDuration } from "./minimize.ts";

/** The checkout's corpus: the default directory of every subcommand. */
const CORPUS = fileURLToPath(new URL("../../corpus", import.meta.url));

const USAGE = `usage: deno task corpus check [FILE|DIR...] [--json] [--verbose]
       deno task corpus add FILE|DIR... [--to DIR] [--budget 10s] [--json]
       deno task corpus stats [DIR] [--json]

  check   validate every case file (default corpus/, recursively) and replay it through the
          oracle and the shadow MMU with the SUT's audit: a case must pass, or diverge when it
          is tagged expect:divergence or injects bugs (sut.inject); a case tied to an injected
          bug (sut.inject, or a tag bug:NAME) must diverge with the bug on and pass with it off.
          Prints one line per failing file and a summary; --verbose one line per file.
          Exit status: 0 all behaved, 1 an unexpected verdict, 2 an invalid file.
  add     import findings (written by deno task fuzz): minimize each (--budget per file,
          default 10s) keeping its signature, skip signatures the corpus (--to, default
          corpus/) or an earlier input already has, record provenance, and write
          <corpus>/<mode>/<slug>.json; a known KVM divergence is tagged expect:divergence.
          Exit status: 0 done, 1 the harness failed on an input, 2 an invalid input.
  stats   count cases by mode, tag and provenance, divergences expected, injected bugs
          covered, and the median ops and pages (default corpus/).
  --json  one machine-readable JSON document on stdout
  --help  this text`;

/** Runs the corpus command; returns the exit status. */
export function main(args: string[]): number {
  const [command, ...rest] = args;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    (command === undefined ? console.error : console.log)(USAGE);
    return command === undefined ? 2 : 0;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        json: { type: "boolean" },
        verbose: { type: "boolean" },
        to: { type: "string" },
        budget: { type: "string" },
        help: { type: "boolean" },
      },
    });
  } catch (e: unknown) {
    return usage(e instanceof Error ? e.message : String(e));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const show = (p: string) => relative(base, p) || p;
  const paths = positionals.map((p) => resolve(base, p));
  const json = values.json ?? false;
  const misplaced = (flags: string[]) => flags.find((f) => values[f as keyof typeof values]);
  switch (command) {
    case "check": {
      const bad = misplaced(["to", "budget"]);
      if (bad) return usage(`--${bad} is an option of add`);
      return check(paths.length > 0 ? paths : [CORPUS], show, json, values);
    }
    case "add": {
      const bad = misplaced(["verbose"]);
      if (bad) return usage(`--${bad} is an option of check`);
      if (paths.length === 0) return usage("add: no finding file or directory given");
      const budgetMs = parseDuration(values.budget ?? "10s");
      if (budgetMs === null) return usage("--budget: expected a duration such as 10s, 2m or 500ms");
      const to = values.to === undefined ? CORPUS : resolve(base, values.to);
      return add(paths, to, budgetMs, show, json);
    }
    case "stats": {
      const bad = misplaced(["to", "budget", "verbose"]);
      if (bad) return usage(`--${bad} is not an option of stats`);
      if (paths.length > 1) return usage("stats: give at most one directory");
      const s = corpusStats([paths[0] ?? CORPUS], show);
      console.log(json ? JSON.stringify(s, null, 2) : statsText(s).join("\n"));
      return 0;
    }
    default:
      return usage(`unknown command "${command}"`);
  }
}

function usage(message: string): number {
  console.error(`corpus: ${message}\n${USAGE}`);
  return 2;
}

function check(
  paths: string[],
  show: (p: string) => string,
  json: boolean,
  flags: { verbose?: boolean },
): number {
  const r = checkCorpus(paths, show);
  if (json) {
    const doc = { format: CHECK_FORMAT, version: CHECK_VERSION, ...r };
    console.log(JSON.stringify(doc, null, 2));
    return r.status;
  }
  for (const f of r.files) {
    if (flags.verbose) console.log(statusLine(f));
    else {
      const line = failureLine(f);
      if (line !== null) console.error(line);
    }
  }
  console.log(summaryLine(r.summary));
  return r.status;
}

function add(
  paths: string[],
  to: string,
  budgetMs: number,
  show: (p: string) => string,
  json: boolean,
): number {
  const files = caseFilesIn(paths);
  const results = addFindings(files, {
    to,
    budgetMs,
    show,
    ...(json ? {} : { onResult: printAdd }),
  });
  const count = (s: AddResult["status"]) => results.filter((r) => r.status === s).length;
  const status = count("invalid") > 0 ? 2 : count("failed") > 0 ? 1 : 0;
  if (json) {
    const doc = { format: "shadow-mmu-corpus-add", version: 1, status, results };
    console.log(JSON.stringify(doc, null, 2));
  } else {
    console.log(
      `corpus add: ${results.length} input(s): ${count("added")} added, ${
        count("duplicate")
      } duplicate, ${count("skipped")} skipped, ${count("invalid")} invalid, ${
        count("failed")
      } failed`,
    );
  }
  return status;
}

/** Prints what happened to one input: problems and warnings on stderr, the rest on stdout. */
function printAdd(r: AddResult): void {
  for (const line of addLines(r)) {
    const bad = r.status === "invalid" || r.status === "failed" || line.startsWith("  warning:");
    (bad ? console.error : console.log)(line);
  }
}

/** The lines that report one input of `add`. */
function addLines(r: AddResult): string[] {
  switch (r.status) {
    case "added": {
      const size = `ops ${r.before.ops} -> ${r.after.ops}, pages ${r.before.pages} -> ` +
        `${r.after.pages}, entries ${r.before.words} -> ${r.after.words}` +
        (r.exhausted ? " (budget spent)" : "");
      return [
        `added ${r.to} from ${r.file}`,
        `  signature ${r.signature}`,
        `  ${size}`,
        ...(r.known === null ? [] : [`  known divergence ${r.known}: tagged expect:divergence`]),
        ...(r.warning === null ? [] : [`  warning: ${r.warning}`]),
      ];
    }
    case "duplicate":
      return [`duplicate ${r.file}: signature ${r.signature} is already in ${r.of}`];
    case "skipped":
      return [`skipped ${r.file}: ${r.reason}`];
    case "failed":
      return [`failed ${r.file}: harness error: ${r.reason}`];
    case "invalid":
      return r.problems.map((p) => `${r.file}: ${p.path}: ${p.message}`);
  }
}

if (import.meta.main) Deno.exit(main(Deno.args));
