/**
 * Each KVM mechanism of the SUT, driven end to end through `ShadowMachine` (guest ops on the
 * simulated CPU): the test shows the mechanism firing (its counter moves) and its effect on
 * what the guest sees or on the shadow tables. The 4-level layout is `tables4` plus a self-map
 * (as in `tests/_helpers/oracle_machine.ts`): the guest edits its PT at `PTE_VIA` and its PD at
 * `MAP_PD` with ordinary stores.
 *
 * @module
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { ShadowMachine } from "../../src/shadow/machine.ts";
import type { Observation } from "../../src/model/observation.ts";
import { formatObservation } from "../../src/model/observation.ts";
import type { Counter } from "../../src/shadow/stats.ts";
import { ShadowWalkIterator } from "../../src/shadow/mmu_roots.ts";
import { get_spte } from "../../src/shadow/mmu.ts";
import {
  type Cr4Bits,
  kvm_set_cr0,
  kvm_set_cr3,
  kvm_set_cr4,
  vcpu_enter_guest,
} from "../../src/shadow/x86.ts";
import { is_last_spte, is_shadow_present_pte } from "../../src/shadow/spte.ts";
import {
  buildCase,
  type CaseSpec,
  decodeOp,
  LA4,
  type Mem,
  op,
  tables4,
} from "../_helpers/case_builder.ts";
import { MAP_PD, PTE_VIA } from "../_helpers/oracle_machine.ts";

const SELF_MAP: Mem = [
  [0x3010n, 0xd067n], // PD[2] -> second PT
  [0xd000n, 0x4067n], // -> PT page (MAP_PT)
  [0xd008n, 0x3067n], // -> PD page (MAP_PD)
  [0x5008n, 0x1111n],
  [0x6008n, 0x2222n],
  [0x7008n, 0x3333n],
];

/** A SUT on the self-mapped 4-level layout; `spec.memory` entries come last and win. */
function machine(spec: Partial<CaseSpec> = {}, sut: Partial<ShadowMachineSut> = {}) {
  const c = buildCase({
    mode: "ia32e4",
    features: { pku: false },
    ...spec,
    memory: [...tables4(), ...SELF_MAP, ...(spec.memory ?? [])],
  });
  c.sut.features = { ...c.sut.features, ...sut };
  return new ShadowMachine(c);
}
type ShadowMachineSut = ShadowMachine["kvm"]["features"];

/** Runs shorthand ops; returns the observations as text. */
function run(m: ShadowMachine, ...ops: unknown[]): string[] {
  return ops.map((o) => {
    const s = m.step(decodeOp(o));
    if (s.kind !== "observation") throw new Error(`SUT failure: ${s.detail}`);
    return formatObservation(s.observation);
  });
}

/** The observation of one op. */
function one(m: ShadowMachine, o: unknown): Observation {
  const s = m.step(decodeOp(o));
  if (s.kind !== "observation") throw new Error(`SUT failure: ${s.detail}`);
  return s.observation;
}

function counter(m: ShadowMachine, c: Counter): number {
  return m.kvm.stats.counters[c];
}

/** Runs `f` and returns how much each named counter moved. */
function moved<T extends Counter>(m: ShadowMachine, names: T[], f: () => void): Record<T, number> {
  const before = names.map((n) => counter(m, n));
  f();
  return Object.fromEntries(names.map((n, i) => [n, counter(m, n) - before[i]!])) as Record<
    T,
    number
  >;
}

/** The leaf SPTE that maps `la` under vCPU 0's current root, or null. */
function leafSpte(m: ShadowMachine, la: bigint): bigint | null {
  const vcpu = m.kvm.vcpus[0]!;
  for (const it = new ShadowWalkIterator(vcpu, vcpu.mmu.root.hpa, la); it.okay(); it.next()) {
    const spte = get_spte(m.kvm, it.sptep);
    if (!is_shadow_present_pte(spte)) return null;
    if (is_last_spte(spte, it.level)) return spte;
  }
  return null;
}

const W = 1n << 1n, U = 1n << 2n, A = 1n << 5n, D = 1n << 6n, NX = 1n << 63n;

Deno.test("page_fault + fetch: a guest load builds the shadow path and the CPU sets A/D in the SPTE", () => {
  const m = machine();
  const c = moved(m, ["pf_taken", "pf_fixed", "sp_created", "hw_walks"], () => {
    deepStrictEqual(run(m, op.load(LA4)), ["ok gpa=0x5008 value=0x1111"]);
  });
  deepStrictEqual(c, { pf_taken: 1, pf_fixed: 1, sp_created: 4, hw_walks: 2 });
  const spte = leafSpte(m, LA4)!;
  equal(spte & A, A, "hardware set A");
  equal(spte & (W | D), 0n, "a clean gpte (D=0) maps read-only until the first write");
  run(m, op.store(LA4, 0x99n));
  equal(leafSpte(m, LA4)! & (W | D), W | D, "the write fault made it writable; the CPU set D");
  const hits = moved(m, ["hw_tlb_hits", "pf_taken"], () => run(m, op.load(LA4), op.load(LA4)));
  deepStrictEqual(hits, { hw_tlb_hits: 2, pf_taken: 0 });
});

Deno.test("mmu_try_to_unsync_pages: a store to the guest's own PTE unsyncs the PT; the old translation persists until INVLPG", () => {
  const m = machine();
  run(m, op.load(LA4));
  const c = moved(m, ["sp_unsync", "emulated_writes"], () => run(m, op.store(PTE_VIA, 0x6007n)));
  deepStrictEqual(c, { sp_unsync: 1, emulated_writes: 0 }, "unsynced, not emulated");
  deepStrictEqual(run(m, op.load(LA4)), ["ok gpa=0x5008 value=0x1111"], "stale until INVLPG");
  const s = moved(m, ["invlpg", "sync_spte_updated", "sync_spte_dropped"], () => {
    run(m, op.invlpg(LA4));
  });
  equal(s.invlpg, 1);
  equal(s.sync_spte_updated + s.sync_spte_dropped, 1, "sync_spte ran on the unsync leaf");
  deepStrictEqual(run(m, op.load(LA4)), ["ok gpa=0x6008 value=0x2222"]);
});

Deno.test("kvm_mmu_sync_roots: a flushing MOV CR3 syncs the unsync PT", () => {
  const m = machine();
  run(m, op.load(LA4), op.store(PTE_VIA, 0x7007n));
  // MOV CR3 only queues KVM_REQ_MMU_SYNC and KVM_REQ_TLB_FLUSH_CURRENT; the next VM entry
  // (the load) services them.
  const c = moved(m, ["sp_synced", "local_tlb_flushes"], () => {
    deepStrictEqual(run(m, op.movCr3(0x1000n), op.load(LA4)), [
      "done",
      "ok gpa=0x7008 value=0x3333",
    ]);
  });
  ok(c.sp_synced >= 1 && c.local_tlb_flushes >= 1, JSON.stringify(c));
  equal(m.kvm.vcpus[0]!.requests.size, 0);
});

Deno.test("CR0.WP=0: a supervisor write to a user read-only page leaves a supervisor-writable, NX (SMEP) SPTE", () => {
  const m = machine({ cr0: { wp: false }, cr4: { smep: true }, memory: [[0x4008n, 0x5005n]] });
  deepStrictEqual(run(m, op.store(LA4, 0x42n, 0)), ["ok gpa=0x5008"]);
  const spte = leafSpte(m, LA4)!;
  equal(spte & (W | U | NX), W | NX, "W=1, U=0, NX=1");
  deepStrictEqual(run(m, op.fetch(LA4, 0)), ["#PF ec=0x11 cr2=0x40201008"], "SMEP still applies");
  deepStrictEqual(run(m, op.store(LA4, 1n, 3)), ["#PF ec=0x7 cr2=0x40201008"]);
});

Deno.test("pte_prefetch: fills the neighbours in the aligned 8-entry window up to the first invalid gpte", () => {
  // PT entries 0..7 of the 2 MiB region at 0x40200000: 0..2 valid with A=1, 3 has A=0 (invalid
  // for prefetch), 4..7 valid. A load through entry 0 prefetches 1 and 2 only.
  const pt: Mem = Array.from(
    { length: 8 },
    (_, i) =>
      [0x4000n + BigInt(i * 8), (0x10n + BigInt(i)) << 12n | (i === 3 ? 0x7n : 0x27n)] as const,
  );
  const m = machine({ memory: pt });
  const c = moved(m, ["prefetched_sptes"], () => run(m, op.load(0x4020_0000n)));
  equal(c.prefetched_sptes, 2);
  const mapped = [0, 1, 2, 3, 4, 5, 6, 7].map((i) =>
    leafSpte(m, 0x4020_0000n + BigInt(i) * 0x1000n) !== null
  );
  deepStrictEqual(mapped, [true, true, true, false, false, false, false, false]);
  equal(
    leafSpte(m, 0x4020_1000n)! & W,
    0n,
    "prefetched SPTEs are not writable (dirty-bit protection)",
  );
  // Prefetch off: nothing but the faulting entry.
  const off = machine({ memory: pt }, { prefetch: false });
  run(off, op.load(0x4020_0000n));
  equal(counter(off, "prefetched_sptes"), 0);
  equal(leafSpte(off, 0x4020_1000n), null);
});

Deno.test("fast_page_fault: a nonpaging guest's write during dirty logging is fixed locklessly and logged", () => {
  const c = buildCase({
    mode: "disabled",
    features: { pku: false },
    memory: [[0x5000n, 0x1n]],
    memslots: [{ slot: 0, baseGfn: "0x0", npages: 64, readOnly: false }],
  });
  const m = new ShadowMachine(c);
  run(m, op.store(0x5000n, 2n), { op: "dirtyLogEnable", slot: 0 });
  equal(leafSpte(m, 0x5000n)! & W, 0n, "dirty logging write-protected the SPTE");
  const f = moved(m, ["fast_pf_fixed", "dirty_marks"], () => run(m, op.store(0x5000n, 3n)));
  deepStrictEqual(f, { fast_pf_fixed: 1, dirty_marks: 1 });
  deepStrictEqual(run(m, { op: "dirtyLogGetAndClear", slot: 0 }), ["dirty log of slot 0: [0x5]"]);
  equal(leafSpte(m, 0x5000n)! & W, 0n, "harvest re-protected it");
  deepStrictEqual(run(m, { op: "dirtyLogGetAndClear", slot: 0 }), ["dirty log of slot 0: []"]);
});

Deno.test("MMIO SPTEs: an access to a gfn without a memslot caches an MMIO SPTE; a new memslot retires it", () => {
  const c = buildCase({
    mode: "ia32e4",
    features: { pku: false },
    memory: [...tables4(), [0x4008n, 0x80_0007n], [0x80_0008n, 0x5555n]],
    memslots: [{ slot: 0, baseGfn: "0x0", npages: 0x100, readOnly: false }],
  });
  const m = new ShadowMachine(c);
  const first = moved(m, ["pf_mmio_spte_created", "mmio_exits"], () => {
    deepStrictEqual(run(m, op.load(LA4)), ["ok gpa=0x800008 value=0x0"]);
  });
  deepStrictEqual(first, { pf_mmio_spte_created: 1, mmio_exits: 1 });
  const again = moved(m, ["pf_taken", "mmio_exits"], () => run(m, op.store(LA4, 7n)));
  deepStrictEqual(
    again,
    { pf_taken: 0, mmio_exits: 1 },
    "RSVD fault on the MMIO SPTE: no page fault",
  );
  run(m, { op: "memslotAdd", slot: 1, baseGfn: "0x800", npages: 1 });
  deepStrictEqual(
    run(m, op.load(LA4)),
    ["ok gpa=0x800008 value=0x5555"],
    "now RAM (store was dropped)",
  );
});

Deno.test("kvm_mmu_track_write: emulated writes to a PD flood and zap its shadow page", () => {
  const m = machine();
  run(m, op.load(LA4));
  const c = moved(m, ["emulated_writes", "flooding_zaps", "sp_zapped"], () => {
    run(m, ...[1n, 2n, 3n, 4n].map((v) => op.store(MAP_PD + 0x28n, v << 12n)));
  });
  equal(c.emulated_writes, 4, "the PD is write-protected: every store is emulated");
  ok(c.flooding_zaps >= 1 && c.sp_zapped >= 1, JSON.stringify(c));
  deepStrictEqual(run(m, op.load(LA4)), ["ok gpa=0x5008 value=0x1111"]);
});

Deno.test("kvm_mmu_track_write: an emulated PDE write updates the shadow so the new PT is used after INVLPG", () => {
  const m = machine({ memory: [[0x8008n, 0x7007n]] }); // a second PT at 0x8000: entry 1 -> 0x7000
  run(m, op.load(LA4));
  const c = moved(
    m,
    ["emulated_writes", "track_write_zaps"],
    () => run(m, op.store(MAP_PD + 8n, 0x8007n)),
  );
  equal(c.emulated_writes, 1);
  equal(c.track_write_zaps, 1, "the old PDE's link was dropped");
  deepStrictEqual(run(m, op.invlpg(LA4), op.load(LA4)), ["done", "ok gpa=0x7008 value=0x3333"]);
});

Deno.test("host events: an mmu-notifier unmap and random zaps change nothing the guest sees", () => {
  const m = machine();
  run(m, op.store(LA4, 0xabn));
  const pfn = m.kvm.ram.pfnOf(5);
  const u = moved(
    m,
    ["host_unmaps", "remote_tlb_flushes"],
    () => run(m, { op: "hostUnmap", gfn: "0x5", npages: 1 }),
  );
  deepStrictEqual(u, { host_unmaps: 1, remote_tlb_flushes: 1 });
  ok(m.kvm.ram.pfnOf(5) !== pfn, "the page moved to a new host page");
  equal(m.kvm.vcpus[0]!.tlb.size, 0);
  deepStrictEqual(run(m, op.load(LA4)), ["ok gpa=0x5008 value=0xab"]);
  for (const pick of [0, 1, 2, 3, 4, 5]) {
    const z = moved(m, ["random_zaps"], () => run(m, { op: "randomZap", pick }));
    equal(z.random_zaps, 1);
    deepStrictEqual(run(m, op.load(LA4), op.store(LA4, 0xacn)), [
      "ok gpa=0x5008 value=0xab",
      "ok gpa=0x5008",
    ]);
    run(m, op.store(LA4, 0xabn));
  }
});

Deno.test("prev_roots: switching back to a recent CR3 reuses its root", () => {
  // A second PML4 at 0x9000 sharing the PDPT.
  const m = machine({ memory: [[0x9000n, 0x2007n]] });
  run(m, op.load(LA4), op.movCr3(0x9000n), op.load(LA4));
  const c = moved(
    m,
    ["root_reuses", "root_allocs"],
    () => run(m, op.movCr3(0x1000n), op.load(LA4)),
  );
  deepStrictEqual(c, { root_reuses: 1, root_allocs: 0 });
});

Deno.test("dirty logging with paging: stores and the walker's A/D writes are logged; harvest write-protects", () => {
  const m = machine();
  run(m, op.load(LA4), { op: "dirtyLogEnable", slot: 0 });
  const log = one(m, { op: "dirtyLogGetAndClear", slot: 0 });
  deepStrictEqual(log, { kind: "dirtyLog", slot: 0, gfns: [] });
  run(m, op.store(LA4, 5n));
  const after = one(m, { op: "dirtyLogGetAndClear", slot: 0 });
  ok(after.kind === "dirtyLog" && after.gfns.includes(5n), formatObservation(after));
  ok(after.kind === "dirtyLog" && after.gfns.includes(4n), "the walker set D in the PT (gfn 4)");
  equal(leafSpte(m, LA4)! & W, 0n);
  ok(counter(m, "write_protects") >= 1);
});

Deno.test("MMU context: CR0.WP, CR4.SMEP/PGE, EFER.NX and MOV CR3 change roles, roots and requests as in KVM", () => {
  const m = machine();
  const vcpu = m.kvm.vcpus[0]!;
  const cr4 = (change: Partial<Cr4Bits>): Cr4Bits => ({
    pse: vcpu.arch.cr4_pse,
    pae: vcpu.arch.cr4_pae,
    pge: vcpu.arch.cr4_pge,
    smep: vcpu.arch.cr4_smep,
    smap: vcpu.arch.cr4_smap,
    pke: vcpu.arch.cr4_pke,
    la57: vcpu.arch.cr4_la57,
    pcide: vcpu.arch.cr4_pcide,
    ...change,
  });
  run(m, op.load(LA4));
  const root = vcpu.mmu.root.hpa;
  // CR0.WP is part of the page role: kvm_mmu_reset_context unloads the roots, and the VM entry
  // after the CR0 write's exit loads a new root with new shadow pages.
  equal(kvm_set_cr0(vcpu, true, false), "ok");
  equal(vcpu.mmu.root.hpa, -1, "kvm_mmu_reset_context unloaded the root");
  deepStrictEqual([vcpu.mmu.cpu_role.base.cr0_wp, vcpu.mmu.root_role.cr0_wp], [false, false]);
  const entry = moved(m, ["root_allocs"], () => vcpu_enter_guest(vcpu));
  equal(entry.root_allocs, 1, "the VM entry loaded a new root");
  ok(vcpu.mmu.root.hpa !== root && vcpu.mmu.root.hpa !== -1);
  const c = moved(m, ["sp_created", "root_allocs"], () => run(m, op.load(LA4)));
  ok(c.sp_created >= 3 && c.root_allocs === 0, JSON.stringify(c));
  // CR4.SMEP 0 -> 1 with WP=0: smep_andnot_wp in the role, and a flush of the current context.
  equal(kvm_set_cr4(vcpu, cr4({ smep: true })), "ok");
  equal(vcpu.mmu.root_role.smep_andnot_wp, true);
  ok(vcpu.requests.has("KVM_REQ_TLB_FLUSH_CURRENT"));
  vcpu_enter_guest(vcpu);
  equal(vcpu.requests.size, 0, "the VM entry serviced every request");
  run(m, op.load(LA4));
  // CR4.PGE toggle: a guest flush (sync current and previous roots, flush).
  equal(kvm_set_cr4(vcpu, cr4({ pge: true })), "ok");
  ok(vcpu.requests.has("KVM_REQ_TLB_FLUSH_GUEST"));
  vcpu_enter_guest(vcpu);
  equal(vcpu.requests.size, 0);
  // Through the machine, an intercepted instruction's requests are serviced in its own step.
  run(m, op.writeCr4({ pge: false }));
  equal(vcpu.requests.size, 0);
  // EFER.NX is not part of the shadow page role (root_role.efer_nx is always 1): same root.
  run(m, op.load(LA4));
  const before = vcpu.mmu.root.hpa;
  run(m, op.writeEfer({ nxe: false }), op.load(LA4));
  equal(vcpu.mmu.root_role.efer_nx, true);
  equal(vcpu.mmu.cpu_role.base.efer_nx, false);
  equal(vcpu.mmu.root.hpa, before, "the same root shadow page was found again");
  // MOV CR3 without PCID: KVM_REQ_MMU_SYNC and KVM_REQ_TLB_FLUSH_CURRENT.
  equal(kvm_set_cr3(vcpu, 0x1000n, false), "ok");
  deepStrictEqual([...vcpu.requests].sort(), ["KVM_REQ_MMU_SYNC", "KVM_REQ_TLB_FLUSH_CURRENT"]);
});
