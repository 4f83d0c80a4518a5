/**
 * A fuzz run killed outright (SIGKILL: no handler runs, as when a machine is preempted or the
 * kernel's OOM killer strikes) leaves no half-written file: every finding is a complete case,
 * the report is the last complete checkpoint, temporary files are hidden and ignored by every
 * command; and `--resume` from that checkpoint ends with the report and the finding files of the
 * same run never killed.
 *
 * The run is a real `deno run` subprocess (the only way to SIGKILL it), so `deno task test`
 * grants `--allow-run=deno` and nothing else to run.
 *
 * @module
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { main as fuzz } from "../../src/cli/fuzz.ts";
import type { FuzzReportJson } from "../../src/cli/fuzz_report.ts";
import { readReport } from "../../src/cli/report_schema.ts";
import { completedSet } from "../../src/cli/report_merge.ts";
import { caseFilesIn, loadCaseFile } from "../../src/corpus/load_case.ts";
import { captureAsync } from "../_helpers/capture.ts";

const SCRATCH = ".tmp/kill_test";
/** A run that finds new signatures often (an injected bug), one worker, a checkpoint a second. */
const RUN = [
  "--seed",
  "21",
  "--inject",
  "invlpg_no_sync",
  "--workers",
  "1",
  "--corpus",
  "none",
  "--minimize",
  "0",
  "--quiet",
];

/** Starts `deno task fuzz`'s command in a subprocess with the given extra flags. */
function spawnFuzz(args: string[]): Deno.ChildProcess {
  return new Deno.Command("deno", {
    args: [
      "run",
      "--allow-read=.",
      "--allow-write=.tmp",
      "--allow-env=INIT_CWD",
      "src/cli/fuzz.ts",
      ...RUN,
      ...args,
    ],
    env: { INIT_CWD: Deno.cwd() },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Waits until `ready()` holds (polling), or fails after `seconds`. */
async function waitFor(ready: () => boolean, seconds: number, what: string): Promise<void> {
  const until = performance.now() + seconds * 1000;
  while (!ready()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Visible and hidden files of a directory. */
function filesOf(dir: string): { visible: string[]; hidden: string[] } {
  const names = existsSync(dir) ? readdirSync(dir).sort() : [];
  return {
    visible: names.filter((n) => !n.startsWith(".")),
    hidden: names.filter((n) => n.startsWith(".")),
  };
}

/** Every visible file of `dir` is a complete case; hidden ones are only atomic-write temporaries. */
function assertNoHalfFiles(dir: string): number {
  const { visible, hidden } = filesOf(dir);
  for (const name of visible) {
    ok(name.endsWith(".json"), name);
    const l = loadCaseFile(join(dir, name));
    ok(l.ok, l.ok ? name : l.error.message);
  }
  for (const name of hidden) ok(/^\.[0-9a-f-]{36}\.tmp$/.test(name), `unexpected file ${name}`);
  // The commands that read a directory of cases never see a temporary.
  deepStrictEqual(caseFilesIn([dir]).map((f) => f.slice(dir.length + 1)), visible);
  return visible.length;
}

/** A report without what legitimately differs between runs: timing and interruption. */
function comparable(r: FuzzReportJson): string {
  const { timing: _timing, ...rest } = r;
  return JSON.stringify({ ...rest, totals: { ...rest.totals, interrupted: false } }, null, 1);
}

Deno.test("SIGKILL: a killed run leaves complete findings and a resumable checkpoint; resuming equals the unkilled run", async () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  mkdirSync(SCRATCH, { recursive: true });
  const out = join(SCRATCH, "killed");
  const json = join(SCRATCH, "killed.json");

  // Kill three times, at different moments; each time the previous checkpoint is resumed.
  let resume: string[] = [];
  for (const [round, extraMs] of [[1, 0], [2, 137], [3, 311]] as const) {
    const before = existsSync(json) ? completedSet(readReport(json), json).length : 0;
    const child = spawnFuzz([
      "--time",
      "120",
      "--checkpoint",
      "1",
      "--out",
      out,
      "--json",
      json,
      ...resume,
    ]);
    try {
      // Past a checkpoint that adds cases, with findings on disk: then kill, mid-write or not.
      await waitFor(
        () =>
          filesOf(out).visible.length > 0 && existsSync(json) &&
          completedSet(readReport(json), json).length > before,
        60,
        `round ${round}: a checkpoint with more cases than ${before}`,
      );
      await new Promise((r) => setTimeout(r, extraMs));
    } finally {
      child.kill("SIGKILL");
    }
    const status = await child.status;
    equal(status.signal, "SIGKILL", `round ${round}`);
    ok(assertNoHalfFiles(out) > 0);
    const checkpoint = readReport(json); // complete and valid, or this throws
    ok(checkpoint.totals.interrupted, "a checkpoint is marked interrupted");
    ok(completedSet(checkpoint, json).length > before, `round ${round} made progress`);
    ok(filesOf(SCRATCH).hidden.every((n) => n.endsWith(".tmp")));
    resume = ["--resume", json];
  }

  // Finish the killed run with a case budget, and run the same budget uninterrupted.
  const runs = completedSet(readReport(json), json).length + 150;
  const finished = await captureAsync(() =>
    fuzz([...RUN, "--runs", `${runs}`, "--out", out, "--json", json, "--resume", json])
  );
  equal(finished.status, 1, finished.err);
  const straight = await captureAsync(() =>
    fuzz([
      ...RUN,
      "--runs",
      `${runs}`,
      "--out",
      join(SCRATCH, "straight"),
      "--json",
      join(SCRATCH, "straight.json"),
    ])
  );
  equal(straight.status, 1, straight.err);
  const a = readReport(json);
  const b = readReport(join(SCRATCH, "straight.json"));
  deepStrictEqual(completedSet(a, json), [...Array(runs).keys()]);
  const rename = (r: FuzzReportJson, dir: string) => {
    for (const s of [...r.findings, ...r.known]) s.file = s.file.replace(dir, "OUT");
    return r;
  };
  equal(
    comparable(rename(a, join(Deno.cwd(), out))),
    comparable(rename(b, join(Deno.cwd(), SCRATCH, "straight"))),
  );
  // The same finding files, byte for byte.
  const { visible } = filesOf(out);
  deepStrictEqual(visible, filesOf(join(SCRATCH, "straight")).visible);
  for (const name of visible) {
    equal(
      readFileSync(join(out, name), "utf8"),
      readFileSync(join(SCRATCH, "straight", name), "utf8"),
      name,
    );
  }
});
