/**
 * The independence rule (ARCHITECTURE.md §4): `oracles/` and `src/shadow/` never import each
 * other and share only the vocabulary in `src/model/`. Checked on the import graph of the source.
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

function tsFiles(dir: string): string[] {
  const abs = join(ROOT, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs).flatMap((name) => {
    const p = join(abs, name);
    if (statSync(p).isDirectory()) return tsFiles(relative(ROOT, p));
    return name.endsWith(".ts") ? [relative(ROOT, p)] : [];
  });
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const pattern =
    /(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|import\s+["']([^"']+)["']/g;
  for (const m of source.matchAll(pattern)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** The project-relative path a relative specifier resolves to, or the bare specifier. */
function target(file: string, spec: string): string {
  return spec.startsWith(".") ? relative(ROOT, resolve(ROOT, dirname(file), spec)) : spec;
}

/** Forbidden edges: files under `from` may not import anything under these prefixes. */
const RULES: { from: string; forbid: string[]; only?: string[] }[] = [
  {
    from: "oracles",
    forbid: ["src/shadow", "src/diff", "src/gen", "src/cli", "src/minimize"],
    only: ["oracles/", "src/model/"],
  },
  {
    from: "src/shadow",
    forbid: ["oracles", "src/diff", "src/gen", "src/cli"],
    only: ["src/shadow/", "src/model/"],
  },
  {
    from: "src/model",
    forbid: ["oracles", "src/shadow", "src/diff", "src/cli"],
    only: ["src/model/"],
  },
];

function violations(): string[] {
  const found: string[] = [];
  for (const rule of RULES) {
    for (const file of tsFiles(rule.from)) {
      for (const spec of importsOf(readFileSync(join(ROOT, file), "utf8"))) {
        const t = target(file, spec);
        if (!spec.startsWith(".")) continue; // npm:, node: and mapped bare imports are libraries
        if (rule.forbid.some((f) => t === f || t.startsWith(`${f}/`))) {
          found.push(`${file} imports ${t}`);
        } else if (rule.only && !rule.only.some((p) => t.startsWith(p))) {
          found.push(`${file} imports ${t} (outside ${rule.only.join(", ")})`);
        }
      }
    }
  }
  return found;
}

Deno.test("independence: oracles/ and src/shadow/ import only themselves and src/model/", () => {
  ok(tsFiles("oracles").length >= 8, "the oracle sources were not found");
  deepStrictEqual(violations(), []);
});

Deno.test("independence: the import scanner sees static, re-export and dynamic imports", () => {
  const src = `import { a } from "../../oracles/walk.ts";\nexport * from "./x.ts";\n` +
    `const m = await import("../shadow/mmu.ts");\nimport "./side.ts";\nimport type { T } from "./t.ts";`;
  deepStrictEqual(importsOf(src), [
    "../../oracles/walk.ts",
    "./x.ts",
    "../shadow/mmu.ts",
    "./side.ts",
    "./t.ts",
  ]);
  // A forbidden edge is detected: a file in src/shadow importing the oracle.
  deepStrictEqual(target("src/shadow/mmu.ts", "../../oracles/walk.ts"), "oracles/walk.ts");
});
