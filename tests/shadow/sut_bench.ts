/**
 * SUT throughput: guest steps per second of the shadow MMU on the simulated CPU, for a
 * fault-heavy program (every access takes a shadow page fault: 256 pages, each touched once
 * on a fresh VM with prefetch off) and a
 * TLB-hit-heavy program (8 pages loaded over and over). Each bench iteration runs a whole
 * program on a fresh VM; divide the program length by the time per iteration for steps/s
 * (printed once per bench at startup). Run with `deno task bench`.
 */
import { ShadowMachine } from "../../src/shadow/machine.ts";
import type { Case } from "../../src/model/case.ts";
import { buildCase, op } from "../_helpers/case_builder.ts";

/** 4-level tables mapping 256 pages at LA 0x40000000 + i*4K to gfn 0x800 + i. */
function layout(): [bigint, bigint][] {
  const memory: [bigint, bigint][] = [
    [0x1000n, 0x2067n], // PML4[0] -> PDPT
    [0x2008n, 0x3067n], // PDPT[1] -> PD (LA 0x40000000)
    [0x3000n, 0x4067n], // PD[0] -> PT
  ];
  for (let i = 0; i < 256; i++) {
    memory.push([0x4000n + BigInt(i * 8), (0x800n + BigInt(i)) << 12n | 0x67n]);
  }
  return memory;
}

const LA = (i: number) => 0x4000_0000n + BigInt(i) * 0x1000n;

/** 256 loads, each to a page not yet mapped: every one takes a #PF exit and FNAME(fetch). */
const faultHeavy: Case = buildCase({
  mode: "ia32e4",
  memory: layout(),
  features: { pku: false },
  program: Array.from({ length: 256 }, (_, i) => op.load(LA((i * 37) % 256) + 8n)),
  // Prefetch off: otherwise each fault maps its 7 neighbours and most loads hit.
});
faultHeavy.sut.features = { ...faultHeavy.sut.features, prefetch: false };

/** 8 pages faulted in once, then 1016 loads that hit the hardware TLB. */
const tlbHeavy: Case = buildCase({
  mode: "ia32e4",
  memory: layout(),
  features: { pku: false },
  program: Array.from({ length: 1024 }, (_, i) => op.load(LA(i % 8) + 16n)),
});

function run(c: Case): number {
  const m = new ShadowMachine(c, { logEvents: false });
  for (const o of c.program) m.step(o);
  return m.kvm.stats.counters.pf_taken;
}

// Sanity (once, at load): the programs do what their names say.
const faults = run(faultHeavy);
const hits = (() => {
  const m = new ShadowMachine(tlbHeavy, { logEvents: false });
  for (const o of tlbHeavy.program) m.step(o);
  return m.kvm.stats.counters.hw_tlb_hits;
})();
console.log(
  `fault-heavy: ${faultHeavy.program.length} steps, ${faults} shadow page faults; ` +
    `TLB-hit-heavy: ${tlbHeavy.program.length} steps, ${hits} hardware TLB hits`,
);

Deno.bench({
  name: `SUT fault-heavy program (${faultHeavy.program.length} steps, a #PF exit each)`,
  group: "sut",
  fn: () => void run(faultHeavy),
});
Deno.bench({
  name: `SUT TLB-hit-heavy program (${tlbHeavy.program.length} steps)`,
  group: "sut",
  baseline: true,
  fn: () => void run(tlbHeavy),
});
