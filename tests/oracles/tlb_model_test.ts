/**
 * Unit tests of the TLB model (spec §6): which stale translations and spurious faults the
 * architecture allows, and that invalidations take them away.
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import { ReferenceMachine } from "../../oracles/machine.ts";
import {
  ADDR4,
  buildCase,
  type CaseSpec,
  decodeOp,
  LA4,
  type Mem,
  op,
  tables4,
} from "../_helpers/case_builder.ts";
import {
  allowed,
  allowedNext,
  PDE_VIA,
  PTE_VIA,
  run,
  selfMappedMachine,
} from "../_helpers/oracle_machine.ts";

Deno.test("TLB model: a PTE frame change without INVLPG allows the old or the new frame, nothing else", () => {
  const m = selfMappedMachine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x6008 value=0x0",
  ]);
});

Deno.test("TLB model: after INVLPG of the address only the new translation is allowed", () => {
  const m = selfMappedMachine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n), op.invlpg(LA4));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: after a flushing MOV CR3 only the new translation is allowed", () => {
  const m = selfMappedMachine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n), op.movCr3(0x1000n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: only values in memory after the last flush can be stale", () => {
  // All entries already have A=1, so a speculative walk may have cached the old PTE between the
  // MOV CR3 and the change without any observable write: the old frame is allowed.
  const accessed = { memory: tables4({ PML4: 0x20n, PDPT: 0x20n, PD: 0x20n, PT: 0x20n }) };
  const m = selfMappedMachine(accessed);
  run(m, op.movCr3(0x1000n), op.store(PTE_VIA, 0x6067n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x6008 value=0x0",
  ]);
  // A value that was in memory only before the flush is gone.
  const n = selfMappedMachine(accessed);
  run(n, op.store(PTE_VIA, 0x6067n), op.movCr3(0x1000n));
  deepStrictEqual(allowed(n.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
  // With A=0 in the upper levels no walk can have happened since the flush: only the new frame.
  const o = selfMappedMachine();
  run(o, op.movCr3(0x1000n), op.store(PTE_VIA, 0x6067n));
  deepStrictEqual(allowed(o.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: a PTE present 0->1 must take effect at once (no negative caching)", () => {
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x5006n]] }); // PT[1] not present
  const first = run(m, op.load(LA4));
  deepStrictEqual(allowed(first), ["#PF ec=0x0 cr2=0x40201008"]);
  run(m, op.store(PTE_VIA, 0x5067n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x5008 value=0x0"]);
});

Deno.test("TLB model: a #PF invalidates the faulting page, so a spurious fault happens at most once", () => {
  const m = selfMappedMachine();
  // Cache a read-only translation, then make the page writable without invalidating.
  run(m, op.store(PTE_VIA, 0x5065n), op.invlpg(LA4), op.load(LA4), op.store(PTE_VIA, 0x5067n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.store(LA4, 1n)))), [
    "#PF ec=0x3 cr2=0x40201008",
    "ok gpa=0x5008",
  ]);
  const spurious = m.allowed(decodeOp(op.store(LA4, 1n)));
  m.commit(spurious, spurious.outcomes.findIndex((o) => o.observation.kind === "pf"));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.store(LA4, 1n)))), ["ok gpa=0x5008"]);
});

Deno.test("TLB model: a #PF on one page leaves another page's TLB entry alone", () => {
  const other = 0x4020_0008n; // PT[0], not present: faults
  const m = selfMappedMachine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n), op.load(other));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x6008 value=0x0",
  ]);
});

Deno.test("TLB model: global pages survive a non-global flush, and a CR4.PGE toggle removes them", () => {
  const spec: Partial<CaseSpec> = { cr4: { pge: true }, memory: [[ADDR4.PT, 0x5107n]] };
  const m = selfMappedMachine(spec);
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6167n), op.movCr3(0x1000n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x6008 value=0x0",
  ]);
  run(m, op.writeCr4({ pge: false }), op.writeCr4({ pge: true }));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: G in a non-leaf entry does not make a global page", () => {
  const m = selfMappedMachine({ cr4: { pge: true }, memory: [[ADDR4.PD, 0x4107n]] });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6067n), op.movCr3(0x1000n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: INVLPG of a global page removes it whatever the PCID", () => {
  const m = selfMappedMachine({ cr4: { pge: true }, memory: [[ADDR4.PT, 0x5107n]] });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6167n), op.invlpg(LA4));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: a stale PDE cache entry combines with current memory below it", () => {
  // PD[1] is repointed from PT 0x4000 to PT 0x7000, then the old PT's entry is cleared (row 73).
  const m = selfMappedMachine({ memory: [[0x7008n, 0x8067n]] });
  run(m, op.load(LA4), op.store(PDE_VIA, 0x7067n), op.store(PTE_VIA, 0n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "#PF ec=0x0 cr2=0x40201008", // stale PDE cache entry -> the cleared PTE in T1
    "ok gpa=0x5008 value=0x0", // stale full TLB hit
    "ok gpa=0x8008 value=0x0", // fresh walk through T2
  ]);
});

Deno.test("TLB model: INVLPG of another address flushes the PSCs but may leave this TLB entry", () => {
  const m = selfMappedMachine({ memory: [[0x7008n, 0x8067n]] });
  run(m, op.load(LA4), op.store(PDE_VIA, 0x7067n), op.store(PTE_VIA, 0n), op.invlpg(0x1000_0000n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x8008 value=0x0",
  ]);
});

Deno.test("TLB model: an entry with A=0 in memory was never cached", () => {
  // The PTE changes to frame 0x6000 with A=0 and back; a TLB entry for the A=0 value would have
  // required the processor to set A, an observable write that never happened.
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x5067n]] });
  run(m, op.store(PTE_VIA, 0x6007n), op.store(PTE_VIA, 0x5067n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x5008 value=0x0"]);
});

Deno.test("TLB model: PCIDs keep translations of another address space after a no-flush MOV CR3", () => {
  // A second PML4 at 0x9000 maps LA4 to frame 0x6000 through its own tables.
  const second: Mem = [
    [0x9000n, 0xa027n],
    [0xa008n, 0xb027n],
    [0xb008n, 0xc027n],
    [0xc008n, 0x6067n],
  ];
  const m = selfMappedMachine({ cr4: { pcide: true }, memory: second });
  run(m, op.load(LA4), op.movCr3(0x9000n, true));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x6008 value=0x0",
  ]);
  // Switching with a flush drops them; the old PCID's entries do not apply to PCID 1.
  const n = selfMappedMachine({ cr4: { pcide: true }, memory: second });
  run(n, op.load(LA4), op.movCr3(0x9000n));
  deepStrictEqual(allowed(n.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
  const p = selfMappedMachine({ cr4: { pcide: true }, memory: second });
  run(p, op.load(LA4), op.movCr3(0x9001n, true));
  deepStrictEqual(allowed(p.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("TLB model: rights are evaluated at use time (CR0.WP takes effect without a flush)", () => {
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x5065n]] }); // read-only page
  run(m, op.load(LA4), op.writeCr0({ wp: false }));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.store(LA4, 1n)))), ["ok gpa=0x5008"]);
  run(m, op.writeCr0({ wp: true }));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.store(LA4, 1n)))), ["#PF ec=0x3 cr2=0x40201008"]);
});

Deno.test("TLB model: a 2-MiB page and its replacing 4-KiB page table may coexist (row 71)", () => {
  // PD[1] maps a 2-MiB page at 0x20_0000; it is replaced by a pointer to PT 0x4000.
  const m = selfMappedMachine({ memory: [[ADDR4.PD, 0x20_00e7n]] });
  run(m, op.load(LA4), op.store(PDE_VIA, 0x4067n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), [
    "ok gpa=0x201008 value=0x0",
    "ok gpa=0x5008 value=0x0",
  ]);
  run(m, op.invlpg(LA4));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(LA4)))), ["ok gpa=0x5008 value=0x0"]);
});

Deno.test("TLB model: a write through a cached clean leaf sets D in the entry's location", () => {
  // The PTE is read (A set, D clear), then its frame changes: a stale write goes to the old frame
  // and ORs D into the entry as it is now (spec §6.5 option (a)).
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x5027n]] });
  run(m, op.load(LA4), op.store(PTE_VIA, 0x6027n));
  const choices = m.allowed(decodeOp(op.store(LA4, 1n)));
  const stale = choices.outcomes.find((o) => o.via === "tlb");
  equal(stale?.observation.kind === "ok" && stale.observation.gpa, 0x5008n);
  deepStrictEqual(stale?.writes.map((w) => [w.kind, w.addr]), [["D", ADDR4.PT], [
    "store",
    0x5008n,
  ]]);
  m.commit(choices, choices.outcomes.indexOf(stale!));
  equal(m.memory.read(ADDR4.PT, 8), 0x6067n);
});

Deno.test("TLB model: PAE PDPTE edits take effect only after a PDPTE reload", () => {
  // PAE: CR3 = 0x1000 (PDPT), PDPTE0 -> PD 0x2000 -> PT 0x3000 -> frame 0x5000 for LA 0x1000.
  // PT[2] maps the PDPT page at LA 0x2000 so the guest can edit it.
  const memory: Mem = [
    [0x1000n, 0x2001n],
    [0x2000n, 0x3067n],
    [0x3008n, 0x5067n],
    [0x3010n, 0x1067n],
    [0x6000n, 0x7067n], // an alternative PD at 0x6000 -> PT 0x7000 -> frame 0x8000
    [0x7008n, 0x8067n],
  ];
  const m = new ReferenceMachine(buildCase({ mode: "pae", maxPhyAddr: 36, memory }));
  run(m, op.load(0x1000n), op.store(0x2000n, 0x6001n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(0x1000n)))), ["ok gpa=0x5000 value=0x0"]);
  run(m, op.invlpg(0x1000n)); // INVLPG does not reload PDPTE registers
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(0x1000n)))), ["ok gpa=0x5000 value=0x0"]);
  run(m, op.movCr3(0x1000n));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.load(0x1000n)))), ["ok gpa=0x8000 value=0x0"]);
  equal(m.control().pdpteRegs?.[0], 0x6001n);
});

Deno.test("TLB model: EFER.NXE toggled without a flush allows either reading of a cached XD", () => {
  // The PTE has XD=1 and is cached; NXE is then cleared. A fetch may use the cached entry with
  // XD honoured (fault) or ignored; a fresh walk now sees bit 63 as reserved (spec §9.6).
  const m = selfMappedMachine({ memory: [[ADDR4.PT, 0x8000_0000_0000_5067n]] });
  run(m, op.load(LA4), op.writeEfer({ nxe: false }));
  deepStrictEqual(allowed(m.allowed(decodeOp(op.fetch(LA4)))), [
    "#PF ec=0x1 cr2=0x40201008", // cached XD honoured; I/D follows the current NXE=0
    "#PF ec=0x9 cr2=0x40201008", // fresh walk: bit 63 is reserved now
    "ok gpa=0x5008 value=0x0",
  ]);
});

Deno.test("TLB fill: a store that rewrites its own PTE leaves the old translation cached", () => {
  // PT[1] maps LA4 onto the PT page itself, A=D=0. The store through LA4 walks (setting A and
  // D in PT[1]), is cached, then its data rewrites PT[1] to frame 0x6000 with A=D=0. Memory
  // never held the A=1 form at a step boundary, yet the processor cached it: until an
  // invalidation the old translation (no A/D write needed, D was set) may still be used.
  const m = selfMappedMachine({ memory: [[0x4008n, 0x4007n]] });
  run(m, op.store(LA4, 0x6007n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [
    "ok gpa=0x4008 value=0x6007",
    "ok gpa=0x6008 value=0x0",
  ]);
  run(m, op.invlpg(LA4));
  deepStrictEqual(allowedNext(m, op.load(LA4)), ["ok gpa=0x6008 value=0x0"]);
});

Deno.test("transient values: another vCPU may cache a PTE state that lasted only inside a step", () => {
  // vCPU 1's store through LA4 sets A and D in PT[1] (A=0 before), then rewrites PT[1]. The
  // A=1 form existed only inside that step, but vCPU 0 could have walked and cached it then.
  const m = selfMappedMachine({ vcpus: 2, memory: [[0x4008n, 0x4007n]] });
  run(m, op.store(LA4, 0x6007n, 0, 1));
  deepStrictEqual(allowedNext(m, op.load(LA4, 0, 0)), [
    "ok gpa=0x4008 value=0x6007",
    "ok gpa=0x6008 value=0x0",
  ]);
});

Deno.test("before the store: a value a step's store replaced pairs with A bits that step's walk set", () => {
  // After the flush, PML4[0] and PDPT[1] have A=0, so no chain for LA4 could be cached. The
  // store through PTE_VIA walks PML4[0] and PDPT[1] (shared with LA4's path) and sets their A
  // bits, then rewrites PT[1]. Between the two, a speculative walk for LA4 finds every entry
  // accessed and PT[1] still old: the old frame may be cached.
  const fresh = { memory: tables4({ PD: 0x20n, PT: 0x20n }) };
  const m = selfMappedMachine(fresh);
  run(m, op.movCr3(0x1000n), op.store(PTE_VIA, 0x6067n));
  deepStrictEqual(allowedNext(m, op.load(LA4)), [
    "ok gpa=0x5008 value=0x0",
    "ok gpa=0x6008 value=0x0",
  ]);
  // PD[1] is not on the store's path: its A bit, set only by a later step, cannot pair with
  // the PT[1] value from before the store.
  const other = selfMappedMachine({
    memory: [...tables4({ PML4: 0x20n, PDPT: 0x20n, PT: 0x20n }), [0x4010n, 0x7067n]],
  });
  run(other, op.movCr3(0x1000n), op.store(PTE_VIA, 0x6067n), op.load(LA4 + 0x1000n));
  deepStrictEqual(allowedNext(other, op.load(LA4)), ["ok gpa=0x6008 value=0x0"]);
});
