/**
 * `deno task replay FILE|DIR… [--json] [--trace] [--events] [--oracle-only]`: runs cases
 * through the oracle and the system under test, compares them step by step, and prints per
 * step the SUT's result, the allowed outcomes and the A/D writes, and per case the verdict.
 *
 * Exit status: 0 when every case ran and none diverged unexpectedly (a case tagged
 * `expect:divergence` or with injected bugs is expected to diverge); 1 when one did; 2 on a
 * usage error or when any file is not a valid case (every other file still runs). `--json`
 * prints one document: `{ format: "shadow-mmu-replay", version: 2, cases: [{ file, ok: true,
 * replay } | { file, ok: false, problems: [{ path, message }] }] }`, see `src/diff/replay.ts`.
 *
 * @module
 */
import { relative, resolve } from "node:path";
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, loadCaseFile } from "../corpus/load_case.ts";
import { EXPECT_DIVERGENCE, REPLAY_FORMAT, REPLAY_VERSION, replayCase } from "../diff/replay.ts";
import { kvm_mmu_audit } from "../shadow/audit.ts";
import { parseCommandLine } from "./command_line.ts";
import { replayText } from "./replay_text.ts";

const USAGE = `usage: deno task replay FILE|DIR... [--json] [--trace] [--events] [--oracle-only]

Runs each case through the oracle and the shadow MMU (SUT), compares them step by step, and
prints per step the SUT's result, the allowed outcomes and the A/D writes, then the verdict.
  --json         one machine-readable JSON document on stdout (format "${REPLAY_FORMAT}", version ${REPLAY_VERSION})
  --trace        include the page walk of every allowed outcome, level by level
  --events       include the SUT's event log (faults, syncs, zaps, flushes) under each step
  --oracle-only  run only the oracle, committing the fresh walk at every step
  --help         this text
Exit status: 0 all ran as expected, 1 an unexpected divergence, 2 usage or invalid case files.`;

/** Runs the replay command; returns the exit status. */
export function main(args: string[]): number {
  const parsed = parseCommandLine("replay", USAGE, args, {
    json: { type: "boolean" },
    trace: { type: "boolean" },
    events: { type: "boolean" },
    "oracle-only": { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  if (parsed.positionals.length === 0) {
    console.error(`replay: no case file or directory given\n${USAGE}`);
    return 2;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const files = caseFilesIn(parsed.positionals.map((p) => resolve(base, p)));
  const trace = parsed.values.trace ?? false;
  const events = parsed.values.events ?? false;
  const sides = parsed.values["oracle-only"] ? "oracle" : "both";
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
      const replay = replayCase(loaded.case, { trace, events, sides, audit: kvm_mmu_audit });
      cases.push({ file: shown, ok: true, replay });
      if (!parsed.values.json) console.log(replayText(shown, replay, trace).join("\n"));
      const c = loaded.case;
      const expect = c.sut.inject.length > 0 || c.meta.tags.includes(EXPECT_DIVERGENCE);
      const diverged = replay.verdict.status === "divergence";
      if (sides === "both" && replay.verdict.status !== "unsupported" && diverged !== expect) {
        status = Math.max(status, 1);
      }
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
