/**
 * `deno task replay FILE|DIR… [--json] [--trace]`: runs cases through the oracle and prints,
 * per step, the allowed outcomes and the A/D writes.
 *
 * Exit status: 0 when every case ran, 2 on a usage error or when any file is not a valid case
 * (every other file still runs). `--json` prints one document:
 * `{ format: "shadow-mmu-replay", version: 1, cases: [{ file, ok: true, replay } |
 * { file, ok: false, problems: [{ path, message }] }] }`, see `src/diff/replay.ts`.
 *
 * @module
 */
import { relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, loadCaseFile } from "../corpus/load_case.ts";
import { REPLAY_FORMAT, REPLAY_VERSION, replayCase } from "../diff/replay.ts";
import { replayText } from "./replay_text.ts";

const USAGE = `usage: deno task replay FILE|DIR... [--json] [--trace]

Runs each case through the oracle and prints, per step, the allowed outcomes and the A/D writes.
  --json    one machine-readable JSON document on stdout (format "${REPLAY_FORMAT}", version ${REPLAY_VERSION})
  --trace   include the page walk of every allowed outcome, level by level
  --help    this text`;

/** Runs the replay command; returns the exit status. */
export function main(args: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { json: { type: "boolean" }, trace: { type: "boolean" }, help: { type: "boolean" } },
    });
  } catch (e: unknown) {
    console.error(`replay: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.positionals.length === 0) {
    console.error(`replay: no case file or directory given\n${USAGE}`);
    return 2;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const files = caseFilesIn(parsed.positionals.map((p) => resolve(base, p)));
  const trace = parsed.values.trace ?? false;
  const cases = [];
  let status = 0;
  for (const file of files) {
    const shown = relative(base, file) || file;
    const loaded = loadCaseFile(file);
    if (!loaded.ok) {
      status = 2;
      cases.push({ file: shown, ok: false, problems: loaded.error.problems });
      if (!parsed.values.json) console.error(loaded.error.message.replaceAll(file, shown));
      continue;
    }
    try {
      const replay = replayCase(loaded.case, { trace });
      cases.push({ file: shown, ok: true, replay });
      if (!parsed.values.json) console.log(replayText(shown, replay, trace).join("\n"));
    } catch (e: unknown) {
      // An impossible initial state (e.g. PAE PDPTEs with reserved bits) is an input error;
      // anything else is a harness bug and propagates with its stack.
      if (!(e instanceof InitialStateError)) throw e;
      status = 2;
      cases.push({ file: shown, ok: false, problems: [{ path: e.path, message: e.message }] });
      if (!parsed.values.json) console.error(`${shown}: ${e.path}: ${e.message}`);
    }
  }
  if (parsed.values.json) {
    console.log(JSON.stringify({ format: REPLAY_FORMAT, version: REPLAY_VERSION, cases }, null, 2));
  }
  return status;
}

if (import.meta.main) Deno.exit(main(Deno.args));
