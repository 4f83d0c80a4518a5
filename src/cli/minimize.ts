/**
 * `deno task minimize FILE [-o OUT] [--budget 30s] [--signature SIG]`: reduces a diverging case
 * to a small one with the same divergence signature (`src/minimize/minimize.ts`) and writes it
 * atomically, by default next to the input as `NAME.min.json`.
 *
 * Exit status: 0 written; 1 the case does not diverge (nothing to minimize); 2 usage or input
 * error.
 *
 * @module
 */
import { basename, dirname, join, relative, resolve } from "node:path";
import { encodeCase, loadCaseFile } from "../corpus/load_case.ts";
import { minimizeCase, signatureOf } from "../minimize/minimize.ts";
import { parseCommandLine } from "./command_line.ts";
import { writeFileAtomic } from "./write_atomic.ts";

const USAGE = `usage: deno task minimize FILE [-o OUT] [--budget 30s] [--signature SIG]

Reduces a diverging case to a small one that diverges with the same signature: ddmin over the
program's ops, then over memory pages and entries, then one bit, memslot, CPU feature and
control bit at a time, repeated to a fixed point or until the budget is spent.
  -o, --out FILE     where to write the result (default: FILE with .min.json)
  --budget TIME      wall-clock budget, e.g. 30s, 2m, 500ms or seconds (default 30s)
  --signature SIG    the signature to keep (default: the case's own, computed by running it)
  --help             this text
Exit status: 0 written, 1 the case does not diverge, 2 usage or input error.`;

/** A duration such as `30s`, `2m`, `500ms` or `45` (seconds), in milliseconds; null if invalid. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]);
  return m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000;
}

/** Runs the minimize command; returns the exit status. */
export function main(args: string[]): number {
  const parsed = parseCommandLine("minimize", USAGE, args, {
    out: { type: "string", short: "o" },
    budget: { type: "string" },
    signature: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  if (parsed.positionals.length !== 1) {
    console.error(`minimize: give exactly one case file\n${USAGE}`);
    return 2;
  }
  const budgetMs = parseDuration(parsed.values.budget ?? "30s");
  if (budgetMs === null) {
    console.error(`minimize: --budget: expected a duration such as 30s, 2m or 500ms\n${USAGE}`);
    return 2;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const file = resolve(base, parsed.positionals[0]!);
  const loaded = loadCaseFile(file);
  if (!loaded.ok) {
    console.error(loaded.error.message);
    return 2;
  }
  const signature = parsed.values.signature ?? signatureOf(loaded.case);
  if (signature === "pass" || signature === "unsupported") {
    console.error(`minimize: ${relative(base, file)}: the case does not diverge (${signature})`);
    return 1;
  }
  const t0 = performance.now();
  const r = minimizeCase(loaded.case, { budgetMs, signature });
  const ms = performance.now() - t0;
  const out = parsed.values.out
    ? resolve(base, parsed.values.out)
    : join(dirname(file), basename(file).replace(/(\.min)?\.json$/, "") + ".min.json");
  const c = structuredClone(r.case);
  c.meta.signature = signature;
  c.meta.found = { ...c.meta.found, by: c.meta.found.by === "hand" ? "hand" : "minimize" };
  writeFileAtomic(out, encodeCase(c));
  console.log(
    `minimize: ${relative(base, file)} -> ${relative(base, out)}\n` +
      `  signature ${signature}\n` +
      `  ops ${r.before.ops} -> ${r.after.ops}, pages ${r.before.pages} -> ${r.after.pages}, ` +
      `entries ${r.before.words} -> ${r.after.words}` +
      (r.before.schedule > 0 ? `, schedule ${r.before.schedule} -> ${r.after.schedule}` : "") +
      `; ${r.tests} runs in ${r.rounds} round(s), ` +
      `${(ms / 1000).toFixed(1)} s${r.exhausted ? " (budget spent: not at a fixed point)" : ""}`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
