/**
 * The case format round-trips: every the corpus tagged `oracle` case parses, `encodeCase` of it re-parses
 * to a deep-equal case, and the encoding is stable text (`encode(parse(encode(c)))` is
 * `encode(c)`). Seeded fast-check properties send random 64-bit values, addresses and gfns
 * through the hex helpers, the `Hex64` codec and whole cases, and get exactly the same bigints
 * back (including those above 2^53, which JSON numbers would round). Named tests pin what the
 * format promises: defaults are filled in (and fresh per parse), hex is decoded whatever its
 * case and leading zeros and encoded lower-case and minimal, `movCr3.noFlush` defaults to false,
 * EFER.LMA is derived rather than stored.
 */
import fc from "fast-check";
import { deepStrictEqual, equal, notStrictEqual, ok, throws } from "node:assert/strict";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { encodeCase, parseCase } from "../../src/corpus/load_case.ts";
import { type Case, CASE_FORMAT, CASE_VERSION } from "../../src/model/case.ts";
import { hex, HEX64_PATTERN, parseHex64, U64_MAX } from "../../src/model/hex.ts";
import { AccessAddress, Gfn, Hex64 } from "../../src/model/op.ts";
import { corpusCases } from "../_helpers/corpus_cases.ts";

const FC = { seed: 42, numRuns: 200 } as const;

function corpus(): { name: string; text: string }[] {
  return corpusCases("oracle").map(({ name, file }) => ({
    name,
    text: readFileSync(file, "utf8"),
  }));
}

/** Parses case text, failing the test with the loader's message if it is not a valid case. */
function parse(text: string, label = "case.json"): Case {
  const r = parseCase(text, label);
  if (!r.ok) throw new Error(r.error.message);
  return r.case;
}

/** The smallest valid case: only the required fields, paging off, no memslots. */
function minimal(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const off = (...names: string[]) => Object.fromEntries(names.map((n) => [n, false]));
  return {
    format: CASE_FORMAT,
    version: CASE_VERSION,
    cpu: {
      maxPhyAddr: 52,
      features: off("nx", "pse", "pse36", "gbPages", "smep", "smap", "pku", "la57", "pcid"),
    },
    control: {
      cr0: off("pg", "wp"),
      cr3: "0x0",
      cr4: off("pse", "pae", "pge", "smep", "smap", "pke", "la57", "pcide"),
      efer: off("lme", "nxe"),
    },
    memslots: [],
    program: [],
    ...extra,
  };
}

function parseJson(json: unknown): Case {
  return parse(JSON.stringify(json));
}

Deno.test("every oracle corpus case (tag `oracle`) parses and its encoding re-parses to a deep-equal case", () => {
  const cases = corpus();
  ok(cases.length >= 5, `expected the oracle corpus, found ${cases.length} cases`);
  for (const { name, text } of cases) {
    const c = parse(text, name);
    deepStrictEqual(parse(encodeCase(c), name), c, name);
  }
});

Deno.test("encoding is stable text: encode(parse(encode(c))) === encode(c)", () => {
  for (const { name, text } of corpus()) {
    const once = encodeCase(parse(text, name));
    equal(encodeCase(parse(once, name)), once, name);
    ok(once.endsWith("}\n") && once.startsWith('{\n  "format": '), name);
  }
});

Deno.test("the committed corpus files are in canonical encoding already", () => {
  for (const { name, text } of corpus()) equal(encodeCase(parse(text, name)), text, name);
});

Deno.test("defaults fill in vcpus, memory, sut, meta, vendor, pkru, rflagsAc and op fields", () => {
  const c = parseJson(minimal({
    memslots: [{ slot: 0, baseGfn: "0x0", npages: 16 }],
    program: [
      { op: "load", la: "0x1000", cpl: 0 },
      { op: "movCr3", cr3: "0x2000" },
      { op: "dirtyLogEnable", slot: 0 },
      { op: "memslotAdd", slot: 1, baseGfn: "0x100", npages: 1 },
      { op: "writeCr0", pg: true },
    ],
  }));
  equal(c.vcpus, 1);
  deepStrictEqual(c.memory, []);
  deepStrictEqual(c.sut, {
    features: { prefetch: true, unsync: true, fastPageFault: true, splitSpte: false },
    inject: [],
  });
  deepStrictEqual(c.meta, { title: "", found: { by: "hand" }, tags: [] });
  equal(c.cpu.vendor, "intel");
  equal(c.control.pkru, 0);
  equal(c.control.rflagsAc, false);
  equal(c.memslots[0]?.readOnly, false);
  deepStrictEqual(c.program, [
    { op: "load", vcpu: 0, la: 0x1000n, cpl: 0 },
    { op: "movCr3", vcpu: 0, cr3: 0x2000n, noFlush: false },
    { op: "dirtyLogEnable", slot: 0, enable: true },
    { op: "memslotAdd", slot: 1, baseGfn: 0x100n, npages: 1, readOnly: false },
    // CR0 bits left out keep their value: they are absent, not defaulted.
    { op: "writeCr0", vcpu: 0, pg: true },
  ]);
  // The encoding writes the defaults out, so the file says everything.
  const encoded = JSON.parse(encodeCase(c));
  equal(encoded.vcpus, 1);
  deepStrictEqual(encoded.sut.inject, []);
  equal(encoded.meta.found.by, "hand");
  equal(encoded.program[1].noFlush, false);
  equal("wp" in encoded.program[4], false);
});

Deno.test("defaults are fresh objects per parse: editing one case leaves the next alone", () => {
  const a = parseJson(minimal());
  a.sut.features.prefetch = false;
  a.sut.inject.push("some-bug");
  a.meta.found.by = "fuzz";
  a.meta.tags.push("edited");
  const b = parseJson(minimal());
  notStrictEqual(a.sut, b.sut);
  notStrictEqual(a.sut.features, b.sut.features);
  notStrictEqual(a.sut.inject, b.sut.inject);
  notStrictEqual(a.meta.found, b.meta.found);
  notStrictEqual(a.meta.tags, b.meta.tags);
  equal(b.sut.features.prefetch, true);
  deepStrictEqual(b.sut.inject, []);
  equal(b.meta.found.by, "hand");
  deepStrictEqual(b.meta.tags, []);
});

Deno.test("64-bit values above 2^53 survive parsing and encoding bit for bit", () => {
  const big = [
    (1n << 53n) + 1n,
    0x8000_0000_0000_0001n,
    0xdead_beef_cafe_f00dn,
    U64_MAX,
  ];
  for (const v of big) ok(BigInt(Number(v)) !== v, `${hex(v)} is not exact as a JSON number`);
  const c = parseJson(minimal({
    memory: [{ gfn: "0xffffffffff", words: Object.fromEntries(big.map((v, i) => [i, hex(v)])) }],
    program: [
      { op: "store", la: "0xfffffffffffffff8", cpl: 3, value: hex(big[0]!) },
      { op: "invlpg", la: hex(U64_MAX) },
      { op: "movCr3", cr3: hex(big[1]!) },
    ],
  }));
  deepStrictEqual(c.memory[0]?.words, { "0": big[0], "1": big[1], "2": big[2], "3": big[3] });
  equal(c.memory[0]?.gfn, (1n << 40n) - 1n);
  deepStrictEqual(c.program[0], {
    op: "store",
    vcpu: 0,
    la: 0xffff_ffff_ffff_fff8n,
    cpl: 3,
    value: big[0],
  });
  deepStrictEqual(c.program[1], { op: "invlpg", vcpu: 0, la: U64_MAX });
  deepStrictEqual(c.program[2], { op: "movCr3", vcpu: 0, cr3: big[1], noFlush: false });
  const text = encodeCase(c);
  for (const v of big) ok(text.includes(`"${hex(v)}"`), `${hex(v)} in the encoding`);
  deepStrictEqual(parse(text), c);
});

Deno.test("hex decodes any letter case and leading zeros; encodes lower-case and minimal", () => {
  const c = parseJson(minimal({
    control: { ...minimal().control as object, cr3: "0x0000000000001000" },
    memory: [{ gfn: "0x00A", words: { "7": "0xABCdef", "8": "0x0" } }],
  }));
  equal(c.control.cr3, 0x1000n);
  equal(c.memory[0]?.gfn, 0xan);
  deepStrictEqual(c.memory[0]?.words, { "7": 0xabcdefn, "8": 0n });
  const encoded = JSON.parse(encodeCase(c));
  equal(encoded.control.cr3, "0x1000");
  deepStrictEqual(encoded.memory, [{ gfn: "0xa", words: { "7": "0xabcdef", "8": "0x0" } }]);
  // Sixteen digits at most, even when the extra ones are zeros.
  const seventeen = minimal({
    control: { ...minimal().control as object, cr3: "0x" + "0".repeat(17) },
  });
  equal(parseCase(JSON.stringify(seventeen), "x").ok, false);
});

Deno.test("movCr3 noFlush: defaults to false, round-trips, format allows it at PCIDE=0", () => {
  const c = parseJson(minimal({
    program: [
      { op: "movCr3", cr3: "0x1000" },
      { op: "movCr3", vcpu: 0, cr3: "0x2000", noFlush: true },
      { op: "movCr3", vcpu: 0, cr3: "0x3000", noFlush: false },
    ],
  }));
  equal(c.control.cr4.pcide, false);
  deepStrictEqual(c.program.map((op) => op.op === "movCr3" && op.noFlush), [false, true, false]);
  // Bit 63 of the operand is reserved with PCIDE=0: that is the oracle's #GP, not a format error.
  const encoded = JSON.parse(encodeCase(c));
  deepStrictEqual(encoded.program.map((op: { noFlush: boolean }) => op.noFlush), [
    false,
    true,
    false,
  ]);
  deepStrictEqual(parse(encodeCase(c)), c);
  const wrong = minimal({ program: [{ op: "movCr3", cr3: "0x1000", noFlush: "yes" }] });
  const r = parseCase(JSON.stringify(wrong), "x");
  ok(!r.ok);
  deepStrictEqual(r.error.problems.map((p) => p.path), ["$.program[0].noFlush"]);
});

Deno.test("EFER.LMA is derived: the encoding has no lma, and an lma key is rejected", () => {
  for (const { name, text } of corpus()) {
    const encoded = JSON.parse(encodeCase(parse(text, name)));
    deepStrictEqual(Object.keys(encoded.control.efer).sort(), ["lme", "nxe"], name);
  }
  const base = minimal();
  const control = base.control as { efer: Record<string, boolean> };
  const withLma = { ...base, control: { ...control, efer: { ...control.efer, lma: false } } };
  const r = parseCase(JSON.stringify(withLma), "x");
  ok(!r.ok);
  deepStrictEqual(r.error.problems.map((p) => p.path), ["$.control.efer"]);
});

Deno.test("hex() writes lower-case minimal 0x form and refuses negatives", () => {
  equal(hex(0n), "0x0");
  equal(hex(0xabcn), "0xabc");
  equal(hex(U64_MAX), "0xffffffffffffffff");
  throws(() => hex(-1n), RangeError);
  for (const bad of ["0x", "0X10", "10", "0x" + "1".repeat(17), "-0x1", " 0x1", "0xg"]) {
    throws(() => parseHex64(bad), SyntaxError, bad);
    equal(HEX64_PATTERN.test(bad), false, bad);
  }
});

// ---------------------------------------------------------------------------------------------
// Properties (seeded).

const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const aboveDoubles = fc.bigInt({ min: (1n << 53n) + 1n, max: U64_MAX });

Deno.test("property: any 64-bit value survives hex, parseHex64 and the Hex64 codec exactly", () => {
  fc.assert(
    fc.property(fc.oneof(u64, aboveDoubles), (v) => {
      const text = hex(v);
      ok(HEX64_PATTERN.test(text));
      equal(text, text.toLowerCase());
      ok(text === "0x0" || !text.startsWith("0x0"), `minimal: ${text}`);
      equal(parseHex64(text), v);
      equal(z.decode(Hex64, text), v);
      equal(z.encode(Hex64, v), text);
      const respelled = "0x" + text.slice(2).toUpperCase().padStart(16, "0");
      equal(parseHex64(respelled), v);
      equal(z.decode(Hex64, respelled), v);
    }),
    FC,
  );
});

Deno.test("property: over-64-bit values, gfns from 2^40, unaligned accesses are rejected", () => {
  fc.assert(
    fc.property(
      fc.bigInt({ min: 1n << 64n, max: 1n << 80n }),
      fc.bigInt({ min: 1n << 40n, max: U64_MAX }),
      u64.filter((la) => (la & 7n) !== 0n),
      (tooBig, bigGfn, unaligned) => {
        equal(Hex64.safeParse(hex(tooBig)).success, false);
        throws(() => parseHex64(hex(tooBig)), SyntaxError);
        equal(Gfn.safeParse(hex(bigGfn)).success, false);
        equal(Gfn.safeParse(hex(bigGfn & ((1n << 40n) - 1n))).success, true);
        equal(AccessAddress.safeParse(hex(unaligned)).success, false);
        equal(AccessAddress.safeParse(hex(unaligned & ~7n)).success, true);
      },
    ),
    FC,
  );
});

Deno.test("property: random addresses, values and gfns round-trip through a whole case", () => {
  const la = fc.bigInt({ min: 0n, max: U64_MAX >> 3n }).map((x) => x << 3n);
  const gfn = fc.bigInt({ min: 0n, max: (1n << 40n) - 1n });
  const word = fc.integer({ min: 0, max: 511 });
  const pkru = fc.integer({ min: 0, max: 0xffff_ffff });
  fc.assert(
    fc.property(la, fc.oneof(u64, aboveDoubles), gfn, word, u64, pkru, (a, v, g, w, cr3, k) => {
      const c = parseJson(minimal({
        memory: [{ gfn: hex(g), words: { [w]: hex(v) } }],
        program: [
          { op: "store", vcpu: 0, la: hex(a), cpl: 3, value: hex(v) },
          { op: "invlpg", vcpu: 0, la: hex(a | 1n) },
          { op: "movCr3", vcpu: 0, cr3: hex(cr3), noFlush: false },
          { op: "hostUnmap", gfn: hex(g), npages: 1 },
          { op: "writePkru", vcpu: 0, pkru: k },
        ],
      }));
      deepStrictEqual(c.memory, [{ gfn: g, words: { [String(w)]: v } }]);
      deepStrictEqual(c.program, [
        { op: "store", vcpu: 0, la: a, cpl: 3, value: v },
        { op: "invlpg", vcpu: 0, la: a | 1n },
        { op: "movCr3", vcpu: 0, cr3, noFlush: false },
        { op: "hostUnmap", gfn: g, npages: 1 },
        { op: "writePkru", vcpu: 0, pkru: k },
      ]);
      const text = encodeCase(c);
      ok(text.includes(`"value": "${hex(v)}"`));
      deepStrictEqual(parse(text), c);
      equal(encodeCase(parse(text)), text);
    }),
    FC,
  );
});
