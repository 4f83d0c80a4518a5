/**
 * The SPTE update protocols at their named atomic steps (`kvm.atomicStepHook`): the
 * volatile-bits rule of `mmu_spte_update` / `mmu_spte_clear_track_bits` on a 64-bit host, and
 * the split-SPTE protocol of a 32-bit host (`__set_spte`, `__update_clear_spte_fast/slow`,
 * `clear_spte_count`, `__get_spte_lockless`). The hook plays "another CPU" at exactly the step
 * a later scheduler interleaves.
 *
 * @module
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { ShadowMachine } from "../../src/shadow/machine.ts";
import {
  get_spte,
  mmu_spte_clear_track_bits,
  mmu_spte_get_lockless,
  mmu_spte_update,
} from "../../src/shadow/mmu.ts";
import { ShadowWalkIterator } from "../../src/shadow/mmu_roots.ts";
import { get_mmio_spte } from "../../src/shadow/mmio.ts";
import {
  is_last_spte,
  is_shadow_present_pte,
  SHADOW_NONPRESENT_VALUE,
} from "../../src/shadow/spte.ts";
import { buildCase, decodeOp, LA4, op, tables4 } from "../_helpers/case_builder.ts";

const W = 1n << 1n, D = 1n << 6n;

/** A VM whose LA4 leaf SPTE is present (after a store: writable and dirty), and its sptep. */
function mapped(splitSpte: boolean, store: boolean) {
  const c = buildCase({ mode: "ia32e4", features: { pku: false }, memory: [...tables4()] });
  c.sut.features = { ...c.sut.features, splitSpte };
  const m = new ShadowMachine(c);
  m.step(decodeOp(store ? op.store(LA4, 1n) : op.load(LA4)));
  const vcpu = m.kvm.vcpus[0]!;
  for (const it = new ShadowWalkIterator(vcpu, vcpu.mmu.root.hpa, LA4); it.okay(); it.next()) {
    const spte = get_spte(m.kvm, it.sptep);
    if (is_shadow_present_pte(spte) && is_last_spte(spte, it.level)) return { m, sptep: it.sptep };
  }
  throw new Error("LA4 is not mapped");
}

Deno.test("mmu_spte_update: D set by the CPU between KVM's read and its write is not lost (xchg)", () => {
  const { m, sptep } = mapped(false, true);
  const kvm = m.kvm;
  // Make the SPTE writable but clean, as after a write fault whose store has not happened yet.
  kvm.host.write64(sptep, get_spte(kvm, sptep) & ~D);
  const steps: string[] = [];
  kvm.atomicStepHook = (step, p) => {
    steps.push(step);
    if (p === sptep) kvm.host.write64(p, kvm.host.read64(p) | D); // the CPU's store sets D
  };
  const before = get_spte(kvm, sptep);
  const old = mmu_spte_clear_track_bits(kvm, sptep);
  deepStrictEqual(steps, ["mmu_spte_clear_track_bits:read"]);
  equal(old, before | D, "the exchange returned the SPTE with the CPU's D bit");
  equal(get_spte(kvm, sptep), SHADOW_NONPRESENT_VALUE);
});

Deno.test("mmu_spte_update: a read-only, non-MMU-writable SPTE is updated with a plain store", () => {
  const { m, sptep } = mapped(false, false);
  const kvm = m.kvm;
  const spte = get_spte(kvm, sptep) & ~(W | (1n << 10n));
  kvm.host.write64(sptep, spte);
  let seen = 0;
  kvm.atomicStepHook = () => void seen++;
  mmu_spte_update(kvm, sptep, spte | (1n << 5n));
  equal(seen, 1, "the step between read and write is still named");
  equal(get_spte(kvm, sptep), spte | (1n << 5n));
});

Deno.test("split SPTE: a lockless reader between a zapper's halves sees P clear (low half first)", () => {
  const { m, sptep } = mapped(true, true);
  const kvm = m.kvm;
  const present = get_spte(kvm, sptep);
  let torn: bigint | null = null;
  kvm.atomicStepHook = (step, p) => {
    if (step !== "__update_clear_spte_fast:high" || p !== sptep) return;
    // The zapper cleared the low half (P) but not yet the high half: a lockless reader now.
    kvm.atomicStepHook = null;
    torn = kvm.host.read64(sptep);
    const before = kvm.stats.counters.lockless_read_retries;
    const seen = mmu_spte_get_lockless(kvm, sptep);
    equal(kvm.stats.counters.lockless_read_retries, before, "no writer in between: no retry");
    equal(seen, torn, "the reader sees the half-written SPTE: low half non-present");
    ok(!is_shadow_present_pte(seen));
  };
  mmu_spte_clear_track_bits(kvm, sptep);
  ok(torn !== null, "the named step ran");
  equal(get_spte(kvm, sptep), SHADOW_NONPRESENT_VALUE);
  ok(present !== SHADOW_NONPRESENT_VALUE);
});

Deno.test("split SPTE: a clear between the reader's halves bumps clear_spte_count and forces a retry", () => {
  const { m, sptep } = mapped(true, true);
  const kvm = m.kvm;
  let once = true;
  kvm.atomicStepHook = (step, p) => {
    if (step !== "__get_spte_lockless:high" || p !== sptep || !once) return;
    once = false;
    mmu_spte_clear_track_bits(kvm, sptep); // another CPU zaps the SPTE meanwhile
  };
  const seen = mmu_spte_get_lockless(kvm, sptep);
  equal(kvm.stats.counters.lockless_read_retries, 1);
  equal(seen, SHADOW_NONPRESENT_VALUE, "after the retry the reader sees the cleared SPTE whole");
});

Deno.test("split SPTE: a nonpaging guest runs the same with the 32-bit-host protocol", () => {
  const c = buildCase({
    mode: "disabled",
    features: { pku: false },
    memslots: [{ slot: 0, baseGfn: "0x0", npages: 64, readOnly: false }],
    program: [
      op.store(0x5000n, 7n),
      { op: "dirtyLogEnable", slot: 0 },
      op.store(0x5000n, 8n),
      op.load(0x5000n),
      { op: "dirtyLogGetAndClear", slot: 0 },
    ],
  });
  c.sut.features = { ...c.sut.features, splitSpte: true };
  const m = new ShadowMachine(c);
  let steps = 0;
  m.kvm.atomicStepHook = () => void steps++;
  const out = c.program.map((o) => m.step(o));
  deepStrictEqual(out.map((s) => s.kind === "observation" ? s.observation.kind : s.reason), [
    "ok",
    "done",
    "ok",
    "ok",
    "dirtyLog",
  ]);
  ok(steps > 0);
  equal(m.kvm.stats.counters.fast_pf_fixed, 1);
});

Deno.test("get_mmio_spte: a lockless walk, one atomic read per level, inside walk_shadow_page_lockless_begin/end", () => {
  // handle_mmio_page_fault runs without mmu_lock: other threads may change the SPTEs between
  // its reads, and shadow pages are not freed under it.
  const { m, sptep } = mapped(false, false);
  const vcpu = m.kvm.vcpus[0]!;
  const seen: [string, boolean][] = [];
  m.kvm.atomicStepHook = (step) => seen.push([step, vcpu.reading_shadow_page_tables]);
  equal(get_mmio_spte(vcpu, LA4), get_spte(m.kvm, sptep));
  deepStrictEqual(seen, Array(4).fill(["__get_spte_lockless", true]));
  equal(vcpu.reading_shadow_page_tables, false);
});
