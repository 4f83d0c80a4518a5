/**
 * Oracle throughput: walks per second for 4-level and 5-level paging, and machine steps (the
 * TLB allowed-outcome model plus commit) per second. Run with `deno task bench`.
 */
import { walkContextOf } from "../../oracles/control_state.ts";
import { ReferenceMachine } from "../../oracles/machine.ts";
import { type Access, walk } from "../../oracles/walk.ts";
import { buildCase, decodeOp, op } from "../_helpers/case_builder.ts";

/** 256 pages mapped at distinct indices on every level, tables from 0x100000 upward. */
function layout(levels: 4 | 5): { memory: [bigint, bigint][]; las: bigint[] } {
  const memory: [bigint, bigint][] = [];
  const tables = new Map<string, bigint>();
  let next = 0x10_0000n;
  const tableFor = (key: string) => {
    let t = tables.get(key);
    if (t === undefined) {
      t = next;
      next += 0x1000n;
      tables.set(key, t);
    }
    return t;
  };
  const root = tableFor("root");
  const las: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    const idx = [i % 3, (i * 5) % 7, (i * 11) % 13, (i * 17) % 19, i].slice(5 - levels);
    let table = root;
    let key = "root";
    let la = 0n;
    idx.forEach((ix, depth) => {
      la |= BigInt(ix) << BigInt(12 + 9 * (levels - 1 - depth));
      const addr = table + BigInt(ix * 8);
      if (depth === levels - 1) {
        memory.push([addr, 0x800_0000n + BigInt(i) * 0x1000n | 0x67n]);
        return;
      }
      key += `/${ix}`;
      const child = tableFor(key);
      if (!memory.some(([a]) => a === addr)) memory.push([addr, child | 0x27n]);
      table = child;
    });
    las.push(la | 8n);
  }
  return { memory, las };
}

for (const levels of [4, 5] as const) {
  const { memory, las } = layout(levels);
  const c = buildCase({ mode: levels === 4 ? "ia32e4" : "ia32e5", cr3: 0x10_0000n, memory });
  const m = new ReferenceMachine(c);
  const ctx = walkContextOf(c.cpu, m.control());
  const read = (addr: bigint, bytes: 4 | 8) => m.memory.read(addr, bytes);
  const accesses: Access[] = las.map((la) => ({
    la,
    kind: "read",
    cpl: 0,
    implicitSupervisor: false,
  }));
  let i = 0;
  Deno.bench(
    `oracle walk, ${levels}-level (fresh walk on current memory)`,
    { group: "walk" },
    () => {
      const r = walk(ctx, accesses[i++ & 255]!, read);
      if (r.kind !== "ok") throw new Error("bench layout is broken");
    },
  );
}

{
  const { memory, las } = layout(4);
  const c = buildCase({ mode: "ia32e4", cr3: 0x10_0000n, memory });
  const ops = las.map((la) => decodeOp(op.load(la)));
  let m = new ReferenceMachine(c);
  let i = 0;
  Deno.bench("oracle machine step, 4-level load (allowed set + commit, 64-step programs)", {
    group: "step",
  }, () => {
    if (i % 64 === 0) m = new ReferenceMachine(c);
    m.step(ops[i++ & 255]!);
  });
}
