/**
 * The minimizer's figures on a directory of fuzz findings: for each finding (every `*.json`
 * except `*.min.json`), minimize it keeping its signature and print ops and pages before and
 * after and the time it took; then the medians. This is how the acceptance figures are measured
 * (targets: ≤ 6 ops, ≤ 10 s):
 *
 * ```sh
 * deno task fuzz --seed 12 --time 600 --workers 1 --inject invlpg_no_sync --minimize 0 \
 *   --corpus none --out .tmp/bug12
 * deno run --allow-read=. tests/minimize/minimize_figures.ts .tmp/bug12 [--budget 30]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { caseFilesIn, loadCaseFile } from "../../src/corpus/load_case.ts";
import { minimizeCase } from "../../src/minimize/minimize.ts";

/** The median of `xs` (the mean of the middle two for an even count). */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { budget: { type: "string", default: "30" } },
    allowPositionals: true,
  });
  const budgetMs = Number(values.budget) * 1000;
  const rows: { ops: [number, number]; pages: [number, number]; seconds: number }[] = [];
  const files = caseFilesIn(positionals).filter((f) => !f.endsWith(".min.json"));
  for (const file of files) {
    const loaded = loadCaseFile(file);
    if (!loaded.ok) {
      console.error(loaded.error.message);
      continue;
    }
    const signature = loaded.case.meta.signature ?? undefined;
    const started = performance.now();
    const r = minimizeCase(loaded.case, {
      budgetMs,
      ...(signature === undefined ? {} : { signature }),
    });
    const seconds = (performance.now() - started) / 1000;
    rows.push({
      ops: [r.before.ops, r.after.ops],
      pages: [r.before.pages, r.after.pages],
      seconds,
    });
    console.log(
      `${r.before.ops} -> ${r.after.ops} ops, ${r.before.pages} -> ${r.after.pages} pages, ` +
        `${seconds.toFixed(2)} s, ${r.tests} runs${r.exhausted ? " (budget spent)" : ""}  ` +
        r.signature,
    );
  }
  const col = (f: (r: (typeof rows)[number]) => number) => median(rows.map(f));
  console.log(
    `${rows.length} finding(s); median ops ${col((r) => r.ops[0])} -> ${col((r) => r.ops[1])}, ` +
      `median pages ${col((r) => r.pages[0])} -> ${col((r) => r.pages[1])}, ` +
      `median time ${col((r) => r.seconds).toFixed(2)} s, ` +
      `max ops after ${Math.max(...rows.map((r) => r.ops[1]))}, ` +
      `max time ${Math.max(...rows.map((r) => r.seconds)).toFixed(2)} s`,
  );
}
