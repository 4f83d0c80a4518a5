/**
 * Corrupted case files get clean errors, never crashes.
 *
 * Every valid case in the corpus tagged `oracle` is mutated, deterministically (a seeded PRNG picks the
 * sample values), once per JSON node and mutation kind: required fields deleted, values of the
 * wrong JSON type, bad hex strings, out-of-range numbers and addresses, bad word indices, unknown
 * keys in strict objects, unknown op names, wrong format and version, and semantic conflicts the
 * format itself checks (a control bit without its CPUID feature, overlapping memslots, a vCPU
 * index at or above `vcpus`…). Every mutant that must be rejected comes back from `parseCase` as
 * a `CaseFileError` whose message names the file and whose problems carry syntactically valid
 * JSON paths, at least one of them on (or above, or below) the path the mutation is to blame
 * on. Mutations that are valid by the format's own rules (deleting a defaulted field, spelling
 * a hex value with leading zeros or upper-case digits, an unaligned INVLPG operand) are counted
 * separately and must parse. Malformed JSON text and unreadable files get the same clean errors,
 * and so does an impossible initial state the oracle finds (a PAE PDPTE with reserved bits).
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { InitialStateError } from "../../oracles/control_state.ts";
import {
  CaseFileError,
  type CaseLoad,
  loadCaseFile,
  parseCase,
} from "../../src/corpus/load_case.ts";
import { replayCase } from "../../src/diff/replay.ts";
import { Prng } from "../../src/gen/prng.ts";
import type { Case } from "../../src/model/case.ts";
import { hex, HEX64_PATTERN, U64_MAX } from "../../src/model/hex.ts";
import { corpusCases } from "../_helpers/corpus_cases.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
type Key = string | number;

const SCRATCH = ".tmp";

/** One valid case of the corpus: its file name, text, JSON tree and decoded case. */
interface Source {
  name: string;
  text: string;
  json: JsonObject;
  decoded: Case;
}

function loadSources(): Source[] {
  return corpusCases("oracle").map(({ name, file }) => {
    const text = readFileSync(file, "utf8");
    const loaded = parseCase(text, name);
    if (!loaded.ok) throw new Error(`corpus case does not parse:\n${loaded.error.message}`);
    return { name, text, json: JSON.parse(text) as JsonObject, decoded: loaded.case };
  });
}

// ---------------------------------------------------------------------------------------------
// JSON paths, parsed independently of src/model/json_path.ts.

const SEGMENT = /\.([A-Za-z_$][A-Za-z0-9_$]*)|\[(0|[1-9][0-9]*)\]|\[("(?:[^"\\]|\\.)*")\]/y;

/** The keys of a `$.a[0]["b c"]` path, or undefined when it is not such a path. */
function parsePath(path: string): Key[] | undefined {
  if (!path.startsWith("$")) return undefined;
  const keys: Key[] = [];
  for (let i = 1; i < path.length; i = SEGMENT.lastIndex) {
    SEGMENT.lastIndex = i;
    const m = SEGMENT.exec(path);
    if (m === null) return undefined;
    if (m[1] !== undefined) keys.push(m[1]);
    else if (m[2] !== undefined) keys.push(Number(m[2]));
    else keys.push(JSON.parse(m[3]!) as string);
  }
  return keys;
}

/** One path is a prefix of the other (or they are equal). */
function related(a: readonly Key[], b: readonly Key[]): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function show(path: readonly Key[]): string {
  return "$" +
    path.map((k) => typeof k === "number" ? `[${k}]` : `[${JSON.stringify(k)}]`).join("");
}

Deno.test("the test's JSON path parser reads every form the loader writes", () => {
  deepStrictEqual(parsePath("$"), []);
  deepStrictEqual(parsePath('$.memory[0].words["12"]'), ["memory", 0, "words", "12"]);
  deepStrictEqual(parsePath('$.a["x\\"y"][10]'), ["a", 'x"y', 10]);
  for (const bad of ["", "memory", "$.", "$[01]", "$.0", "$..a", "$[x]", "$.a b"]) {
    equal(parsePath(bad), undefined, bad);
  }
});

// ---------------------------------------------------------------------------------------------
// Mutants.

/** What a mutant must do: be rejected with a problem near `blame`, or parse. */
type Expect =
  | { kind: "error"; blame: readonly (readonly Key[])[] }
  | { kind: "valid"; same?: Case };

interface Mutant {
  source: string;
  kind: string;
  target: readonly Key[];
  text: string;
  expect: Expect;
}

function typeOf(v: Json): "null" | "boolean" | "number" | "string" | "array" | "object" {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v as "boolean" | "number" | "string" | "object";
}

function* nodes(v: Json, path: Key[] = []): Generator<[Key[], Json]> {
  yield [path, v];
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) yield* nodes(v[i]!, [...path, i]);
  } else if (v !== null && typeof v === "object") {
    for (const [k, child] of Object.entries(v)) yield* nodes(child, [...path, k]);
  }
}

function at(v: Json, path: readonly Key[]): Json {
  let node = v;
  for (const k of path) node = (node as Record<Key, Json>)[k]!;
  return node;
}

/** A deep copy of `doc` with `edit` applied to the container at `path`. */
function edited(doc: JsonObject, path: readonly Key[], edit: (parent: Json, key: Key) => void) {
  const copy = structuredClone(doc);
  edit(at(copy, path.slice(0, -1)), path[path.length - 1]!);
  return copy;
}

function withValue(doc: JsonObject, path: readonly Key[], value: Json): Json {
  if (path.length === 0) return value;
  return edited(doc, path, (parent, key) => {
    (parent as Record<Key, Json>)[key] = structuredClone(value);
  });
}

function withValues(doc: JsonObject, changes: [readonly Key[], Json][]): JsonObject {
  return changes.reduce((d, [path, value]) => withValue(d, path, value) as JsonObject, doc);
}

function without(doc: JsonObject, path: readonly Key[]): JsonObject {
  return edited(doc, path, (parent, key) => delete (parent as Record<Key, Json>)[key]);
}

/** Fields the format fills in or leaves out when absent (read off src/model/case.ts, op.ts). */
function optionalField(doc: JsonObject, path: readonly Key[]): boolean {
  const [top, second, third] = path;
  if (path.length === 1) return ["vcpus", "memory", "sut", "meta"].includes(top as string);
  if (top === "sut" || top === "meta") return true; // every field below has a default
  if (top === "cpu" && path.length === 2) return second === "vendor";
  if (top === "control" && path.length === 2) return second === "pkru" || second === "rflagsAc";
  if (top === "memory" && path.length === 4) return true; // an absent word reads as zero
  if (top === "memslots" && path.length === 3) return third === "readOnly";
  if (top === "program" && path.length === 3) {
    const op = (at(doc, path.slice(0, 2)) as JsonObject).op as string;
    if (["vcpu", "noFlush", "readOnly", "enable"].includes(third as string)) return true;
    return ["writeCr0", "writeCr4", "writeEfer"].includes(op) && third !== "op";
  }
  return false;
}

/** Spellings a 64-bit hex field must reject, given a valid value's digits. */
function badHex(digits: string): string[] {
  return [
    "0x",
    "0xzz",
    "12",
    digits,
    "0x" + digits.padStart(17, "0"),
    "0x" + "f".repeat(17),
    "-0x" + digits,
    "0X" + digits,
    " 0x" + digits,
    "0x" + digits + " ",
    "0x" + digits + "\n",
    "",
    "0x-" + digits,
    "0x" + digits + "g",
    "0x_" + digits,
    "0x1_000",
    "0x" + digits + "n",
    "#" + digits,
    "0b101",
    "0o17",
    "1e3",
  ];
}

/** Keys a word index must reject. */
const BAD_WORD_INDICES = [
  "512",
  "999",
  "1000",
  "-1",
  "01",
  "007",
  "1.0",
  "1e2",
  "0x1",
  "",
  " 1",
  "x",
];
/** Op names that do not exist. */
const BAD_OP_NAMES = ["lod", "LOAD", "", "nop", "load ", "Store", "invlpga", "movCr4", "toString"];
/** Names of keys no strict object has. */
const EXTRA_KEYS = ["bogus", "Op", "x-extra", "__comment", "constructor", "VCPU"];
/** A sample value of each JSON type, for wrong-type replacements. */
const SAMPLES: Record<ReturnType<typeof typeOf>, Json[]> = {
  null: [null],
  boolean: [true, false],
  number: [0, 7, -1, 4096],
  string: ["7", "", "true", "0x10", "load"],
  array: [[], [0], ["0x1"]],
  object: [{}, { op: "load" }, { "0": "0x1" }],
};
/** Out-of-range values of the numeric fields, by field name. */
const BAD_NUMBERS: Record<string, number[]> = {
  maxPhyAddr: [35, 53, 0, -1, 46.5, 1e300],
  vcpus: [0, 65, -1, 1.5],
  pkru: [-1, 2 ** 32, 0.5, 2 ** 53],
  vcpu: [-1, 64, 0.5],
  cpl: [1, 2, 4, -3, 0.5],
  slot: [-1, 32768, 0.5],
  npages: [0, -1, 2 ** 20 + 1, 2.5],
  pick: [-1, 2 ** 32, 0.25],
};
/** A control bit and the CPUID feature it needs. */
const NEEDS: readonly [reg: "cr4" | "efer", bit: string, feature: string][] = [
  ["cr4", "pse", "pse"],
  ["cr4", "smep", "smep"],
  ["cr4", "smap", "smap"],
  ["cr4", "pke", "pku"],
  ["cr4", "la57", "la57"],
  ["cr4", "pcide", "pcid"],
  ["efer", "nxe", "nx"],
];

/**
 * Collects mutants of one source, dropping no-ops and duplicates by JSON text (`seen` is shared
 * by every source and starts with the unmutated cases).
 */
class Mutants {
  readonly list: Mutant[] = [];

  constructor(readonly src: Source, readonly seen: Set<string>) {}

  add(kind: string, target: readonly Key[], doc: Json, expect: Expect | "error") {
    const text = JSON.stringify(doc, null, 2);
    if (this.seen.has(text)) return;
    this.seen.add(text);
    const e: Expect = expect === "error" ? { kind: "error", blame: [target] } : expect;
    this.list.push({ source: this.src.name, kind, target, text, expect: e });
  }
}

/** Every mutant of one valid case. */
function mutantsOf(src: Source, rng: Prng, seen: Set<string>): Mutant[] {
  const m = new Mutants(src, seen);
  const doc = src.json;
  const c = src.decoded;

  for (const [path, value] of nodes(doc)) {
    const parentKey = path[path.length - 2];
    const key = path[path.length - 1];
    const type = typeOf(value);

    // Deleting a field (array elements are left alone: dropping one is always valid).
    if (typeof key === "string") {
      if (optionalField(doc, path)) {
        m.add("delete-defaulted", path, without(doc, path), { kind: "valid" });
      } else m.add("delete-required", path, without(doc, path), "error");
    }

    // A value of each other JSON type.
    for (const other of Object.keys(SAMPLES) as (keyof typeof SAMPLES)[]) {
      if (other === type) continue;
      m.add(
        `wrong-type:${type}->${other}`,
        path,
        withValue(doc, path, rng.pick(SAMPLES[other])),
        "error",
      );
    }

    // Unknown keys: strict objects report the object, the words record reports the key.
    if (type === "object") {
      const extra = rng.pick(EXTRA_KEYS);
      m.add("unknown-key", [...path, extra], withValue(doc, [...path, extra], 0), "error");
    }

    // Hex fields: bad spellings must fail, other spellings of the same value must not.
    const isHex = typeof value === "string" && HEX64_PATTERN.test(value) && path[0] !== "meta" &&
      path[0] !== "sut";
    if (isHex) {
      const digits = value.slice(2);
      const spellings = badHex(digits);
      for (let i = 0; i < 6; i++) {
        const bad = spellings.splice(rng.below(spellings.length), 1)[0]!;
        m.add("bad-hex", path, withValue(doc, path, bad), "error");
      }
      const same = { kind: "valid", same: c } as const;
      m.add("hex-leading-zeros", path, withValue(doc, path, "0x" + digits.padStart(16, "0")), same);
      m.add("hex-upper-case", path, withValue(doc, path, "0x" + digits.toUpperCase()), same);

      const n = BigInt(value);
      if (key === "gfn" || key === "baseGfn") {
        for (const big of [1n << 40n, (1n << 40n) + n, U64_MAX]) {
          m.add("gfn-out-of-range", path, withValue(doc, path, hex(big)), "error");
        }
      }
      if (key === "la") {
        const op = (at(doc, path.slice(0, -1)) as JsonObject).op;
        for (const la of [n | 1n, (n & ~7n) | 4n, n + 2n]) {
          if (op === "invlpg") {
            m.add("invlpg-unaligned", path, withValue(doc, path, hex(la)), { kind: "valid" });
          } else m.add("access-unaligned", path, withValue(doc, path, hex(la)), "error");
        }
      }
    }

    // Word indices outside 0..511 or not in canonical decimal.
    if (parentKey === "words" && typeof key === "string") {
      for (const bad of BAD_WORD_INDICES) {
        const page = path.slice(0, -1);
        const renamed = edited(doc, path, (words) => {
          const w = words as JsonObject;
          w[bad] = w[key]!;
          delete w[key];
        });
        m.add("bad-word-index", [...page, bad], renamed, "error");
      }
    }

    // Numbers out of range, by field.
    if (type === "number" && typeof key === "string" && key in BAD_NUMBERS) {
      for (const bad of BAD_NUMBERS[key]!) {
        m.add("number-out-of-range", path, withValue(doc, path, bad), "error");
      }
    }
  }

  // The document's identity.
  for (
    const bad of [
      "shadow-mmu-cases",
      "Shadow-MMU-Case",
      "",
      "shadow-mmu-replay",
      " shadow-mmu-case",
    ]
  ) {
    m.add("wrong-format", ["format"], withValue(doc, ["format"], bad), "error");
  }
  for (const bad of [0, 2, -1, 1.5, 1e6]) {
    m.add("wrong-version", ["version"], withValue(doc, ["version"], bad), "error");
  }
  for (const bad of ["Intel", "AMD", "arm", ""]) {
    m.add("bad-enum", ["cpu", "vendor"], withValue(doc, ["cpu", "vendor"], bad), "error");
  }
  for (const bad of ["robot", "Hand", ""]) {
    const path = ["meta", "found", "by"];
    m.add("bad-enum", path, withValue(doc, path, bad), "error");
  }
  const inject = at(doc, ["sut", "inject"]) as Json[];
  m.add(
    "empty-inject-name",
    ["sut", "inject", inject.length],
    withValue(doc, ["sut", "inject"], [...inject, ""]),
    "error",
  );
  const tags = at(doc, ["meta", "tags"]) as Json[];
  m.add(
    "non-string-tag",
    ["meta", "tags", tags.length],
    withValue(doc, ["meta", "tags"], [...tags, 5]),
    "error",
  );
  for (const lma of [true, false]) {
    const path = ["control", "efer", "lma"];
    m.add("stored-lma", path, withValue(doc, path, lma), "error");
  }

  // Ops: unknown names; a vCPU on a host event; vCPU indices at or above `vcpus`.
  c.program.forEach((op, i) => {
    const names = [...BAD_OP_NAMES];
    for (let k = 0; k < 3; k++) {
      const bad = names.splice(rng.below(names.length), 1)[0]!;
      m.add("unknown-op", ["program", i, "op"], withValue(doc, ["program", i, "op"], bad), "error");
    }
    if (!("vcpu" in op)) {
      m.add(
        "host-event-vcpu",
        ["program", i, "vcpu"],
        withValue(doc, ["program", i, "vcpu"], 0),
        "error",
      );
    } else {
      for (const v of [c.vcpus, 63]) {
        const path = ["program", i, "vcpu"];
        m.add("vcpu-not-in-case", path, withValue(doc, path, v), "error");
      }
    }
  });

  // Semantic conflicts, reported where the format blames them.
  for (const [reg, bit, feature] of NEEDS) {
    const d = withValues(doc, [[["control", reg, bit], true], [
      ["cpu", "features", feature],
      false,
    ]]);
    m.add("control-bit-without-feature", ["cpu", "features", feature], d, {
      kind: "error",
      blame: [["control", reg, bit]],
    });
  }
  m.add(
    "ia32e-without-pae",
    ["control", "cr4", "pae"],
    withValues(doc, [
      [["control", "cr0", "pg"], true],
      [["control", "efer", "lme"], true],
      [["control", "cr4", "pae"], false],
    ]),
    "error",
  );
  m.add(
    "pcide-outside-ia32e",
    ["control", "cr4", "pcide"],
    withValues(doc, [
      [["control", "cr0", "pg"], false],
      [["control", "cr4", "pcide"], true],
      [["cpu", "features", "pcid"], true],
    ]),
    "error",
  );
  const cr3 = c.control.cr3;
  for (const bad of [1n << BigInt(c.cpu.maxPhyAddr), cr3 | (1n << 51n), U64_MAX]) {
    m.add(
      "cr3-above-maxphyaddr",
      ["control", "cr3"],
      withValue(doc, ["control", "cr3"], hex(bad)),
      "error",
    );
  }
  m.add(
    "cr3-high-bits-outside-ia32e",
    ["control", "cr3"],
    withValues(doc, [
      [["control", "efer", "lme"], false],
      [["control", "cr3"], hex(cr3 | (1n << 32n))],
    ]),
    "error",
  );
  c.memory.forEach((_, j) => {
    if (j === 0) return;
    const path = ["memory", j, "gfn"];
    m.add("duplicate-page", path, withValue(doc, path, at(doc, ["memory", 0, "gfn"])), "error");
  });
  c.memslots.forEach((_, j) => {
    const end = edited(doc, ["memslots", j, "baseGfn"], (slot) => {
      Object.assign(slot as JsonObject, { baseGfn: hex((1n << 40n) - 1n), npages: 2 });
    });
    m.add("memslot-ends-above-2^40", ["memslots", j], end, "error");
    if (j === 0) return;
    const slotPath = ["memslots", j, "slot"];
    m.add(
      "duplicate-slot-id",
      slotPath,
      withValue(doc, slotPath, at(doc, ["memslots", 0, "slot"])),
      "error",
    );
    const basePath = ["memslots", j, "baseGfn"];
    m.add(
      "overlapping-memslots",
      basePath,
      withValue(doc, basePath, at(doc, ["memslots", 0, "baseGfn"])),
      {
        kind: "error",
        blame: [["memslots", j]],
      },
    );
  });

  return m.list;
}

// ---------------------------------------------------------------------------------------------
// Checks.

/** Why a load is not a clean error with a well-formed report, or undefined when it is. */
function cleanErrorProblem(r: CaseLoad, label: string): string | undefined {
  if (r.ok) return "was accepted";
  const e = r.error;
  if (!(e instanceof CaseFileError) || !(e instanceof SyntaxError)) return "not a CaseFileError";
  if (e.name !== "CaseFileError") return `error name is ${e.name}`;
  if (r.file !== label || e.file !== label) return `file is ${e.file}, not ${label}`;
  if (e.problems.length === 0) return "no problems listed";
  if (/^\s+at /m.test(e.message)) return `stack trace in message: ${e.message}`;
  if (!e.message.startsWith(`${label}: $`)) return `message does not name the file: ${e.message}`;
  const listed = e.problems.map((p) => `${label}: ${p.path}: ${p.message}`).join("\n");
  if (e.message !== listed) return `message is not the list of problems:\n${e.message}`;
  for (const p of e.problems) {
    if (parsePath(p.path) === undefined) return `not a JSON path: ${JSON.stringify(p.path)}`;
    if (typeof p.message !== "string" || p.message.trim() === "") {
      return `empty message at ${p.path}`;
    }
    if (p.message.includes("[object Object]")) return `unrendered object in ${p.message}`;
    if (!e.message.includes(`${label}: ${p.path}: `)) return `message omits ${p.path}`;
  }
  return undefined;
}

/** Loads a mutant: whether it was rejected, and why the outcome is wrong (if it is). */
function tryMutant(mutant: Mutant, label: string): { rejected: boolean; why?: string } {
  let r: CaseLoad;
  try {
    r = parseCase(mutant.text, label);
  } catch (e: unknown) {
    return { rejected: false, why: `threw ${e instanceof Error ? e.stack : String(e)}` };
  }
  if (mutant.expect.kind === "valid") {
    if (!r.ok) return { rejected: true, why: `should be valid, got:\n${r.error.message}` };
    const same = mutant.expect.same;
    if (same !== undefined && !isDeepStrictEqual(r.case, same)) {
      return { rejected: false, why: "decodes to another case" };
    }
    return { rejected: false };
  }
  const why = cleanErrorProblem(r, label);
  if (r.ok || why !== undefined) return { rejected: !r.ok, why: why ?? "was accepted" };
  const paths = r.error.problems.map((p) => parsePath(p.path)!);
  const blamed = mutant.expect.blame;
  if (!paths.some((p) => blamed.some((b) => related(p, b)))) {
    const near = blamed.map(show).join(" or ");
    return { rejected: true, why: `no problem near ${near}:\n${r.error.message}` };
  }
  return { rejected: true };
}

const SOURCES = loadSources();
/** The mutants of every source, each source with its own seeded PRNG. */
function allMutants(): Mutant[] {
  const seen = new Set(SOURCES.map((src) => JSON.stringify(src.json, null, 2)));
  return SOURCES.flatMap((src, i) => mutantsOf(src, new Prng(0x5eed + i), seen));
}

const MUTANTS = allMutants();

Deno.test("every oracle corpus case (tag `oracle`) parses cleanly before it is mutated", () => {
  ok(SOURCES.length >= 5, `expected the oracle corpus, found ${SOURCES.length} cases`);
  for (const src of SOURCES) equal(parseCase(src.text, src.name).ok, true, src.name);
});

Deno.test("mutants are deterministic: the same seeds give the same mutants", () => {
  const again = allMutants();
  deepStrictEqual(again.map((m) => m.text), MUTANTS.map((m) => m.text));
});

Deno.test("hundreds of corrupted cases each get a clean error at a JSON path, none crashes", () => {
  const failures: string[] = [];
  const byKind = new Map<string, number>();
  let erroring = 0;
  let stillValid = 0;
  MUTANTS.forEach((mutant, n) => {
    const label = `mutant-${n}-of-${mutant.source}`;
    const { rejected, why } = tryMutant(mutant, label);
    if (why !== undefined) {
      failures.push(`${label} (${mutant.kind} at ${show(mutant.target)}): ${why}`);
    }
    if (rejected) erroring++;
    else stillValid++;
    const kind = mutant.kind.replace(/:.*/, "");
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
  });
  const summary =
    `${MUTANTS.length} distinct mutants: ${erroring} erroring, ${stillValid} still valid`;
  equal(
    failures.length,
    0,
    `${summary}\n${failures.length} wrong:\n${failures.slice(0, 10).join("\n")}`,
  );
  equal(new Set(MUTANTS.map((m) => m.text)).size, MUTANTS.length, "mutants are distinct");
  ok(MUTANTS.length >= 400, summary);
  ok(erroring >= 200, summary);
  // Every kind of corruption is represented, whatever the PRNG picked.
  for (
    const kind of [
      "delete-required",
      "delete-defaulted",
      "wrong-type",
      "unknown-key",
      "bad-hex",
      "hex-leading-zeros",
      "hex-upper-case",
      "gfn-out-of-range",
      "access-unaligned",
      "invlpg-unaligned",
      "bad-word-index",
      "number-out-of-range",
      "wrong-format",
      "wrong-version",
      "bad-enum",
      "unknown-op",
      "host-event-vcpu",
      "vcpu-not-in-case",
      "control-bit-without-feature",
      "ia32e-without-pae",
      "pcide-outside-ia32e",
      "cr3-above-maxphyaddr",
      "cr3-high-bits-outside-ia32e",
      "duplicate-page",
      "duplicate-slot-id",
      "overlapping-memslots",
      "memslot-ends-above-2^40",
      "stored-lma",
    ]
  ) ok((byKind.get(kind) ?? 0) > 0, `no ${kind} mutant (${summary})`);
  console.log(summary);
});

// ---------------------------------------------------------------------------------------------
// Malformed text and files.

/** Texts that are not a JSON object, derived from one valid case. */
function malformedTexts(text: string, rng: Prng): [string, string][] {
  const last = text.lastIndexOf("}");
  const out: [string, string][] = [
    ["empty file", ""],
    ["blank file", "  \n\t\n"],
    ["top-level array", "[]"],
    ["case inside an array", `[${text}]`],
    ["top-level null", "null"],
    ["top-level number", "1"],
    ["top-level string", '"shadow-mmu-case"'],
    ["top-level boolean", "true"],
    ["lone brace", "{"],
    ["closing brace", "}"],
    ["truncated in half", text.slice(0, text.length >> 1)],
    ["trailing comma", text.slice(0, last).trimEnd() + ",\n}\n"],
    ["trailing comma in an array", text.replace(/\n(\s*)\]/, ",\n$1]")],
    ["comment", `// a case\n${text}`],
    ["single-quoted key", text.replace('"format"', "'format'")],
    ["byte-order mark", `\ufeff${text}`],
    ["NaN", text.replace(/"vcpus": \d+/, '"vcpus": NaN')],
    ["two documents", text + text],
    ["unquoted key", text.replace('"version"', "version")],
  ];
  for (let i = 0; i < 8; i++) {
    const cut = rng.below(last);
    out.push([`truncated at ${cut}`, text.slice(0, cut)]);
  }
  return out;
}

Deno.test("malformed JSON (truncated, trailing comma, empty, array) is a clean error at $", () => {
  let count = 0;
  SOURCES.forEach((src, i) => {
    for (const [what, text] of malformedTexts(src.text, new Prng(0xbad + i))) {
      const label = `${src.name} (${what})`;
      const r = parseCase(text, label);
      equal(cleanErrorProblem(r, label), undefined, label);
      if (r.ok) continue;
      deepStrictEqual(r.error.problems.map((p) => p.path), ["$"], label);
      count++;
    }
  });
  ok(count >= 100, `${count} malformed texts`);
  const empty = parseCase("", "empty.json");
  ok(!empty.ok && /^empty\.json: \$: invalid JSON: /.test(empty.error.message));
  const array = parseCase("[]", "array.json");
  ok(!array.ok && /^array\.json: \$: .*expected object, received array/.test(array.error.message));
});

Deno.test("a __proto__ word index is reported, not silently dropped; errors stay on one line", () => {
  const src = SOURCES.find((s) => Array.isArray(s.json.memory) && s.json.memory.length > 0)!;
  const text = src.text.replace(/"words"\s*:\s*\{/, '"words": { "__proto__": "0x1",');
  const r = parseCase(text, "proto.json");
  ok(!r.ok, "a __proto__ key must not pass");
  deepStrictEqual(r.error.problems.map((p) => p.path), ["$.memory[0].words.__proto__"]);
  const comma = parseCase(src.text.replace(/\}\s*$/, ",\n\n}\n"), "comma.json");
  ok(!comma.ok);
  deepStrictEqual(comma.error.message.split("\n").length, 1, comma.error.message);
});

Deno.test("loadCaseFile reports bad files, and a missing one, under the file's path", async () => {
  await Deno.mkdir(SCRATCH, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: SCRATCH, prefix: "corrupted_input_" });
  try {
    const erroring = MUTANTS.filter((m) => m.expect.kind === "error");
    const sample = erroring.filter((_, i) => i % Math.ceil(erroring.length / 50) === 0);
    const texts: [string, string][] = [
      ...sample.map((m, i): [string, string] => [`mutant-${i}.json`, m.text]),
      ...malformedTexts(SOURCES[0]!.text, new Prng(1)).map(([, t], i): [string, string] => [
        `malformed-${i}.json`,
        t,
      ]),
    ];
    for (const [name, text] of texts) {
      const file = join(dir, name);
      await Deno.writeTextFile(file, text);
      const r = loadCaseFile(file);
      equal(cleanErrorProblem(r, file), undefined, file);
    }
    ok(texts.length >= 50, `${texts.length} files`);

    const missing = join(dir, "no-such-case.json");
    const r = loadCaseFile(missing);
    equal(cleanErrorProblem(r, missing), undefined);
    ok(!r.ok && r.error.problems[0]?.message.startsWith("cannot read file: "));
    const asDir = loadCaseFile(dir);
    equal(cleanErrorProblem(asDir, dir), undefined, "a directory is not a case file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// The initial state the oracle rejects.

Deno.test("a PAE PDPTE with P=1 and a reserved bit: InitialStateError at $.control.cr3", () => {
  const src = SOURCES.find((s) => s.name === "pae/pdpte-edit-needs-reload.json");
  ok(src !== undefined, "the PAE corpus case");
  const cr3 = src.decoded.control.cr3;
  const page = src.json.memory as JsonObject[];
  const pdptIndex = page.findIndex((p) => BigInt(p.gfn as string) === cr3 >> 12n);
  const pdpte0 = BigInt((page[pdptIndex]!.words as JsonObject)["0"] as string);
  equal(pdpte0 & 1n, 1n, "PDPTE0 is present in the corpus case");
  // PAE PDPTE reserved bits: 2:1, 8:5 and MAXPHYADDR (36 here) to 63.
  for (const bit of [1n, 2n, 5n, 6n, 7n, 8n, 36n, 51n, 63n]) {
    for (const present of [true, false]) {
      const word = present ? pdpte0 | (1n << bit) : (pdpte0 & ~1n) | (1n << bit);
      const path = ["memory", pdptIndex, "words", "0"];
      const label = `pdpte0=${hex(word)}`;
      const loaded = parseCase(JSON.stringify(withValue(src.json, path, hex(word))), label);
      ok(loaded.ok, `${label}: the format cannot know PDPTE reserved bits, so it parses`);
      let thrown: unknown;
      try {
        replayCase(loaded.case);
      } catch (e: unknown) {
        thrown = e;
      }
      if (!present) {
        equal(thrown, undefined, `${label}: a non-present PDPTE's other bits are ignored`);
        continue;
      }
      ok(thrown instanceof InitialStateError, `${label}: ${String(thrown)}`);
      equal(thrown.path, "$.control.cr3");
      ok(parsePath(thrown.path) !== undefined);
      ok(thrown.message.includes(`PDPTE0 = ${hex(word)} has reserved bits`), thrown.message);
      ok(!/^\s+at /m.test(thrown.message), "no stack trace in the message");
    }
  }
});
