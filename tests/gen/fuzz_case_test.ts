/**
 * Health of the fuzz generator: validity, determinism, the strict discipline, and a coverage
 * census of 600 seeded cases per discipline, each fact found by walking the case's own page
 * tables here (not by trusting the generator's tags).
 *
 * Generation speed, measured once (not asserted): 0.3-0.45 ms per case through `fuzzCase`, of
 * which about half is `Case.parse` validating the JSON (Deno 2, one core).
 */
import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import fc from "fast-check";
import { encodeCase, parseCase } from "../../src/corpus/load_case.ts";
import {
  FUZZ_GENERATOR,
  fuzzCase,
  fuzzCaseArbitrary,
  type FuzzGenOptions,
  GUEST_MODES,
} from "../../src/gen/fuzz_case.ts";
import type { Case } from "../../src/model/case.ts";
import { OP_KINDS } from "../../src/model/op.ts";

const SAMPLES = 600;
const DISCIPLINES = ["strict", "relaxed"] as const;

/** The guest mode a case starts in, from its control state. */
function modeOf(c: Case): string {
  const k = c.control;
  if (!k.cr0.pg) return "disabled";
  if (k.efer.lme) return k.cr4.la57 ? "ia32e5" : "ia32e4";
  if (k.cr4.pae) return "pae";
  return k.cr4.pse ? "legacy32-pse" : "legacy32";
}

/** What one case's initial page tables hold, found by walking them from every CR3 it loads. */
interface Census {
  mode: string;
  /** "2M", "4M", "1G" for present large leaves at a level where the mode maps one. */
  large: Set<string>;
  /** A table referenced by at least two distinct present non-leaf entries. */
  shared: boolean;
  /** A present 4 KiB leaf maps a page that is one of the walked tables. */
  selfMapped: boolean;
  /** A present entry points at a gfn outside every initial memslot. */
  mmio: boolean;
  /** A present entry has an address bit at or above MAXPHYADDR (a reserved bit). */
  highBit: boolean;
  /** A non-zero entry with P=0. */
  nonPresent: boolean;
  /** An entry pointing at the table that holds it (a recursive self-map slot). */
  selfSlot: boolean;
  roots: number;
  /** A store whose address reaches a walked table in the initial tables (a page-table edit). */
  tableStore: boolean;
  /** Fetches, before any store or memslot op, that reach RAM a program op removes, or MMIO. */
  unsafeFetches: number;
}

function census(c: Case): Census {
  const mode = modeOf(c);
  const out: Census = {
    mode,
    large: new Set(),
    shared: false,
    selfMapped: false,
    mmio: false,
    highBit: false,
    nonPresent: false,
    selfSlot: false,
    roots: 0,
    tableStore: false,
    unsafeFetches: 0,
  };
  const cr3s = new Set([
    c.control.cr3,
    ...c.program.flatMap((op) => op.op === "movCr3" ? [op.cr3] : []),
  ]);
  out.roots = cr3s.size;
  if (mode === "disabled") return out;
  const words = new Map(c.memory.map((p) => [p.gfn, p.words]));
  const inSlot = (gfn: bigint) =>
    c.memslots.some((s) => gfn >= s.baseGfn && gfn < s.baseGfn + BigInt(s.npages));
  const bytes = mode.startsWith("legacy32") ? 4 : 8;
  const top = { "legacy32": 2, "legacy32-pse": 2, pae: 3, ia32e4: 4, ia32e5: 5 }[mode]!;
  const entry = (gfn: bigint, offset: number): bigint => {
    const w = BigInt(words.get(gfn)?.[String(offset >> 3)] ?? 0n);
    return bytes === 8 ? w : (offset & 4) === 0 ? w & 0xffff_ffffn : w >> 32n;
  };
  const addrMask = bytes === 4 ? 0xffff_f000n : 0x000f_ffff_ffff_f000n;
  const refs = new Map<bigint, Set<string>>();
  const tables = new Set<bigint>();
  const leaves4k: bigint[] = [];
  const seen = new Set<string>();
  const walk = (gfn: bigint, base: number, level: number, count: number) => {
    const key = `${gfn}:${base}:${level}`;
    if (seen.has(key)) return;
    seen.add(key);
    tables.add(gfn);
    for (let i = 0; i < count; i++) {
      const e = entry(gfn, base + i * bytes);
      if (e === 0n) continue;
      if ((e & 1n) === 0n) {
        out.nonPresent = true;
        continue;
      }
      const target = (e & addrMask) >> 12n;
      if (bytes === 8 && (e & addrMask) >> BigInt(c.cpu.maxPhyAddr) !== 0n) out.highBit = true;
      if (!inSlot(target)) out.mmio = true;
      const pdpte = mode === "pae" && level === 3;
      const ps = level > 1 && !pdpte && (e & 0x80n) !== 0n && (bytes === 8 || c.control.cr4.pse);
      if (ps) {
        if (level === 2) out.large.add(bytes === 4 ? "4M" : mode === "pae" ? "2M-pae" : "2M");
        if (level === 3 && c.cpu.features.gbPages) out.large.add("1G");
        continue;
      }
      if (level === 1) {
        leaves4k.push(target);
        continue;
      }
      if (target === gfn) out.selfSlot = true;
      const from = refs.get(target) ?? new Set<string>();
      from.add(`${gfn}:${base + i * bytes}`);
      refs.set(target, from);
      walk(target, 0, level - 1, bytes === 4 ? 1024 : 512);
    }
  };
  for (const cr3 of cr3s) {
    if (mode === "pae") walk((cr3 & 0xffff_f000n) >> 12n, Number(cr3 & 0xfe0n), 3, 4);
    else walk((cr3 & addrMask) >> 12n, 0, top, bytes === 4 ? 1024 : 512);
  }
  out.shared = [...refs.values()].some((s) => s.size >= 2);
  out.selfMapped = leaves4k.some((gfn) => tables.has(gfn));

  // Where an access goes in the initial tables (rights and reserved bits ignored).
  const translate = (cr3: bigint, la: bigint): bigint | null => {
    let level = top;
    let table = (cr3 & addrMask) >> 12n;
    let base = 0;
    if (mode === "pae") {
      const pdpte = entry(
        (cr3 & 0xffff_f000n) >> 12n,
        Number(cr3 & 0xfe0n) + Number((la >> 30n) & 3n) * 8,
      );
      if ((pdpte & 1n) === 0n) return null;
      table = (pdpte & addrMask) >> 12n;
      level = 2;
    }
    for (;; level--) {
      const shift = BigInt(12 + (level - 1) * (bytes === 4 ? 10 : 9));
      const index = Number((la >> shift) & (bytes === 4 ? 0x3ffn : 0x1ffn));
      const e = entry(table, base + index * bytes);
      if ((e & 1n) === 0n) return null;
      const frame = (e & addrMask) >> 12n;
      if (level === 1) return frame;
      if ((e & 0x80n) !== 0n && (bytes === 8 || c.control.cr4.pse)) {
        const pages = 1n << (shift - 12n);
        return frame - (frame % pages) + ((la >> 12n) % pages);
      }
      table = frame;
      base = 0;
    }
  };
  const removed = new Set(c.program.flatMap((op) => (op.op === "memslotRemove" ? [op.slot] : [])));
  const safe = (gfn: bigint) =>
    c.memslots.some((s) =>
      !removed.has(s.slot) && gfn >= s.baseGfn && gfn < s.baseGfn + BigInt(s.npages)
    );
  const cr3 = Array<bigint>(c.vcpus).fill(c.control.cr3);
  let pristine = true;
  for (const op of c.program) {
    if (op.op === "movCr3") cr3[op.vcpu] = op.cr3;
    if (op.op === "memslotAdd" || op.op === "memslotRemove") pristine = false;
    if (op.op !== "store" && op.op !== "fetch") continue;
    const gfn = translate(cr3[op.vcpu]!, op.la);
    if (op.op === "store") {
      if (gfn !== null && tables.has(gfn)) out.tableStore = true;
      pristine = false;
    } else if (pristine && gfn !== null && !safe(gfn)) out.unsafeFetches++;
  }
  return out;
}

/**
 * Checks the strict discipline on a program: after a store (any vCPU), a control-register write
 * or a memslot change, each vCPU concerned flushes (MOV CR3 without no-flush while CR4.PGE=0, or
 * a CR4.PGE toggle) before its next access. Returns the first violation, or null.
 */
function strictViolation(c: Case): string | null {
  if (!c.control.cr0.pg) return null;
  const pending = Array<boolean>(c.vcpus).fill(false);
  const pge = Array<boolean>(c.vcpus).fill(c.control.cr4.pge);
  for (const [i, op] of c.program.entries()) {
    switch (op.op) {
      case "load":
      case "fetch":
      case "store":
        if (pending[op.vcpu]) return `step ${i + 1}: ${op.op} on vCPU ${op.vcpu} without a flush`;
        if (op.op === "store") pending.fill(true);
        break;
      case "movCr3":
        if (!pge[op.vcpu] && !op.noFlush) pending[op.vcpu] = false;
        break;
      case "writeCr4":
        if (op.pge !== undefined && op.pge !== pge[op.vcpu]) {
          pge[op.vcpu] = op.pge;
          pending[op.vcpu] = false;
        } else pending[op.vcpu] = true;
        break;
      case "writeCr0":
      case "writeEfer":
        pending[op.vcpu] = true;
        break;
      case "memslotAdd":
      case "memslotRemove":
        pending.fill(true);
        break;
      default:
        break;
    }
  }
  return null;
}

/** The page-table facts and op kinds of SAMPLES cases of one discipline. */
function sample(options: FuzzGenOptions) {
  const cases = Array.from({ length: SAMPLES }, (_, seed) => fuzzCase(seed, options));
  return { cases, facts: cases.map(census) };
}

const samples = new Map(DISCIPLINES.map((d) => [d, sample({ discipline: d })]));

for (const discipline of DISCIPLINES) {
  Deno.test(`fuzzCase() makes valid ${discipline} cases that survive a JSON round trip`, () => {
    const { cases } = samples.get(discipline)!;
    for (const [seed, c] of cases.entries()) {
      const text = encodeCase(c);
      const back = parseCase(text, `seed ${seed}`);
      ok(back.ok, back.ok ? "" : back.error.message);
      equal(encodeCase(back.case), text);
      deepStrictEqual(c.meta.found, { by: "fuzz", seed: String(seed), generator: FUZZ_GENERATOR });
      ok(c.meta.tags.includes(`mode:${modeOf(c)}`), `seed ${seed}: tags ${c.meta.tags}`);
      ok(c.meta.tags.includes(`discipline:${discipline}`));
      deepStrictEqual(c.sut.inject, []);
      equal(c.cpu.features.pku, false);
      equal(c.control.cr4.pke, false);
      ok(c.program.every((op) => op.op !== "writePkru" && !(op.op === "writeCr4" && op.pke)));
      ok(c.memory.every((p) => p.gfn < 1n << 20n), `seed ${seed}: a gfn at or above 2^20`);
      ok(c.memslots.every((s) => s.baseGfn + BigInt(s.npages) <= 1n << 20n));
    }
  });

  Deno.test(`fuzzCase() reaches every mode, op kind and layout feature (${discipline})`, () => {
    const { cases, facts } = samples.get(discipline)!;
    const count = (pred: (f: Census, c: Case) => boolean) =>
      facts.filter((f, i) => pred(f, cases[i]!)).length;
    const atLeast = (name: string, n: number, min: number) => {
      ok(n >= min, `${discipline}: ${name} in ${n} of ${SAMPLES} cases, want at least ${min}`);
    };
    for (const mode of GUEST_MODES) atLeast(`mode ${mode}`, count((f) => f.mode === mode), 60);
    for (const kind of OP_KINDS) {
      const n = count((_, c) => c.program.some((op) => op.op === kind));
      if (kind === "writePkru") equal(n, 0, "writePkru is never generated");
      else atLeast(`op ${kind}`, n, 20);
    }
    atLeast("2 MiB page (PAE)", count((f) => f.large.has("2M-pae")), 15);
    atLeast("2 MiB page (IA-32e)", count((f) => f.large.has("2M")), 15);
    atLeast("4 MiB page", count((f) => f.large.has("4M")), 15);
    atLeast("1 GiB page", count((f) => f.large.has("1G")), 15);
    atLeast("shared table", count((f) => f.shared), 200);
    atLeast("self-mapped table", count((f) => f.selfMapped), 200);
    atLeast("entry to an MMIO gfn", count((f) => f.mmio), 60);
    atLeast("address bit >= MAXPHYADDR", count((f) => f.highBit), 10);
    atLeast("non-present entry", count((f) => f.nonPresent), 60);
    atLeast("recursive self-map slot", count((f) => f.selfSlot), 150);
    atLeast("store into a page table", count((f) => f.tableStore), 250);
    equal(count((f) => f.unsafeFetches > 0), 0, "a fetch from MMIO or removable RAM");
    atLeast("2+ CR3 roots", count((f) => f.roots >= 2), 150);
    atLeast("2 vCPUs", count((_, c) => c.vcpus === 2), 80);
    atLeast("MAXPHYADDR > 46", count((_, c) => c.cpu.maxPhyAddr > 46), 20);
    atLeast("RFLAGS.AC set", count((_, c) => c.control.rflagsAc), 100);
    atLeast("CR0.WP clear", count((_, c) => !c.control.cr0.wp), 60);
    atLeast("CR4.PCIDE set", count((_, c) => c.control.cr4.pcide), 10);
    if (discipline === "relaxed") {
      atLeast(
        "no-flush MOV CR3",
        count((_, c) => c.program.some((op) => op.op === "movCr3" && op.noFlush)),
        5,
      );
    }
    ok(count((_, c) => c.meta.tags.includes(`discipline:${discipline}`)) === SAMPLES);
  });
}

Deno.test("fuzzCase() inserts the strict discipline's flushes, and relaxed cases do without", () => {
  for (const c of samples.get("strict")!.cases) {
    equal(strictViolation(c), null, `seed ${c.meta.found.seed}`);
  }
  const loose = samples.get("relaxed")!.cases.filter((c) => strictViolation(c) !== null);
  ok(loose.length > SAMPLES / 2, `only ${loose.length} relaxed cases skip a flush`);
});

Deno.test("fuzzCase() gives the same case for the same seed and options", () => {
  for (const seed of [0, 1, 42, 999, 2 ** 31 + 5, -3]) {
    for (const discipline of DISCIPLINES) {
      const options = { discipline, inject: ["invlpg_no_sync"], maxSteps: 30 } as const;
      equal(encodeCase(fuzzCase(seed, options)), encodeCase(fuzzCase(seed, { ...options })));
    }
  }
  equal(
    encodeCase(fc.sample(fuzzCaseArbitrary({ discipline: "strict" }), { seed: 5, numRuns: 3 })[2]!),
    encodeCase(fc.sample(fuzzCaseArbitrary({ discipline: "strict" }), { seed: 5, numRuns: 3 })[2]!),
  );
});

Deno.test("fuzzCase() honours modes, inject and maxSteps", () => {
  for (let seed = 0; seed < 50; seed++) {
    const c = fuzzCase(seed, {
      discipline: "relaxed",
      modes: ["pae"],
      inject: ["invlpg_no_sync"],
      maxSteps: 5,
    });
    equal(modeOf(c), "pae");
    deepStrictEqual(c.sut.inject, ["invlpg_no_sync"]);
    // A gene resolves to at most 5 ops (a PTE store with a touch before, a round trip and a
    // touch after).
    ok(c.program.length <= 5 * 5, `seed ${seed}: ${c.program.length} ops`);
    const none = fuzzCase(seed, { discipline: "relaxed", modes: ["pae"], maxSteps: 0 });
    equal(none.program.length, 0);
  }
  throws(() => fuzzCaseArbitrary({ discipline: "strict", modes: [] }), RangeError);
  throws(() => fuzzCaseArbitrary({ discipline: "strict", maxSteps: -1 }), RangeError);
  throws(() => fuzzCase(0.5, { discipline: "strict" }), RangeError);
});

Deno.test("property: fuzzCaseArbitrary() shrinks a case with a fetch to a one-op program", () => {
  const r = fc.check(
    fc.property(
      fuzzCaseArbitrary({ discipline: "strict" }),
      (c) => !c.program.some((op) => op.op === "fetch"),
    ),
    { seed: 7, numRuns: 200 },
  );
  ok(r.failed && r.counterexample);
  const [c] = r.counterexample;
  deepStrictEqual(c.program.map((op) => op.op), ["fetch"]);
  equal(c.memslots.length > 0, true);
});
