/**
 * `corpus check` on 1 000 corrupted corpus files: every file gets a result, a bad file never
 * stops the others, and the command exits 2.
 *
 * The files are made deterministically (a seeded PRNG) from the valid cases of `corpus/`, each
 * by one corruption: JSON text truncated at a random offset, a value of the wrong JSON type, a
 * bad hex string, an unknown key, an out-of-range value (numbers, gfns, unaligned addresses, CR3
 * above MAXPHYADDR), or an in-range change (a flipped control bit, a random memory word, a
 * dropped op, another vCPU count) that may leave a valid case. They are written under
 * `./.tmp/`, and `deno task corpus check` runs over that directory in-process. Every file the
 * five corruptions make must be reported invalid, with its file name and a syntactically valid
 * JSON path; the in-range changes are counted separately and, when still valid, must have been
 * replayed without a harness exception.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../../src/cli/corpus.ts";
import { caseFilesIn, parseCase } from "../../src/corpus/load_case.ts";
import { failureLine, type FileCheck } from "../../src/corpus/check.ts";
import { Prng } from "../../src/gen/prng.ts";
import { hex, HEX64_PATTERN } from "../../src/model/hex.ts";
import { capture } from "../_helpers/capture.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Key = string | number;

const CORPUS = fileURLToPath(new URL("../../corpus/", import.meta.url));
const SCRATCH = join(".tmp", "corpus-corruption-test");
const COUNT = 1000;

/** The valid cases of the corpus, as text and JSON. */
const SOURCES = caseFilesIn([CORPUS]).flatMap((file) => {
  const text = readFileSync(file, "utf8");
  return parseCase(text, file).ok
    ? [{ name: relative(CORPUS, file), text, json: JSON.parse(text) as Json }]
    : [];
});

// ---------------------------------------------------------------------------------------------
// JSON paths in the `$.a[0]["b c"]` form, parsed independently of src/model/json_path.ts.

const SEGMENT = /\.([A-Za-z_$][A-Za-z0-9_$]*)|\[(0|[1-9][0-9]*)\]|\[("(?:[^"\\]|\\.)*")\]/y;

/** True if `path` is a `$…` JSON path as the loader writes them. */
function isJsonPath(path: string): boolean {
  if (!path.startsWith("$")) return false;
  for (let i = 1; i < path.length; i = SEGMENT.lastIndex) {
    SEGMENT.lastIndex = i;
    const m = SEGMENT.exec(path);
    if (m === null) return false;
    if (m[3] !== undefined) JSON.parse(m[3]);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Corruptions.

function* nodes(v: Json, path: Key[] = []): Generator<[Key[], Json]> {
  yield [path, v];
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) yield* nodes(v[i]!, [...path, i]);
  } else if (v !== null && typeof v === "object") {
    for (const [k, child] of Object.entries(v)) yield* nodes(child, [...path, k]);
  }
}

function typeOf(v: Json): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** A copy of `doc` with the value at `path` replaced (or deleted, for `undefined`). */
function withValue(doc: Json, path: readonly Key[], value: Json | undefined): Json {
  const copy = structuredClone(doc);
  let parent = copy as Record<Key, Json>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<Key, Json>;
  const last = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else parent[last] = structuredClone(value);
  return copy;
}

const SAMPLES: Record<string, Json[]> = {
  null: [null],
  boolean: [true, false],
  number: [0, 7, -1, 4096, 1.5],
  string: ["7", "", "true", "0x10", "load"],
  array: [[], [0], ["0x1"]],
  object: [{}, { op: "load" }, { "0": "0x1" }],
};
const BAD_HEX = [
  "0x",
  "0xzz",
  "12",
  "0x" + "f".repeat(17),
  "-0x1",
  "0X10",
  " 0x10",
  "0x10 ",
  "",
  "0x_10",
  "0x1000n",
  "#1000",
  "0b101",
  "1e3",
];
const EXTRA_KEYS = ["bogus", "Op", "x-extra", "__comment", "VCPU", "lma"];
/** Out-of-range values of the numeric fields, by field name. */
const BAD_NUMBERS: Record<string, Json[]> = {
  maxPhyAddr: [35, 53, 0, -1, 46.5],
  vcpus: [0, 65, -1, 1.5],
  pkru: [-1, 2 ** 32, 0.5],
  vcpu: [-1, 64, 0.5],
  cpl: [1, 2, 4, -3],
  slot: [-1, 32768, 0.5],
  npages: [0, -1, 2 ** 20 + 1, 2.5],
  version: [0, 2, -1],
};

/** The corruptions that must make the file invalid, and the in-range change that may not. */
const KINDS = [
  "truncated",
  "wrong-type",
  "bad-hex",
  "unknown-key",
  "out-of-range",
  "in-range",
] as const;
type Kind = typeof KINDS[number];

/** One corrupted file: text and the corruption that made it. */
interface Mutant {
  readonly name: string;
  readonly kind: Kind;
  readonly text: string;
}

const show = (doc: Json) => JSON.stringify(doc, null, 2) + "\n";

function corrupt(kind: Kind, text: string, doc: Json, rng: Prng): string {
  const all = [...nodes(doc)].filter(([path]) => path.length > 0);
  switch (kind) {
    case "truncated":
      return text.slice(0, rng.below(text.lastIndexOf("}")));
    case "wrong-type": {
      const [path, value] = rng.pick(all);
      const other = rng.pick(Object.keys(SAMPLES).filter((t) => t !== typeOf(value)));
      return show(withValue(doc, path, rng.pick(SAMPLES[other]!)));
    }
    case "bad-hex": {
      const hexes = all.filter(([path, v]) =>
        typeof v === "string" && HEX64_PATTERN.test(v) && path[0] !== "meta"
      );
      const [path] = rng.pick(hexes);
      return show(withValue(doc, path, rng.pick(BAD_HEX)));
    }
    case "unknown-key": {
      const objects = all.filter(([, v]) => typeOf(v) === "object");
      const [path] = rng.pick([[[], doc] as [Key[], Json], ...objects]);
      return show(withValue(doc, [...path, rng.pick(EXTRA_KEYS)], rng.pick([0, "x", true])));
    }
    case "out-of-range": {
      const choices: [Key[], Json][] = [];
      for (const [path, v] of all) {
        const key = path[path.length - 1];
        if (typeof key === "string" && key in BAD_NUMBERS && typeof v === "number") {
          for (const bad of BAD_NUMBERS[key]!) choices.push([path, bad]);
        }
        if ((key === "gfn" || key === "baseGfn") && typeof v === "string") {
          choices.push([path, hex(1n << 40n)], [path, "0xffffffffffffffff"]);
        }
        if (key === "la" && typeof v === "string" && HEX64_PATTERN.test(v)) {
          const program = (doc as Record<string, Json>)["program"] as Json[];
          const op = program[path[1] as number] as Record<string, Json>;
          if (op.op !== "invlpg") choices.push([path, hex(BigInt(v) | 4n)]);
        }
      }
      choices.push([["control", "cr3"], "0xffffffffffffffff"]);
      const [path, bad] = rng.pick(choices);
      return show(withValue(doc, path, bad));
    }
    case "in-range": {
      const d = doc as Record<string, Json>;
      const bools = all.filter(([path, v]) =>
        typeof v === "boolean" && (path[0] === "control" || path[0] === "cpu")
      );
      const words = all.filter(([path]) => path[0] === "memory" && path[2] === "words");
      const program = d["program"] as Json[];
      switch (rng.below(4)) {
        case 0: {
          const [path, v] = rng.pick(bools);
          return show(withValue(doc, path, !v));
        }
        case 1:
          if (words.length > 0) {
            const [path] = rng.pick(words.filter(([p]) => p.length === 4).concat(words));
            if (path.length === 4) {
              const word = (BigInt(rng.next()) << 32n) | BigInt(rng.next());
              return show(withValue(doc, path, hex(word)));
            }
          }
          return show(withValue(doc, ["vcpus"], 1 + rng.below(4)));
        case 2:
          if (program.length > 0) {
            return show(withValue(doc, ["program", rng.below(program.length)], undefined));
          }
          return show(withValue(doc, ["vcpus"], 2));
        default:
          return show(withValue(doc, ["vcpus"], 1 + rng.below(4)));
      }
    }
  }
}

/** The corrupted files, the same for every run. */
function mutants(): Mutant[] {
  const rng = new Prng(0xc0_22_0b7);
  const out: Mutant[] = [];
  for (let i = 0; i < COUNT; i++) {
    const src = rng.pick(SOURCES);
    // Mostly the five corruptions; one file in eight is an in-range change.
    const kind = rng.below(8) === 0 ? "in-range" : KINDS[rng.below(5)]!;
    const text = corrupt(kind, src.text, src.json, rng);
    const stem = basename(src.name, ".json");
    out.push({ name: `${String(i).padStart(4, "0")}-${kind}-${stem}.json`, kind, text });
  }
  return out;
}

Deno.test("the corrupted corpus files are deterministic and come from every kind", () => {
  ok(SOURCES.length >= 50, `${SOURCES.length} valid corpus cases`);
  const a = mutants();
  deepStrictEqual(mutants(), a);
  equal(a.length, COUNT);
  for (const kind of KINDS) ok(a.some((m) => m.kind === kind), `no ${kind} file`);
  ok(a.every((m, i) => a.findIndex((n) => n.name === m.name) === i), "file names are unique");
});

Deno.test("corpus check on 1 000 corrupted files: every one reported, invalid ones at a JSON path, exit 2", () => {
  const list = mutants();
  rmSync(SCRATCH, { recursive: true, force: true });
  mkdirSync(SCRATCH, { recursive: true });
  for (const m of list) writeFileSync(join(SCRATCH, m.name), m.text);

  let run;
  try {
    run = capture(() => main(["check", SCRATCH, "--json"]));
  } catch (e: unknown) {
    throw new Error(`an exception escaped corpus check: ${(e as Error).stack}`);
  }
  equal(run.status, 2, run.err);
  const doc = JSON.parse(run.out) as {
    format: string;
    status: number;
    summary: Record<string, number>;
    files: FileCheck[];
  };
  equal(doc.format, "shadow-mmu-corpus-check");
  equal(doc.status, 2);
  equal(doc.files.length, COUNT, "one result per file");
  equal(doc.summary.files, COUNT);

  const byName = new Map(list.map((m) => [m.name, m]));
  const wrong: string[] = [];
  const tally = { invalid: 0, stillValid: 0, replayed: 0 };
  const seen = new Set<string>();
  for (const f of doc.files) {
    const name = basename(f.file);
    const m = byName.get(name);
    if (m === undefined || !f.file.endsWith(join(basename(SCRATCH), name))) {
      wrong.push(`${f.file}: not one of the corrupted files`);
      continue;
    }
    seen.add(name);
    if (f.status === "invalid") {
      tally.invalid++;
      const line = failureLine(f) ?? "";
      if (f.problems.length === 0) wrong.push(`${name}: invalid without a problem`);
      for (const p of f.problems) {
        if (!isJsonPath(p.path)) wrong.push(`${name}: not a JSON path: ${JSON.stringify(p.path)}`);
        if (p.message.trim() === "") wrong.push(`${name}: empty message at ${p.path}`);
      }
      const first = f.problems[0]?.path ?? "";
      if (!line.startsWith(`${f.file}: ${first}: `)) wrong.push(`${name}: reported as ${line}`);
      if (m.kind === "truncated" && first !== "$") {
        wrong.push(`${name}: truncated JSON at ${first}`);
      }
      continue;
    }
    if (m.kind !== "in-range") {
      wrong.push(`${name}: a ${m.kind} corruption was not rejected: ${f.status}`);
      continue;
    }
    tally.stillValid++;
    if (f.runs.length === 0) wrong.push(`${name}: valid but not replayed`);
    else tally.replayed++;
    for (const r of f.runs) {
      if (r.got.status === "crash") wrong.push(`${name}: harness exception: ${r.got.message}`);
    }
  }
  equal(seen.size, COUNT, "every file reported once");
  equal(wrong.length, 0, wrong.slice(0, 10).join("\n"));
  equal(tally.invalid + tally.stillValid, COUNT);
  equal(tally.replayed, tally.stillValid);
  ok(tally.invalid >= 0.85 * COUNT, JSON.stringify(tally));
  ok(tally.stillValid > 0, `no in-range change stayed valid: ${JSON.stringify(tally)}`);
  equal(doc.summary.invalid, tally.invalid);
  // The text form: one line per invalid file, naming it, on stderr.
  const text = capture(() => main(["check", SCRATCH]));
  equal(text.status, 2);
  const lines = text.err.split("\n").filter((l) => l !== "");
  ok(lines.length >= tally.invalid, `${lines.length} lines for ${tally.invalid} invalid files`);
  console.log(
    `${COUNT} corrupted files: ${tally.invalid} invalid, ${tally.stillValid} still valid ` +
      `(replayed: ${doc.summary.pass} pass, ${doc.summary.expected} diverge as expected, ` +
      `${doc.summary.unsupported} unsupported, ${doc.summary.unexpected} unexpected)`,
  );
});
