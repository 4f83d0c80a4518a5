/**
 * Tests of the nonpaging direct MMU (`src/shadow/direct_mmu.ts`: `nonpaging_page_fault`,
 * `direct_map`, `fast_page_fault`) and of emulated page-table writes
 * (`src/shadow/page_track.ts`: `kvm_mmu_track_write`). A `Kvm` and a `KvmVcpu` are built by
 * hand; expected SPTE values and indices are worked out in the comments.
 *
 * @module
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Kvm, type KvmFeatures } from "../../src/shadow/kvm.ts";
import { INVALID_PAGE, KvmVcpu, type VcpuArch } from "../../src/shadow/kvm_vcpu.ts";
import { KvmMemorySlot } from "../../src/shadow/kvm_memslots.ts";
import { KvmMmuPage } from "../../src/shadow/mmu_page.ts";
import {
  ACC_ALL,
  kvm_calc_cpu_role,
  kvm_calc_shadow_mmu_root_role,
  type KvmMmuPageRole,
  roleFromWord,
  roleWord,
} from "../../src/shadow/mmu_role.ts";
import { reset_guest_paging_metadata } from "../../src/shadow/guest_metadata.ts";
import { kvm_mmu_load } from "../../src/shadow/mmu_roots.ts";
import {
  kvm_mmu_get_shadow_page,
  kvm_mmu_write_protect_gfns_for_log,
} from "../../src/shadow/mmu.ts";
import { new_page_fault } from "../../src/shadow/page_fault.ts";
import { FNAME_page_fault } from "../../src/shadow/paging_tmpl_mmu.ts";
import {
  fast_page_fault,
  is_reading_shadow_page_tables,
  nonpaging_page_fault,
} from "../../src/shadow/direct_mmu.ts";
import {
  detect_write_flooding,
  detect_write_misaligned,
  get_written_sptes,
  kvm_mmu_track_write,
  shadow_page_table_clear_flood,
} from "../../src/shadow/page_track.ts";

// ---------------------------------------------------------------------------------------------
// Building a VM by hand

const FEATURES: KvmFeatures = {
  prefetch: false,
  unsync: true,
  fastPageFault: true,
  splitSpte: false,
};

const NONPAGING: VcpuArch = {
  cr0_pg: false,
  cr0_wp: false,
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

/** 4-level paging, CR3 = 0x100000. */
const LONG_MODE: VcpuArch = {
  ...NONPAGING,
  cr0_pg: true,
  cr0_wp: true,
  cr3: 0x10_0000n,
  cr4_pae: true,
  efer_lme: true,
  efer_nx: true,
};

/** A VM with RAM at gfn 0..0xfff (16 MiB, 2 MiB-aligned) and one vCPU with a loaded root. */
function makeVm(
  arch: VcpuArch,
  features: Partial<KvmFeatures> = {},
): { kvm: Kvm; vcpu: KvmVcpu; slot: KvmMemorySlot } {
  const kvm = new Kvm({
    cpuid: {
      maxphyaddr: 40,
      vendor: "intel",
      nx: true,
      pse: true,
      pse36: true,
      gbpages: false,
      smep: false,
      smap: false,
      la57: false,
      pcid: false,
    },
    features: { ...FEATURES, ...features },
    bugs: [],
    seed: 7,
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
    handler: arch.cr0_pg ? "paging64" : "nonpaging",
    root: { hpa: INVALID_PAGE, pgd: 0n },
    prev_roots: [0, 1, 2].map(() => ({ hpa: INVALID_PAGE, pgd: 0n })),
    pae_root: kvm.host.allocKernelPage(),
    pdptrs: [0n, 0n, 0n, 0n],
    ...meta,
  };
  return { kvm, vcpu, slot };
}

/**
 * The SPTE pointers on the path for `addr` under the nonpaging (PAE-format) root, read straight
 * from host memory: [level-2 sptep, level-1 sptep or -1].
 */
function directPath(kvm: Kvm, vcpu: KvmVcpu, addr: number): { l2: number; l1: number } {
  const pdpte = kvm.host.read64(vcpu.mmu.pae_root * 4096 + Math.floor(addr / 2 ** 30) * 8);
  ok((pdpte & 1n) === 1n, "pae_root entry present");
  const l2 = Number(pdpte & 0xf_ffff_ffff_f000n) + (Math.floor(addr / 2 ** 21) % 512) * 8;
  const pde = kvm.host.read64(l2);
  if ((pde & 0x800n) === 0n || (pde & 0x80n) !== 0n) return { l2, l1: -1 };
  const l1 = Number(pde & 0xf_ffff_ffff_f000n) + (Math.floor(addr / 4096) % 512) * 8;
  return { l2, l1 };
}

// SPTE bits (spte.ts layout): P 0x1, W 0x2, U 0x4, A 0x20, D 0x40, PS 0x80, host-writable
// 0x200, MMU-writable 0x400, shadow-present 0x800; NX is bit 63.
const LEAF_RW = 0xe67n; // present|P|U|A|D|W|host-w|mmu-w
const LEAF_DIRTY_LOG_WP = 0xe65n; // W cleared, MMU-writable kept
const LEAF_SHADOW_WP = 0xa65n; // W and MMU-writable cleared
const NONPRESENT = 1n << 63n;

const PF_WRITE = 2;
const PF_PRESENT = 1;

// ---------------------------------------------------------------------------------------------
// nonpaging_page_fault / direct_map

Deno.test("nonpaging read fault in an aligned slot maps a 2 MiB SPTE, no new shadow page", () => {
  const { kvm, vcpu } = makeVm(NONPAGING);
  kvm_mmu_load(vcpu);
  // mmu_alloc_direct_roots: four level-2 roots.
  equal(kvm.stats.counters.sp_created, 4);
  const r = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  equal(r, "RET_PF_FIXED");
  equal(kvm.stats.counters.sp_created, 4);
  const { l2, l1 } = directPath(kvm, vcpu, 0x12345);
  equal(l1, -1);
  // The 2 MiB frame of gfn 0 (chunk-aligned host pfn of gfn 0) with PS.
  const pfn = BigInt(kvm.ram.pfnOf(0));
  equal(kvm.host.read64(l2), (pfn << 12n) | LEAF_RW | 0x80n);
});

Deno.test("nonpaging read fault in a dirty-logged slot maps 4K and creates a level-1 page", () => {
  const { kvm, vcpu, slot } = makeVm(NONPAGING);
  slot.dirty_bitmap = new Set();
  kvm_mmu_load(vcpu);
  const r = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  equal(r, "RET_PF_FIXED");
  equal(kvm.stats.counters.sp_created, 5);
  const { l1 } = directPath(kvm, vcpu, 0x12345);
  ok(l1 >= 0);
  // ACC_ALL: a read fault still installs a writable SPTE (and logs the gfn as dirty).
  equal(kvm.host.read64(l1), (BigInt(kvm.ram.pfnOf(0x12)) << 12n) | LEAF_RW);
  deepStrictEqual([...slot.dirty_bitmap], [0x12]);
});

Deno.test("fast_page_fault restores W after dirty-log write protection and logs the gfn", () => {
  const { kvm, vcpu, slot } = makeVm(NONPAGING);
  slot.dirty_bitmap = new Set();
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  const { l1 } = directPath(kvm, vcpu, 0x12345);
  const pfn = BigInt(kvm.ram.pfnOf(0x12)) << 12n;
  kvm_mmu_write_protect_gfns_for_log(kvm, slot, [0x12]);
  slot.dirty_bitmap = new Set();
  equal(kvm.host.read64(l1), pfn | LEAF_DIRTY_LOG_WP);

  const r = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(r, "RET_PF_FIXED");
  equal(kvm.stats.counters.fast_pf_fixed, 1);
  equal(kvm.host.read64(l1), pfn | LEAF_RW);
  deepStrictEqual([...slot.dirty_bitmap], [0x12]);
  equal(is_reading_shadow_page_tables(vcpu), false);

  // The same fault again (another vCPU fixed it first, or a lazily flushed TLB): spurious.
  const again = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(again, "RET_PF_SPURIOUS");
  equal(kvm.stats.counters.fast_pf_spurious, 1);
  equal(kvm.stats.counters.fast_pf_fixed, 1);
});

Deno.test("with fastPageFault off the slow path fixes the same write", () => {
  const { kvm, vcpu, slot } = makeVm(NONPAGING, { fastPageFault: false });
  slot.dirty_bitmap = new Set();
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  const { l1 } = directPath(kvm, vcpu, 0x12345);
  kvm_mmu_write_protect_gfns_for_log(kvm, slot, [0x12]);
  slot.dirty_bitmap = new Set();
  const r = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(r, "RET_PF_FIXED");
  equal(kvm.stats.counters.fast_pf_fixed, 0);
  equal(kvm.host.read64(l1), (BigInt(kvm.ram.pfnOf(0x12)) << 12n) | LEAF_RW);
  deepStrictEqual([...slot.dirty_bitmap], [0x12]);
});

Deno.test("a huge SPTE in a slot that starts dirty logging is split by the slow path", () => {
  const { kvm, vcpu, slot } = makeVm(NONPAGING);
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  slot.dirty_bitmap = new Set();
  kvm_mmu_write_protect_gfns_for_log(kvm, slot, [0x12]);
  const r = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(r, "RET_PF_FIXED");
  // Fast path gave up (level > 4K with dirty logging): no fast fix, a new level-1 page.
  equal(kvm.stats.counters.fast_pf_fixed, 0);
  equal(kvm.stats.counters.sp_created, 5);
  const { l1 } = directPath(kvm, vcpu, 0x12345);
  ok(l1 >= 0);
  equal(kvm.host.read64(l1), (BigInt(kvm.ram.pfnOf(0x12)) << 12n) | LEAF_RW);
  deepStrictEqual([...slot.dirty_bitmap], [0x12]);
});

Deno.test("fast path never makes a read-only-memslot SPTE writable", () => {
  const { kvm, vcpu } = makeVm(NONPAGING);
  const rom = new KvmMemorySlot(1, 0x1000, 0x200, true);
  kvm.memslots.install(rom);
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x100_0000n, 0));
  const { l2 } = directPath(kvm, vcpu, 0x100_0000);
  // 2 MiB, not host-writable: present|P|U|A|PS = 0x8a5.
  const before = (BigInt(kvm.ram.pfnOf(0x1000)) << 12n) | 0x8a5n;
  equal(kvm.host.read64(l2), before);
  const r = nonpaging_page_fault(vcpu, new_page_fault(0x100_0000n, PF_PRESENT | PF_WRITE));
  equal(r, "RET_PF_EMULATE"); // kvm_mmu_faultin_pfn: a write to a read-only memslot
  equal(kvm.stats.counters.fast_pf_fixed, 0);
  equal(kvm.host.read64(l2), before);
});

Deno.test("fast path never makes a shadowed gfn's SPTE writable", () => {
  const { kvm, vcpu, slot } = makeVm(NONPAGING);
  slot.dirty_bitmap = new Set();
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  const { l1 } = directPath(kvm, vcpu, 0x12345);
  const pfn = BigInt(kvm.ram.pfnOf(0x12)) << 12n;
  // gfn 0x12 becomes a guest page table KVM shadows (a level-1 indirect page): account_shadowed
  // clears W and MMU-writable.
  const role: KvmMmuPageRole = { ...vcpu.mmu.root_role, level: 1, direct: false, quadrant: 0 };
  kvm_mmu_get_shadow_page(vcpu, 0x12, role);
  equal(kvm.host.read64(l1), pfn | LEAF_SHADOW_WP);

  const r = fast_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(r, "RET_PF_INVALID");
  equal(kvm.host.read64(l1), pfn | LEAF_SHADOW_WP);
  equal(kvm.stats.counters.fast_pf_fixed, 0);

  // The slow path may make it writable, by unsyncing the level-1 page.
  const slow = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(slow, "RET_PF_FIXED");
  equal(kvm.stats.counters.fast_pf_fixed, 0);
  equal(kvm.stats.counters.sp_unsync, 1);
  equal(kvm.host.read64(l1), pfn | LEAF_RW);
});

Deno.test("a present write to a write-tracked gfn is RET_PF_WRITE_PROTECTED", () => {
  const { kvm, vcpu } = makeVm(NONPAGING);
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  const role: KvmMmuPageRole = { ...vcpu.mmu.root_role, level: 2, direct: false, quadrant: 0 };
  kvm_mmu_get_shadow_page(vcpu, 0x12, role);
  ok(kvm.kvm_gfn_is_write_tracked(0x12));
  const r = nonpaging_page_fault(vcpu, new_page_fault(0x12345n, PF_PRESENT | PF_WRITE));
  equal(r, "RET_PF_WRITE_PROTECTED");
  equal(kvm.stats.counters.fast_pf_fixed, 0);
});

// ---------------------------------------------------------------------------------------------
// kvm_mmu_track_write

/**
 * A 4-level guest: PML4 @0x100000 → PDPT @0x101000 → PD @0x102000 → PT @0x103000, PTE 0x10 →
 * data page 0x200000; gva 0x10000. A read fault builds the shadow path.
 */
function longModeWithShadowedPt(): { kvm: Kvm; vcpu: KvmVcpu; pt: KvmMmuPage; pd: KvmMmuPage } {
  const { kvm, vcpu } = makeVm(LONG_MODE);
  const PWUA = 0x27n;
  kvm.writeGuestPhys(0x10_0000, 8, 0x10_1000n | PWUA);
  kvm.writeGuestPhys(0x10_1000, 8, 0x10_2000n | PWUA);
  kvm.writeGuestPhys(0x10_2000, 8, 0x10_3000n | PWUA);
  kvm.writeGuestPhys(0x10_3080, 8, 0x20_0000n | PWUA | 0x40n);
  kvm_mmu_load(vcpu);
  equal(FNAME_page_fault(vcpu, new_page_fault(0x10000n, 0)), "RET_PF_FIXED");
  const find = (gfn: number, level: number) =>
    kvm.active_mmu_pages.find((sp) => sp.gfn === gfn && sp.role.level === level)!;
  const pt = find(0x103, 1);
  const pd = find(0x102, 2);
  ok(pt && pd);
  equal((pt.spt[0x10]! & 0x800n) !== 0n, true, "leaf SPTE present");
  return { kvm, vcpu, pt, pd };
}

Deno.test("kvm_mmu_track_write zaps the SPTE of the written gpte and flushes", () => {
  const { kvm, vcpu, pt } = longModeWithShadowedPt();
  const flushes = kvm.stats.counters.remote_tlb_flushes;
  kvm.writeGuestPhys(0x10_3080, 8, 0x20_1000n | 0x67n);
  kvm_mmu_track_write(vcpu, 0x10_3080, 8);
  equal(pt.spt[0x10], NONPRESENT);
  equal(pt.role.invalid, false);
  equal(kvm.stats.counters.track_write_zaps, 1);
  equal(kvm.stats.counters.remote_tlb_flushes, flushes + 1);
});

Deno.test("kvm_mmu_track_write widens a 4-byte write under CR4.PAE to the aligned gpte", () => {
  const { kvm, vcpu, pt } = longModeWithShadowedPt();
  // Upper half of gpte 0x10 (0x103084) → the gpte at 0x103080 → SPTE 0x10.
  kvm_mmu_track_write(vcpu, 0x10_3084, 4);
  equal(pt.spt[0x10], NONPRESENT);
  equal(kvm.stats.counters.track_write_zaps, 1);
});

Deno.test("KVM quirk kept: a widened 4-byte write across two gptes zaps only the first", () => {
  const { kvm, vcpu, pt } = longModeWithShadowedPt();
  // Bytes 0x10307e..0x103081 cover gpte 0xf's top and gpte 0x10's low half, but the write is
  // widened to gpte 0xf (0x103078) only, so SPTE 0x10 survives.
  const before = pt.spt[0x10];
  kvm_mmu_track_write(vcpu, 0x10_307e, 4);
  equal(pt.spt[0x10], before);
  equal(kvm.stats.counters.track_write_zaps, 0);
  equal(kvm.stats.counters.misaligned_zaps, 0);
});

Deno.test("a misaligned write zaps the whole shadow page", () => {
  const { kvm, vcpu, pt, pd } = longModeWithShadowedPt();
  const zapped = kvm.stats.counters.sp_zapped;
  kvm_mmu_track_write(vcpu, 0x10_3080, 2);
  equal(pt.role.invalid, true);
  equal(kvm.stats.counters.misaligned_zaps, 1);
  equal(kvm.stats.counters.sp_zapped, zapped + 1);
  // The PD entry that linked the page table is gone.
  equal(pd.spt[0], NONPRESENT);
});

Deno.test("the third emulated write to an upper-level table zaps it (flooding)", () => {
  const { kvm, vcpu, pt, pd } = longModeWithShadowedPt();
  kvm_mmu_track_write(vcpu, 0x10_2000, 8);
  // First write: the PDE's link to the page table is dropped; the page table survives.
  equal(pd.spt[0], NONPRESENT);
  equal(pt.role.invalid, false);
  equal(kvm.stats.counters.track_write_zaps, 1);
  kvm_mmu_track_write(vcpu, 0x10_2008, 8);
  equal(pd.role.invalid, false);
  kvm_mmu_track_write(vcpu, 0x10_2010, 8);
  equal(pd.role.invalid, true);
  equal(kvm.stats.counters.flooding_zaps, 1);
  equal(kvm.stats.counters.track_write_zaps, 1);
});

Deno.test("a walk through the table (clear_flood) resets the flooding count", () => {
  const { kvm, vcpu, pd } = longModeWithShadowedPt();
  kvm_mmu_track_write(vcpu, 0x10_2008, 8);
  kvm_mmu_track_write(vcpu, 0x10_2008, 8);
  equal(pd.write_flooding_count, 2);
  shadow_page_table_clear_flood(vcpu, 0x10000n);
  equal(pd.write_flooding_count, 0);
  kvm_mmu_track_write(vcpu, 0x10_2008, 8);
  equal(pd.role.invalid, false);
  equal(kvm.stats.counters.flooding_zaps, 0);
});

Deno.test("kvm_mmu_track_write does nothing without indirect shadow pages", () => {
  const { kvm, vcpu } = makeVm(NONPAGING);
  kvm_mmu_load(vcpu);
  nonpaging_page_fault(vcpu, new_page_fault(0x12345n, 0));
  equal(kvm.indirect_shadow_pages, 0);
  const flushes = kvm.stats.counters.remote_tlb_flushes;
  kvm_mmu_track_write(vcpu, 0x12000, 2);
  equal(kvm.stats.counters.misaligned_zaps, 0);
  equal(kvm.stats.counters.remote_tlb_flushes, flushes);
});

// ---------------------------------------------------------------------------------------------
// The helpers, on hand-made pages

function page(fields: Partial<KvmMmuPageRole>): KvmMmuPage {
  const role = { ...roleFromWord(0), access: ACC_ALL, ...fields };
  return new KvmMmuPage(0, 0x103, role, roleWord(role), 0x999, new BigUint64Array(512), 0);
}

Deno.test("detect_write_misaligned", () => {
  const sp8 = page({ level: 1 });
  const base = 0x10_3000;
  equal(detect_write_misaligned(sp8, base, 1), false); // 1 byte, gpte-aligned
  equal(detect_write_misaligned(sp8, base + 3, 1), true); // < 4 bytes, not aligned
  equal(detect_write_misaligned(sp8, base, 2), true); // < 4 bytes
  equal(detect_write_misaligned(sp8, base + 4, 4), false); // (4 ^ 7) & ~7 = 0
  equal(detect_write_misaligned(sp8, base + 6, 4), true); // (6 ^ 9) & ~7 = 8
  equal(detect_write_misaligned(sp8, base, 8), false);
  equal(detect_write_misaligned(sp8, base + 4, 8), true); // (4 ^ 11) & ~7 = 8
  const sp4 = page({ level: 1, has_4_byte_gpte: true });
  equal(detect_write_misaligned(sp4, base + 4, 4), false);
  equal(detect_write_misaligned(sp4, base + 2, 4), true); // (2 ^ 5) & ~3 = 4
  equal(detect_write_misaligned(sp4, base, 8), true); // (0 ^ 7) & ~3 = 4
});

Deno.test("detect_write_flooding skips level 1 and fires on the third write", () => {
  const leaf = page({ level: 1 });
  for (let i = 0; i < 5; i++) equal(detect_write_flooding(leaf), false);
  equal(leaf.write_flooding_count, 0);
  const pd = page({ level: 2 });
  deepStrictEqual(
    [detect_write_flooding(pd), detect_write_flooding(pd), detect_write_flooding(pd)],
    [
      false,
      false,
      true,
    ],
  );
});

Deno.test("get_written_sptes: 8-byte gptes, 4-byte PTE quadrants, 4 MiB PDEs", () => {
  // 8-byte gptes: offset 0x88 → entry 0x11.
  deepStrictEqual(get_written_sptes(page({ level: 1 }), 0x10_3088), { index: 0x11, npte: 1 });
  // 4-byte PTE 513 (offset 0x804): 0x804 << 1 = 0x1008 → quadrant 1, entry 1.
  const q1 = page({ level: 1, has_4_byte_gpte: true, quadrant: 1 });
  deepStrictEqual(get_written_sptes(q1, 0x10_3804), { index: 1, npte: 1 });
  equal(get_written_sptes(page({ level: 1, has_4_byte_gpte: true, quadrant: 0 }), 0x10_3804), null);
  // 4-byte PDE 0x201 (offset 0x804): 0x1008 & ~7 = 0x1008, << 1 = 0x2010 → quadrant 2,
  // entries 2 and 3 (one 4 MiB guest page = two 2 MiB shadow PDEs).
  const pdq2 = page({ level: 2, has_4_byte_gpte: true, quadrant: 2 });
  deepStrictEqual(get_written_sptes(pdq2, 0x10_3804), { index: 2, npte: 2 });
});
