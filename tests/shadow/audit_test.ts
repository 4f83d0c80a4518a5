/**
 * Tests of `kvm_mmu_audit` (`src/shadow/audit.ts`). Part one drives the model into realistic
 * states (4-level, PAE, 2-level and nonpaging guests; prefetch, huge pages, MMIO, unsync and
 * sync, write-tracked tables, dirty logging, a CR0.WP=0 supervisor write) and expects no
 * violation. Part two corrupts one thing in such a state and expects exactly the invariant that
 * covers it, and drives two of the model's injected bugs into the invariant they break.
 *
 * @module
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Kvm, type KvmFeatures } from "../../src/shadow/kvm.ts";
import { INVALID_PAGE, KvmVcpu, type VcpuArch } from "../../src/shadow/kvm_vcpu.ts";
import { KvmMemorySlot } from "../../src/shadow/kvm_memslots.ts";
import type { KvmMmuPage } from "../../src/shadow/mmu_page.ts";
import {
  kvm_calc_cpu_role,
  kvm_calc_shadow_mmu_root_role,
  type KvmMmuPageRole,
  roleWord,
} from "../../src/shadow/mmu_role.ts";
import { reset_guest_paging_metadata } from "../../src/shadow/guest_metadata.ts";
import {
  kvm_mmu_invlpg,
  kvm_mmu_load,
  kvm_mmu_sync_roots,
  ShadowWalkIterator,
} from "../../src/shadow/mmu_roots.ts";
import {
  drop_spte,
  kvm_flush_remote_tlbs,
  kvm_mmu_commit_zap_page,
  kvm_mmu_get_shadow_page,
  kvm_mmu_prepare_zap_page,
  kvm_mmu_write_protect_gfns_for_log,
  sptep_to_sp,
} from "../../src/shadow/mmu.ts";
import { new_page_fault, type RetPf } from "../../src/shadow/page_fault.ts";
import { FNAME_page_fault } from "../../src/shadow/paging_tmpl_mmu.ts";
import { nonpaging_page_fault } from "../../src/shadow/direct_mmu.ts";
import { kvm_mmu_track_write } from "../../src/shadow/page_track.ts";
import { kvm_set_cr4 } from "../../src/shadow/x86.ts";
import {
  is_last_spte,
  is_shadow_present_pte,
  make_mmio_spte,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
  shadow_mmu_writable_mask,
  shadow_nx_mask,
  SPTE_BASE_ADDR_MASK,
} from "../../src/shadow/spte.ts";
import {
  type AuditViolation,
  kvm_mmu_audit,
  unsync_reachable_from_root,
} from "../../src/shadow/audit.ts";

// ---------------------------------------------------------------------------------------------
// Building a VM by hand (as in direct_mmu_test.ts)

const FEATURES: KvmFeatures = {
  prefetch: true,
  unsync: true,
  fastPageFault: true,
  splitSpte: false,
};

const NONPAGING: VcpuArch = {
  cr0_pg: false,
  cr0_wp: true,
  cr3: 0n,
  cr4_pse: false,
  cr4_pae: false,
  cr4_pge: false,
  cr4_smep: false,
  cr4_smap: false,
  cr4_pke: false,
  cr4_la57: false,
  cr4_pcide: false,
  efer_lme: false,
  efer_nx: false,
  pkru: 0,
  rflags_ac: false,
};

/** 4-level paging, NX, CR3 = 0x100000. */
const LONG_MODE: VcpuArch = {
  ...NONPAGING,
  cr0_pg: true,
  cr3: 0x10_0000n,
  cr4_pae: true,
  efer_lme: true,
  efer_nx: true,
};

/** PAE paging, PDPT at 0x101000 (CR3 0x101000). */
const PAE: VcpuArch = { ...LONG_MODE, cr3: 0x10_1000n, efer_lme: false };

/** 2-level 32-bit paging with PSE, PD at 0x100000. */
const LEGACY: VcpuArch = { ...LONG_MODE, cr4_pae: false, cr4_pse: true, efer_lme: false };

interface Vm {
  kvm: Kvm;
  vcpu: KvmVcpu;
  slot: KvmMemorySlot;
}

/** A VM with RAM at gfn 0..0xfff (16 MiB, 2 MiB-aligned) and one vCPU (roots not loaded). */
function makeVm(
  arch: VcpuArch,
  opts: { features?: Partial<KvmFeatures>; bugs?: string[]; pdptrs?: bigint[] } = {},
): Vm {
  const kvm = new Kvm({
    cpuid: {
      maxphyaddr: 40,
      vendor: "intel",
      nx: true,
      pse: true,
      pse36: true,
      gbpages: false,
      smep: true,
      smap: false,
      la57: false,
      pcid: false,
    },
    features: { ...FEATURES, ...opts.features },
    bugs: opts.bugs ?? [],
    seed: 11,
  });
  const slot = new KvmMemorySlot(0, 0, 0x1000, false);
  kvm.memslots.install(slot);
  const vcpu = new KvmVcpu(kvm, 0, { ...arch });
  kvm.vcpus.push(vcpu);
  const cpu_role = kvm_calc_cpu_role(arch);
  const meta = reset_guest_paging_metadata(cpu_role, {
    maxphyaddr: 40,
    vendor: "intel",
    gbpages: false,
  });
  vcpu.mmu = {
    cpu_role,
    root_role: kvm_calc_shadow_mmu_root_role(cpu_role),
    handler: !arch.cr0_pg ? "nonpaging" : arch.cr4_pae ? "paging64" : "paging32",
    root: { hpa: INVALID_PAGE, pgd: 0n },
    prev_roots: [0, 1, 2].map(() => ({ hpa: INVALID_PAGE, pgd: 0n })),
    pae_root: kvm.host.allocKernelPage(),
    pdptrs: opts.pdptrs ?? [0n, 0n, 0n, 0n],
    ...meta,
  };
  return { kvm, vcpu, slot };
}

// gpte bits: P 0x1, W 0x2, U 0x4, A 0x20, D 0x40, PS 0x80.
const PWUA = 0x27n;
const PWUAD = 0x67n;
const NX = 1n << 63n;

// Error codes.
const READ = 0;
const WRITE = 2; // not present
const PWRITE = 3; // present
const USER = 4;

/**
 * The 4-level guest (gvas on the left; data gfns 0x200.. unless noted):
 *
 * - PML4 0x100 → PDPT 0x101 → PD 0x102; PD[0] → PT 0x103 (0..2 MiB), PD[1] = 2 MiB page gfn
 *   0x400 (0x200000), PD[2] → supervisor-only PT 0x104 (0x400000);
 * - PT[0x10] 0x10000 → 0x200 rw; [0x11] 0x11000 → 0x201 user read-only; [0x12] 0x12000 → the PT
 *   itself (0x103, rw); [0x13] 0x13000 → the PD (0x102, rw); [0x14] 0x14000 → 0x202 supervisor
 *   rw; [0x15] 0x15000 → 0x203 rw NX; [0x16] 0x16000 → gfn 0x5000, outside RAM (MMIO);
 *   [0x17] 0x17000 → 0x204 with A=0;
 * - PT 0x104 [0] 0x400000 → 0x205 rw.
 */
function writeFourLevelTables(kvm: Kvm): void {
  const w = (gpa: number, v: bigint) => kvm.writeGuestPhys(gpa, 8, v);
  w(0x10_0000, 0x10_1000n | PWUA);
  w(0x10_1000, 0x10_2000n | PWUA);
  w(0x10_2000, 0x10_3000n | PWUA);
  w(0x10_2008, 0x40_0000n | 0xe7n);
  w(0x10_2010, 0x10_4000n | 0x23n);
  w(0x10_3080, 0x20_0000n | PWUAD);
  w(0x10_3088, 0x20_1000n | 0x25n);
  w(0x10_3090, 0x10_3000n | PWUAD);
  w(0x10_3098, 0x10_2000n | PWUAD);
  w(0x10_30a0, 0x20_2000n | 0x63n);
  w(0x10_30a8, 0x20_3000n | PWUAD | NX);
  w(0x10_30b0, 0x500_0000n | PWUAD);
  w(0x10_30b8, 0x20_4000n | 0x07n);
  w(0x10_4000, 0x20_5000n | PWUAD);
}

/** Every gfn a leaf SPTE of {@link fourLevel} maps (data pages, the self-maps, the 2 MiB page). */
const LEAF_GFNS = [0x102, 0x103, 0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x400];

function fault(vm: Vm, gva: number, error_code: number): RetPf {
  return FNAME_page_fault(vm.vcpu, new_page_fault(BigInt(gva), error_code));
}

/** A 4-level guest after faults on most of its mappings (see {@link writeFourLevelTables}). */
function fourLevel(opts: Parameters<typeof makeVm>[1] = {}): Vm {
  const vm = makeVm(LONG_MODE, opts);
  writeFourLevelTables(vm.kvm);
  kvm_mmu_load(vm.vcpu);
  equal(fault(vm, 0x10000, USER), "RET_PF_FIXED"); // prefetches 0x11..0x15, stops at MMIO
  equal(fault(vm, 0x16000, USER), "RET_PF_EMULATE");
  equal(fault(vm, 0x20_1234, USER), "RET_PF_FIXED"); // 2 MiB leaf in the PD's page
  equal(fault(vm, 0x40_0000, WRITE), "RET_PF_FIXED"); // supervisor-only PT
  equal(fault(vm, 0x14000, PWRITE), "RET_PF_FIXED"); // prefetched writable, without A
  return vm;
}

/** The leaf sptep (host physical address) the shadow walk for `gva` ends at. */
function leafSptep(vm: Vm, gva: number): number {
  const { kvm, vcpu } = vm;
  const it = new ShadowWalkIterator(vcpu, vcpu.mmu.root.hpa, BigInt(gva));
  for (; it.okay(); it.next()) {
    const spte = kvm.host.read64(it.sptep);
    if (!is_shadow_present_pte(spte) || is_last_spte(spte, it.level)) return it.sptep;
  }
  throw new Error(`no shadow path for 0x${gva.toString(16)}`);
}

function spAt(vm: Vm, gfn: number, level: number): KvmMmuPage {
  const sp = vm.kvm.active_mmu_pages.find((p) => p.gfn === gfn && p.role.level === level);
  if (!sp) throw new Error(`no level-${level} page for gfn 0x${gfn.toString(16)}`);
  return sp;
}

function setSpte(vm: Vm, sptep: number, f: (spte: bigint) => bigint): void {
  vm.kvm.host.write64(sptep, f(vm.kvm.host.read64(sptep)));
}

/** The sorted distinct invariant tags, with the details on failure. */
function tags(v: readonly AuditViolation[]): string[] {
  return [...new Set(v.map((x) => x.invariant))].sort();
}

function assertClean(kvm: Kvm): void {
  const v = kvm_mmu_audit(kvm);
  deepStrictEqual(v, [], v.map((x) => `${x.invariant}: ${x.detail}`).join("\n"));
}

function assertOnly(kvm: Kvm, expected: string[]): AuditViolation[] {
  const v = kvm_mmu_audit(kvm);
  deepStrictEqual(tags(v), expected, v.map((x) => `${x.invariant}: ${x.detail}`).join("\n"));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Realistic states: no violation

Deno.test("kvm_mmu_audit: 4-level guest after faults, prefetch, MMIO and a 2 MiB page is clean", () => {
  const vm = fourLevel();
  const { kvm } = vm;
  // Sanity of the state the audit looks at.
  ok(kvm.active_mmu_pages.length >= 5);
  const huge = kvm.host.read64(leafSptep(vm, 0x20_0000));
  equal(huge & 0x80n, 0x80n, "2 MiB leaf");
  ok(kvm.kvm_gfn_is_write_tracked(0x102));
  assertClean(kvm);
});

Deno.test("kvm_mmu_audit: a write fault to a write-tracked table leaves a clean state", () => {
  const vm = fourLevel();
  // Prefetched read-only with A clear: a real read fault rebuilds it with A.
  equal(fault(vm, 0x13000, USER), "RET_PF_FIXED");
  equal(fault(vm, 0x13000, USER | PWRITE), "RET_PF_WRITE_PROTECTED");
  assertClean(vm.kvm);
});

Deno.test("kvm_mmu_audit: unsync, guest edits of the unsync table, INVLPG and sync stay clean", () => {
  const vm = fourLevel();
  const { kvm, vcpu } = vm;
  const pt = spAt(vm, 0x103, 1);
  // The guest writes its own page table through the self-map: the level-1 page goes unsync.
  equal(fault(vm, 0x12000, USER | PWRITE), "RET_PF_FIXED");
  equal(pt.unsync, true);
  assertClean(kvm);
  deepStrictEqual(unsync_reachable_from_root(vcpu), [pt]);
  // Native guest writes to the unsync table (no trap): the shadow may lag until invalidation.
  kvm.writeGuestPhys(0x10_3080, 8, 0x20_6000n | PWUAD); // 0x10000 now → gfn 0x206
  kvm.writeGuestPhys(0x10_3088, 8, 0x20_1000n | 0x21n); // 0x11000 loses U
  assertClean(kvm);
  kvm_mmu_invlpg(vcpu, 0x10000n); // re-derives entry 0x10 (dropped: new gfn)
  assertClean(kvm);
  kvm_mmu_sync_roots(vcpu);
  equal(pt.unsync, false);
  deepStrictEqual(unsync_reachable_from_root(vcpu), []);
  assertClean(kvm);
  equal(fault(vm, 0x10000, USER | WRITE), "RET_PF_FIXED");
  assertClean(kvm);
});

Deno.test("kvm_mmu_audit: dirty logging, the write fault that logs, a harvest", () => {
  const vm = fourLevel();
  const { kvm, slot } = vm;
  equal(fault(vm, 0x10000, USER | PWRITE), "RET_PF_SPURIOUS");
  // Logging on: write-protect every gfn with a leaf (MMU-writable kept), then flush.
  slot.dirty_bitmap = new Set();
  kvm_mmu_write_protect_gfns_for_log(kvm, slot, LEAF_GFNS);
  kvm_flush_remote_tlbs(kvm);
  assertClean(kvm);
  equal(fault(vm, 0x10000, USER | PWRITE), "RET_PF_FIXED");
  ok(slot.dirty_bitmap.has(0x200));
  // A write to the 2 MiB page maps 4K (dirty logging forbids huge pages).
  equal(fault(vm, 0x20_1234, USER | PWRITE), "RET_PF_FIXED");
  ok(slot.dirty_bitmap.has(0x401));
  assertClean(kvm);
  // Harvest: take the bitmap, write-protect what it named, flush.
  const gfns = [...slot.dirty_bitmap];
  slot.dirty_bitmap.clear();
  kvm_mmu_write_protect_gfns_for_log(kvm, slot, gfns);
  kvm_flush_remote_tlbs(kvm);
  assertClean(kvm);
});

Deno.test("kvm_mmu_audit: a CR0.WP=0 supervisor write (SMEP on) and the user read after it", () => {
  const vm = makeVm({ ...LONG_MODE, cr0_wp: false, cr4_smep: true });
  writeFourLevelTables(vm.kvm);
  kvm_mmu_load(vm.vcpu);
  equal(fault(vm, 0x11000, PWRITE & ~1), "RET_PF_FIXED"); // supervisor write, user read-only page
  const sptep = leafSptep(vm, 0x11000);
  const spte = vm.kvm.host.read64(sptep);
  equal(spte & (PT_WRITABLE_MASK | PT_USER_MASK | NX), PT_WRITABLE_MASK | NX, "W, not U, NX");
  assertClean(vm.kvm);
  equal(fault(vm, 0x11000, USER), "RET_PF_FIXED"); // rebuilt as the guest's U, read-only
  equal(vm.kvm.host.read64(sptep) & (PT_WRITABLE_MASK | PT_USER_MASK), PT_USER_MASK);
  assertClean(vm.kvm);
});

Deno.test("kvm_mmu_audit: an emulated PT write (zap and flush) keeps the TLB consistent", () => {
  const vm = fourLevel();
  const { kvm, vcpu } = vm;
  const sptep = leafSptep(vm, 0x10000);
  const pfn = kvm.ram.pfnOf(0x200);
  vcpu.tlb.fill(0, 0x10, { pfn, writable: true, user: true, executable: true, dirty: true });
  assertClean(kvm);
  kvm.writeGuestPhys(0x10_3080, 8, 0x20_6000n | PWUAD);
  kvm_mmu_track_write(vcpu, 0x10_3080, 8);
  ok(!is_shadow_present_pte(kvm.host.read64(sptep)));
  equal(vcpu.tlb.size, 0);
  assertClean(kvm);
});

Deno.test("kvm_mmu_audit: PAE guest (4 cached PDPTEs, level-2 roots) is clean", () => {
  // PDPT at 0x101000: PDPTE 0 → PD 0x102 → PT 0x103 (as the 4-level layout below the PML4).
  const vm = makeVm(PAE, { pdptrs: [0x10_2000n | 1n, 0n, 0n, 0n] });
  writeFourLevelTables(vm.kvm);
  vm.kvm.writeGuestPhys(0x10_1000, 8, 0x10_2000n | 1n);
  kvm_mmu_load(vm.vcpu);
  equal(fault(vm, 0x10000, USER), "RET_PF_FIXED");
  equal(fault(vm, 0x20_0000, USER | WRITE), "RET_PF_FIXED");
  equal(fault(vm, 0x12000, USER | PWRITE), "RET_PF_FIXED"); // unsync the PT
  assertClean(vm.kvm);
});

Deno.test("kvm_mmu_audit: 2-level guest with quadrants and a 4 MiB PSE page is clean", () => {
  const vm = makeVm(LEGACY);
  const { kvm } = vm;
  const w = (gpa: number, v: bigint) => kvm.writeGuestPhys(gpa, 4, v);
  w(0x10_0000 + 1 * 4, 0x10_4000n | PWUA); // PDE 1 (0x400000) → PT 0x104
  w(0x10_4000 + 1 * 4, 0x30_0000n | PWUAD); // 0x401000 → 0x300
  w(0x10_0000 + 2 * 4, 0xc0_0000n | 0xe7n); // PDE 2 (0x800000): 4 MiB page at gfn 0xc00
  w(0x10_0000 + 0x300 * 4, 0x10_5000n | PWUA); // PDE 0x300 (0xc0000000) → PT 0x105
  w(0x10_5000 + 0x201 * 4, 0x30_1000n | PWUAD); // 0xc0201000 → 0x301 (level-1 quadrant 1)
  w(0x10_5000 + 1 * 4, 0x30_2000n | 0x25n); // 0xc0001000 → 0x302 user read-only (quadrant 0)
  kvm_mmu_load(vm.vcpu);
  equal(fault(vm, 0x40_1000, USER), "RET_PF_FIXED");
  equal(fault(vm, 0xa0_0000, USER), "RET_PF_FIXED"); // second 2 MiB half of the 4 MiB page
  equal(fault(vm, 0xc020_1000, USER | WRITE), "RET_PF_FIXED");
  equal(fault(vm, 0xc000_1000, USER), "RET_PF_FIXED");
  const q1 = kvm.active_mmu_pages.find((p) => p.gfn === 0x105 && p.role.quadrant === 1);
  ok(q1 && q1.role.level === 1);
  const huge = kvm.host.read64(leafSptep(vm, 0xa0_0000));
  equal(huge & 0x80n, 0x80n);
  assertClean(kvm);
  // The audit reads the right 4-byte gpte: break PTE 0x201 behind KVM's back.
  w(0x10_5000 + 0x201 * 4, 0x30_3000n | PWUAD);
  assertOnly(kvm, ["I-8"]);
});

Deno.test("kvm_mmu_audit: nonpaging guest, a shadowed gfn under a read-only 2 MiB SPTE", () => {
  const vm = makeVm(NONPAGING);
  const { kvm, vcpu } = vm;
  kvm_mmu_load(vcpu);
  equal(nonpaging_page_fault(vcpu, new_page_fault(0x12345n, READ)), "RET_PF_FIXED");
  equal(nonpaging_page_fault(vcpu, new_page_fault(0x40_0000n, WRITE)), "RET_PF_FIXED");
  assertClean(kvm);
  // gfn 0x12 becomes a guest page table (a level-1 indirect page): account_shadowed
  // write-protects the 2 MiB SPTE over it but does not zap it.
  const role: KvmMmuPageRole = { ...vcpu.mmu.root_role, level: 1, direct: false, quadrant: 0 };
  kvm_mmu_get_shadow_page(vcpu, 0x12, role);
  const huge = kvm.host.read64(leafSptep(vm, 0x12345));
  equal(huge & (0x80n | PT_WRITABLE_MASK | shadow_mmu_writable_mask), 0x80n);
  assertClean(kvm);
  // A write maps 4K and unsyncs the level-1 page.
  equal(nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PWRITE)), "RET_PF_FIXED");
  assertClean(kvm);
});

// ---------------------------------------------------------------------------------------------
// One corruption each: exactly the invariant that covers it

Deno.test("I-6a: W and MMU-writable on an SPTE of a write-tracked gfn", () => {
  const vm = fourLevel();
  const sptep = leafSptep(vm, 0x13000); // the PD page (gfn 0x102), prefetched read-only
  equal(vm.kvm.host.read64(sptep) & PT_WRITABLE_MASK, 0n);
  setSpte(vm, sptep, (s) => s | PT_WRITABLE_MASK | shadow_mmu_writable_mask);
  const v = assertOnly(vm.kvm, ["I-6a"]);
  ok(v[0]!.detail.includes("gfn 0x102"), v[0]!.detail);
});

Deno.test("I-6a: gfn_write_track count out of step with the upper-level pages", () => {
  const vm = fourLevel();
  vm.kvm.gfn_write_track.set(0x102, 2);
  assertOnly(vm.kvm, ["I-6a"]);
});

Deno.test("I-6b: a writable SPTE for a level-1 table whose page is not unsync", () => {
  const vm = fourLevel();
  equal(fault(vm, 0x12000, USER | PWRITE), "RET_PF_FIXED");
  const pt = spAt(vm, 0x103, 1);
  equal(pt.unsync, true);
  pt.unsync = false; // parents' bitmap bits stay set (stale bits are allowed)
  assertOnly(vm.kvm, ["I-6b"]);
});

Deno.test("I-6b: injected bug unsync_no_write_protect_on_sync", () => {
  const vm = fourLevel({ bugs: ["unsync_no_write_protect_on_sync"] });
  equal(fault(vm, 0x12000, USER | PWRITE), "RET_PF_FIXED");
  assertClean(vm.kvm);
  kvm_mmu_sync_roots(vm.vcpu); // syncs without write-protecting gfn 0x103 first
  assertOnly(vm.kvm, ["I-6b"]);
});

Deno.test("I-6c: disallow_lpage of a shadowed gfn's frame dropped to 0", () => {
  const vm = fourLevel();
  vm.slot.disallow_lpage[0]!.delete(0); // the 2 MiB frame holding gfns 0x100..0x104
  const v = assertOnly(vm.kvm, ["I-6c"]);
  equal(v.length, 5); // one per shadowed gfn 0x100..0x104
});

Deno.test("I-6c: a writable 2 MiB SPTE over a shadowed gfn", () => {
  const vm = makeVm(NONPAGING);
  const { kvm, vcpu } = vm;
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, READ));
  const role: KvmMmuPageRole = { ...vcpu.mmu.root_role, level: 1, direct: false, quadrant: 0 };
  kvm_mmu_get_shadow_page(vcpu, 0x12, role);
  assertClean(kvm);
  setSpte(vm, leafSptep(vm, 0x12345), (s) => s | PT_WRITABLE_MASK | shadow_mmu_writable_mask);
  assertOnly(kvm, ["I-6c"]);
});

Deno.test("I-7b: the parent's unsync_child_bitmap bit of an unsync page cleared", () => {
  const vm = fourLevel();
  equal(fault(vm, 0x12000, USER | PWRITE), "RET_PF_FIXED");
  const pd = spAt(vm, 0x102, 2);
  equal(pd.unsync_child_bitmap[0], 1);
  pd.unsync_child_bitmap[0] = 0;
  pd.unsync_children--;
  assertOnly(vm.kvm, ["I-7b"]);
});

Deno.test("I-7b: unsync_children out of step with the bitmap", () => {
  const vm = fourLevel();
  spAt(vm, 0x102, 2).unsync_children = 1;
  assertOnly(vm.kvm, ["I-7b"]);
});

Deno.test("I-7a: an unsync upper-level page", () => {
  const vm = fourLevel();
  const pd = spAt(vm, 0x102, 2);
  pd.unsync = true;
  pd.unsync_child_bitmap.fill(0); // keep the bookkeeping of its parent out of it
  const pdpt = spAt(vm, 0x101, 3);
  pdpt.unsync_child_bitmap[0] = 1;
  pdpt.unsync_children = 1;
  const pml4 = spAt(vm, 0x100, 4);
  pml4.unsync_child_bitmap[0] = 1;
  pml4.unsync_children = 1;
  assertOnly(vm.kvm, ["I-7a"]);
});

Deno.test("I-8: a gpte retargeted behind KVM's back (no kvm_mmu_track_write)", () => {
  const vm = fourLevel();
  vm.kvm.writeGuestPhys(0x10_3080, 8, 0x20_6000n | PWUAD);
  const v = assertOnly(vm.kvm, ["I-8"]);
  ok(v[0]!.detail.includes("[16]") && v[0]!.detail.includes("0x206"), v[0]!.detail);
});

Deno.test("I-8: a leaf SPTE pointed at another gfn's host page", () => {
  const vm = fourLevel();
  const other = BigInt(vm.kvm.ram.pfnOf(0x201)) << 12n;
  setSpte(vm, leafSptep(vm, 0x10000), (s) => (s & ~SPTE_BASE_ADDR_MASK) | other);
  assertOnly(vm.kvm, ["I-8"]);
});

Deno.test("I-8: U on the SPTE of a supervisor-only gpte", () => {
  const vm = fourLevel();
  setSpte(vm, leafSptep(vm, 0x14000), (s) => s | PT_USER_MASK);
  assertOnly(vm.kvm, ["I-8"]);
});

Deno.test("I-8: injected bug wp0_spte_keeps_exec_under_smep", () => {
  const vm = makeVm({ ...LONG_MODE, cr0_wp: false, cr4_smep: true }, {
    bugs: ["wp0_spte_keeps_exec_under_smep"],
  });
  writeFourLevelTables(vm.kvm);
  kvm_mmu_load(vm.vcpu);
  equal(fault(vm, 0x11000, PWRITE & ~1), "RET_PF_FIXED");
  equal(vm.kvm.host.read64(leafSptep(vm, 0x11000)) & shadow_nx_mask, 0n, "X kept");
  assertOnly(vm.kvm, ["I-8"]);
});

Deno.test("I-8: injected bug prefetch_ignores_accessed (a prefetched gpte with A=0)", () => {
  for (const bugs of [[], ["prefetch_ignores_accessed"]]) {
    const vm = makeVm(LONG_MODE, { bugs });
    writeFourLevelTables(vm.kvm);
    vm.kvm.writeGuestPhys(0x10_30c0, 8, 0x20_6000n | 0x07n); // PT[0x18]: A=0
    vm.kvm.writeGuestPhys(0x10_30c8, 8, 0x20_7000n | PWUAD); // PT[0x19]
    kvm_mmu_load(vm.vcpu);
    equal(fault(vm, 0x19000, USER), "RET_PF_FIXED"); // prefetch window 0x18..0x1f
    assertOnly(vm.kvm, bugs.length === 0 ? [] : ["I-8"]);
  }
});

Deno.test("I-8m: a 4 MiB page shadowed under CR4.PSE=1, kept after PSE→0 (doc §4.2)", () => {
  const vm = makeVm(LEGACY);
  const { kvm, vcpu } = vm;
  kvm.writeGuestPhys(0x10_0000 + 2 * 4, 4, 0xc0_0000n | 0xe7n); // PDE 2: 4 MiB page
  kvm_mmu_load(vcpu);
  equal(fault(vm, 0x80_0000, USER), "RET_PF_FIXED");
  assertClean(kvm);
  // CR4.PSE is not in the role: the reset context reloads the same level-2 pages.
  const cr4 = { pse: false, pae: false, pge: false, smep: false, smap: false, pke: false };
  equal(kvm_set_cr4(vcpu, { ...cr4, la57: false, pcide: false }), "ok");
  kvm_mmu_load(vcpu);
  const v = assertOnly(kvm, ["I-8m"]);
  ok(v[0]!.detail.includes("table pointer"), v[0]!.detail);
});

Deno.test("I-9: a PDE retargeted behind KVM's back", () => {
  const vm = fourLevel();
  vm.kvm.writeGuestPhys(0x10_2000, 8, 0x10_5000n | PWUA);
  assertOnly(vm.kvm, ["I-9"]);
});

Deno.test("I-9: a PDPTE losing U behind KVM's back (child access too wide)", () => {
  const vm = fourLevel();
  vm.kvm.writeGuestPhys(0x10_1000, 8, 0x10_2000n | 0x23n);
  assertOnly(vm.kvm, ["I-9"]);
});

Deno.test("I-9: two direct children linked under each other's frame", () => {
  const vm = makeVm(NONPAGING);
  const { kvm, vcpu } = vm;
  vm.slot.dirty_bitmap = new Set(); // 4K mappings: direct level-1 pages under a direct root
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x40_1000n, READ));
  nonpaging_page_fault(vcpu, new_page_fault(0x60_1000n, READ));
  assertClean(kvm);
  // Swap the root's entries 2 (gfns 0x400..) and 3 (gfns 0x600..), parent_ptes included.
  const a = sptep_to_sp(kvm, leafSptep(vm, 0x40_1000));
  const b = sptep_to_sp(kvm, leafSptep(vm, 0x60_1000));
  const [pa] = [...a.parent_ptes];
  const [pb] = [...b.parent_ptes];
  const va = kvm.host.read64(pa!);
  kvm.host.write64(pa!, kvm.host.read64(pb!));
  kvm.host.write64(pb!, va);
  a.parent_ptes.clear();
  a.parent_ptes.add(pb!);
  b.parent_ptes.clear();
  b.parent_ptes.add(pa!);
  const v = assertOnly(kvm, ["I-9"]);
  equal(v.length, 2);
  ok(v[0]!.detail.includes("expected gfn 0x400"), v[0]!.detail);
});

Deno.test("I-9: a child whose role does not inherit its parent's", () => {
  const vm = fourLevel();
  const pt = spAt(vm, 0x103, 1);
  pt.role = { ...pt.role, cr0_wp: false };
  pt.roleWord = roleWord(pt.role);
  assertOnly(vm.kvm, ["I-9"]);
});

Deno.test("I-10: a leaf SPTE missing from its rmap", () => {
  const vm = fourLevel();
  const sptep = leafSptep(vm, 0x10000);
  ok(vm.slot.rmap[0]!.get(0x200)!.delete(sptep));
  assertOnly(vm.kvm, ["I-10"]);
});

Deno.test("I-10: a dangling rmap entry (a non-present SPTE)", () => {
  const vm = fourLevel();
  const pt = spAt(vm, 0x103, 1);
  vm.slot.rmap[0]!.get(0x200)!.add(pt.sptep(0x100));
  assertOnly(vm.kvm, ["I-10"]);
});

Deno.test("I-11: W without MMU-writable", () => {
  const vm = fourLevel();
  setSpte(vm, leafSptep(vm, 0x10000), (s) => s & ~shadow_mmu_writable_mask);
  assertOnly(vm.kvm, ["I-11"]);
});

Deno.test("I-12: a writable TLB entry left after clearing W without a flush", () => {
  const vm = fourLevel();
  const { kvm, vcpu } = vm;
  const sptep = leafSptep(vm, 0x10000);
  const pfn = kvm.ram.pfnOf(0x200);
  vcpu.tlb.fill(0, 0x10, { pfn, writable: true, user: true, executable: true, dirty: true });
  assertClean(kvm);
  setSpte(vm, sptep, (s) => s & ~PT_WRITABLE_MASK); // dirty-log style: MMU-writable kept
  assertOnly(kvm, ["I-12"]);
  kvm_flush_remote_tlbs(kvm);
  assertClean(kvm);
});

Deno.test("I-12: a TLB entry left after a zap without a flush", () => {
  const vm = fourLevel();
  const { kvm, vcpu } = vm;
  const pfn = kvm.ram.pfnOf(0x201);
  vcpu.tlb.fill(0, 0x11, { pfn, writable: false, user: true, executable: true, dirty: false });
  assertClean(kvm);
  drop_spte(kvm, leafSptep(vm, 0x11000));
  assertOnly(kvm, ["I-12"]);
});

Deno.test("I-12: a zapped root's leaves need no remote flush while the root reload is pending", () => {
  const vm = makeVm(NONPAGING);
  const { kvm, vcpu } = vm;
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, READ)); // a 2 MiB leaf in a root page
  const pfn = kvm.ram.pfnOf(0x12);
  vcpu.tlb.fill(0, 0x12, { pfn, writable: true, user: true, executable: true, dirty: false });
  assertClean(kvm);
  const root = sptep_to_sp(kvm, leafSptep(vm, 0x12345));
  const invalid_list: KvmMmuPage[] = [];
  kvm_mmu_prepare_zap_page(kvm, root, invalid_list);
  kvm_mmu_commit_zap_page(kvm, invalid_list); // nothing to free: the root is still held
  equal(vcpu.tlb.size, 1);
  ok(vcpu.requests.has("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS"));
  assertClean(kvm); // vcpu_enter_guest frees the obsolete root and kvm_mmu_load flushes
  vcpu.requests.delete("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS");
  assertOnly(kvm, ["I-12"]);
});

Deno.test("I-12: a 4K TLB entry inside a 2 MiB SPTE, and strictTlbRights", () => {
  const vm = fourLevel();
  const { kvm, vcpu } = vm;
  const pfn = kvm.ram.pfnOf(0x401);
  vcpu.tlb.fill(0, 0x201, { pfn, writable: true, user: true, executable: true, dirty: true });
  assertClean(kvm);
  // An executable entry for the NX page: only the strict check looks at X.
  const nxPfn = kvm.ram.pfnOf(0x203);
  vcpu.tlb.fill(0, 0x15, {
    pfn: nxPfn,
    writable: false,
    user: true,
    executable: true,
    dirty: false,
  });
  assertClean(kvm);
  deepStrictEqual(tags(kvm_mmu_audit(kvm, { strictTlbRights: true })), ["I-12"]);
});

Deno.test("I-13: a writable SPTE whose gfn is missing from the dirty bitmap", () => {
  const vm = fourLevel();
  const { kvm, slot } = vm;
  slot.dirty_bitmap = new Set();
  kvm_mmu_write_protect_gfns_for_log(kvm, slot, LEAF_GFNS);
  kvm_flush_remote_tlbs(kvm);
  equal(fault(vm, 0x10000, USER | PWRITE), "RET_PF_FIXED");
  assertClean(kvm);
  slot.dirty_bitmap.delete(0x200);
  assertOnly(kvm, ["I-13"]);
});

Deno.test("S-2: a link missing from the child's parent_ptes", () => {
  const vm = fourLevel();
  const pt = spAt(vm, 0x103, 1);
  const [sptep] = [...pt.parent_ptes];
  pt.parent_ptes.delete(sptep!);
  assertOnly(vm.kvm, ["S-2"]);
});

Deno.test("S-3: an MMIO SPTE in a level-2 page", () => {
  const vm = fourLevel();
  const pd = spAt(vm, 0x102, 2);
  vm.kvm.host.write64(pd.sptep(5), make_mmio_spte(0x5000, 6, 0));
  assertOnly(vm.kvm, ["S-3"]);
});

Deno.test("S-4 and S-1: root_count and active_mmu_pages bookkeeping", () => {
  const vm = fourLevel();
  const root = spAt(vm, 0x100, 4);
  root.root_count++;
  assertOnly(vm.kvm, ["S-4"]);
  root.root_count--;
  vm.kvm.active_mmu_pages = vm.kvm.active_mmu_pages.filter((sp) => sp !== root);
  assertOnly(vm.kvm, ["S-1"]);
});

Deno.test("kvm_mmu_audit: a violation names the page, role, index and SPTE", () => {
  const vm = fourLevel();
  const sptep = leafSptep(vm, 0x10000);
  setSpte(vm, sptep, (s) => s & ~shadow_mmu_writable_mask);
  const [v] = kvm_mmu_audit(vm.kvm);
  const spte = vm.kvm.host.read64(sptep);
  const pt = spAt(vm, 0x103, 1);
  equal(
    v!.detail,
    `sp#${pt.id} gfn=0x103 L1 q0 indirect acc=uwx [16] spte=0x${
      spte.toString(16).padStart(16, "0")
    }: W without MMU-writable`,
  );
});
