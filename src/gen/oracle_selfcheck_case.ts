/**
 * Random cases for the oracle's self-check (the interim `fuzz` job until the fast-check fuzzer
 * lands): a page-table tree in any guest mode with its own tables mapped into the guest's address
 * space, and a program of accesses, page-table stores and control writes.
 *
 * In the `strict` discipline every store and every control write is followed by a MOV CR3 (with
 * CR4.PGE=0 and no PCIDs that flushes every cached translation), so the TLB model must allow
 * exactly one outcome per access. `relaxed` omits the flushes.
 *
 * @module
 */
import { Case, type CaseJson } from "../model/case.ts";
import { hex } from "../model/hex.ts";
import { Prng } from "./prng.ts";

/** The generator's version, recorded in every case it makes. */
export const SELFCHECK_GENERATOR = "oracle-selfcheck@1";

type Mode = "disabled" | "legacy32" | "pae" | "ia32e4" | "ia32e5";
const MODES: readonly Mode[] = ["disabled", "legacy32", "pae", "ia32e4", "ia32e5"];

interface Shape {
  levels: number[]; // LA shift of each level, top first (PAE: the PDPT level first)
  bytes: 4 | 8;
  leafLevels: number[]; // shifts where PS=1 may make a leaf
  laBits: number;
}

const SHAPES: Record<Exclude<Mode, "disabled">, Shape> = {
  legacy32: { levels: [22, 12], bytes: 4, leafLevels: [22], laBits: 32 },
  pae: { levels: [30, 21, 12], bytes: 8, leafLevels: [21], laBits: 32 },
  ia32e4: { levels: [39, 30, 21, 12], bytes: 8, leafLevels: [30, 21], laBits: 47 },
  ia32e5: { levels: [48, 39, 30, 21, 12], bytes: 8, leafLevels: [30, 21], laBits: 56 },
};

/** Makes one random case. */
export function selfCheckCase(seed: number, discipline: "strict" | "relaxed"): Case {
  const rng = new Prng(seed);
  const mode = rng.pick(MODES);
  const maxPhyAddr = mode === "legacy32" ? 36 + rng.below(5) : 36 + rng.below(17);
  const memory = new Map<bigint, bigint>(); // 8-byte word address -> value
  const put = (addr: bigint, value: bigint, bytes: 4 | 8) => {
    const word = addr & ~7n;
    const old = memory.get(word) ?? 0n;
    if (bytes === 8) memory.set(word, value);
    else {
      const shift = (addr & 4n) === 0n ? 0n : 32n;
      memory.set(word, (old & ~(0xffff_ffffn << shift)) | ((value & 0xffff_ffffn) << shift));
    }
  };
  const get = (addr: bigint, bytes: 4 | 8) => {
    const w = memory.get(addr & ~7n) ?? 0n;
    return bytes === 8 ? w : (addr & 4n) === 0n ? w & 0xffff_ffffn : w >> 32n;
  };
  let nextPage = 0x10n;
  const page = () => (nextPage++) << 12n;
  const tables: bigint[] = [];
  const dataFrames = [page(), page(), page(), page()];
  const nxe = mode !== "legacy32" && mode !== "disabled" && rng.chance(0.7);
  const flags = (leaf: boolean, shape: Shape): bigint => {
    let f = 1n;
    if (rng.chance(0.8)) f |= 2n;
    if (rng.chance(0.7)) f |= 4n;
    if (rng.chance(0.6)) f |= 0x20n;
    if (leaf && rng.chance(0.5)) f |= 0x40n;
    if (nxe && shape.bytes === 8 && rng.chance(0.1)) f |= 1n << 63n;
    // Now and then one odd bit: reserved in some modes and levels, ignored or meaningful in others.
    const odd = [7, 8, 13, 20, 51, 62, maxPhyAddr].filter((b) => b < shape.bytes * 8);
    if (rng.chance(0.03)) f |= 1n << BigInt(rng.pick(odd));
    return f;
  };
  const las: bigint[] = [];
  const cr3 = page();
  let map: (la: bigint, frame: bigint) => void = () => {};
  if (mode !== "disabled") {
    const shape = SHAPES[mode];
    tables.push(cr3);
    if (mode === "pae") {
      for (let i = 0; i < 4; i++) if (rng.chance(0.8)) put(cr3 + BigInt(i * 8), page() | 1n, 8);
    }
    map = (la: bigint, frame: bigint) => {
      let table = cr3;
      shape.levels.forEach((shift, depth) => {
        if (table < 0n) return;
        const index = (la >> BigInt(shift)) &
          ((1n << BigInt(shape.bytes === 4 ? 10 : depth === 0 && mode === "pae" ? 2 : 9)) - 1n);
        const at = table + index * BigInt(shape.bytes);
        const last = depth === shape.levels.length - 1;
        const entry = get(at, shape.bytes);
        if (mode === "pae" && depth === 0) {
          table = (entry & 1n) === 1n ? entry & ~0xfffn & ((1n << 52n) - 1n) : -1n;
          if (table >= 0n && !tables.includes(table)) tables.push(table);
          return;
        }
        if ((entry & 1n) === 1n) {
          table = (entry & 0x80n) !== 0n && !last
            ? -1n
            : entry & ~0xfffn & ((1n << BigInt(shape.bytes * 8 - 12)) - 1n);
          if (last) table = -1n;
          return;
        }
        const large = !last && shape.leafLevels.includes(shift) && rng.chance(0.15);
        if (last || large) {
          const base = large ? (frame >> BigInt(shift)) << BigInt(shift) : frame;
          put(at, base | flags(true, shape) | (large ? 0x80n : 0n), shape.bytes);
          table = -1n;
          return;
        }
        const next = page();
        tables.push(next);
        put(at, next | flags(false, shape), shape.bytes);
        table = next;
      });
    };
    const top = 1n << BigInt(shape.laBits);
    for (let i = 0; i < 4 + rng.below(5); i++) {
      const la = (BigInt(rng.next()) << 20n | BigInt(rng.next())) % top & ~7n;
      las.push(la);
      map(la, rng.pick(dataFrames));
    }
    // Map every table page into the address space (a self-map region) so stores can edit them.
    const window = (BigInt(rng.next()) << 21n) % top & ~0x1f_ffffn;
    tables.slice().forEach((t, i) => {
      const la = window + BigInt(i) * 0x1000n;
      map(la, t);
      las.push(la + BigInt(rng.below(512)) * 8n); // some word of that table
    });
  } else {
    for (const f of dataFrames) las.push(f + BigInt(rng.below(512) * 8));
  }
  const program: unknown[] = [];
  const flush = () => {
    if (discipline === "strict" && mode !== "disabled") {
      program.push({ op: "movCr3", cr3: hex(cr3) });
    }
  };
  const steps = 16 + rng.below(48);
  for (let i = 0; i < steps; i++) {
    const la = hex(rng.pick(las));
    const cpl = rng.chance(0.5) ? 3 : 0;
    const r = rng.below(100);
    if (r < 30) program.push({ op: "load", la, cpl });
    else if (r < 40) program.push({ op: "fetch", la, cpl });
    else if (r < 70) {
      const frame = rng.pick([...tables, ...dataFrames]);
      const value = rng.chance(0.7)
        ? frame | 0x7n | (rng.chance(0.5) ? 0x60n : 0n)
        : BigInt(rng.next());
      program.push({ op: "store", la, cpl, value: hex(value) });
      flush();
    } else if (r < 76) program.push({ op: "invlpg", la });
    else if (r < 82) {
      program.push({ op: "writeCr0", wp: rng.chance(0.5) });
      flush();
    } else if (r < 90) {
      program.push({ op: "writeCr4", [rng.pick(["smep", "smap"])]: rng.chance(0.5) });
      flush();
    } else if (r < 94 && mode !== "legacy32" && mode !== "disabled") {
      program.push({ op: "writeEfer", nxe: rng.chance(0.5) });
      flush();
    } else if (r < 97) program.push({ op: "writeRflagsAc", ac: rng.chance(0.5) });
    else if (mode === "ia32e4" || mode === "ia32e5") {
      program.push({ op: "writeCr4", pke: rng.chance(0.5) }, { op: "writePkru", pkru: rng.next() });
      flush();
    }
  }
  const pages = new Map<bigint, Record<string, string>>();
  for (const [addr, value] of [...memory].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (value === 0n) continue;
    const words = pages.get(addr >> 12n) ?? {};
    words[String(Number((addr >> 3n) & 511n))] = hex(value);
    pages.set(addr >> 12n, words);
  }
  const lme = mode === "ia32e4" || mode === "ia32e5";
  const json: CaseJson = {
    format: "shadow-mmu-case",
    version: 1,
    cpu: {
      maxPhyAddr,
      features: {
        nx: true,
        pse: true,
        pse36: true,
        gbPages: rng.chance(0.8),
        smep: true,
        smap: true,
        pku: true,
        la57: true,
        pcid: true,
      },
    },
    control: {
      cr0: { pg: mode !== "disabled", wp: rng.chance(0.7) },
      cr3: hex(cr3),
      cr4: {
        pse: mode === "legacy32" && rng.chance(0.8),
        pae: mode === "pae" || lme,
        pge: false,
        smep: false,
        smap: false,
        pke: false,
        la57: mode === "ia32e5",
        pcide: false,
      },
      efer: { lme, nxe },
    },
    memory: [...pages].map(([gfn, words]) => ({ gfn: hex(gfn), words })),
    memslots: [{ slot: 0, baseGfn: "0x0", npages: Number(nextPage) + 16 }],
    program: program as CaseJson["program"],
    meta: {
      title: `oracle self-check ${discipline} seed ${seed}`,
      found: { by: "fuzz", seed: String(seed), generator: SELFCHECK_GENERATOR },
      tags: [discipline],
    },
  };
  return Case.parse(json);
}
