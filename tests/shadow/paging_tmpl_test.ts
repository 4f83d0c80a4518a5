/**
 * Tests of the shadow MMU's guest walker (`src/shadow/paging_tmpl.ts`) and of the role and
 * guest-metadata code it depends on. Every expected value is worked out by hand in the test
 * (page-table layouts, error codes, masks), never by calling the code under test.
 *
 * @module
 */
import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import {
  ACC_ALL,
  type GuestRegs,
  kvm_calc_cpu_role,
  kvm_calc_shadow_mmu_root_role,
  kvm_mmu_child_role,
  type KvmCpuRole,
  roleFromWord,
  roleWord,
  roleWordIgnoringForSync,
} from "../../src/shadow/mmu_role.ts";
import {
  permission_fault,
  PFERR_FETCH_MASK,
  PFERR_IMPLICIT_ACCESS,
  pferr_is_implicit,
  pferr_low32,
  PFERR_USER_MASK,
  pferr_with_implicit,
  PFERR_WRITE_MASK,
  reset_guest_paging_metadata,
  reset_guest_rsvds_bits_mask,
  update_permission_bitmask,
  update_pkru_bitmask,
  type Vendor,
} from "../../src/shadow/guest_metadata.ts";
import {
  gpte_access,
  gpte_to_gfn,
  gpte_to_gfn_lvl,
  type GuestWalker,
  gva_to_gpa,
  is_last_gpte,
  paging32,
  paging64,
  paging_tmpl_for,
  prefetch_invalid_gpte,
  protect_clean_gpte,
  type PttypeDesc,
  walk_addr_generic,
  type WalkerGuestAccess,
  type WalkerVcpu,
} from "../../src/shadow/paging_tmpl.ts";

// ---------------------------------------------------------------------------------------------
// Test doubles

const W = PFERR_WRITE_MASK; // 0x2
const U = PFERR_USER_MASK; // 0x4
const F = PFERR_FETCH_MASK; // 0x10

interface Slot {
  base_gfn: number;
  npages: number;
  readOnly: boolean;
}

/** Byte-addressed guest memory with memslots, recording every cmpxchg and dirty mark. */
class FakeMem implements WalkerGuestAccess {
  readonly bytes = new Map<number, number>();
  readonly slots: Slot[] = [{ base_gfn: 0, npages: 0x100, readOnly: false }];
  readonly cmpxchgs: { gpa: number; old: bigint; val: bigint }[] = [];
  readonly dirty: number[] = [];
  /** Called before a cmpxchg; a non-undefined result replaces its outcome. */
  intercept?: (gpa: number) => "changed" | "fault" | undefined;

  write(gpa: number, bytes: 4 | 8, value: bigint): void {
    for (let i = 0; i < bytes; i++) {
      this.bytes.set(gpa + i, Number((value >> BigInt(8 * i)) & 0xffn));
    }
  }
  memslot(gfn: number): { readOnly: boolean } | undefined {
    return this.slots.find((s) => gfn >= s.base_gfn && gfn < s.base_gfn + s.npages);
  }
  read(gpa: number, bytes: 4 | 8): bigint {
    let value = 0n;
    for (let i = 0; i < bytes; i++) value |= BigInt(this.bytes.get(gpa + i) ?? 0) << BigInt(8 * i);
    return value;
  }
  cmpxchg(gpa: number, bytes: 4 | 8, old: bigint, val: bigint): "ok" | "changed" | "fault" {
    this.cmpxchgs.push({ gpa, old, val });
    const forced = this.intercept?.(gpa);
    if (forced !== undefined) return forced;
    if (this.read(gpa, bytes) !== old) return "changed";
    this.write(gpa, bytes, val);
    return "ok";
  }
  markPageDirty(gfn: number): void {
    this.dirty.push(gfn);
  }
}

const BASE_REGS: GuestRegs = {
  cr0_pg: true,
  cr0_wp: true,
  cr4_pae: true,
  cr4_pse: false,
  cr4_smep: false,
  cr4_smap: false,
  cr4_pke: false,
  cr4_la57: false,
  efer_lme: true,
  efer_nx: true,
};

interface Setup {
  regs?: Partial<GuestRegs>;
  maxphyaddr?: number;
  vendor?: Vendor;
  gbpages?: boolean;
  cr3?: bigint;
  pdptrs?: bigint[];
  cpl?: number;
  ac?: boolean;
  pkru?: number;
}

function vcpuFor(s: Setup = {}): WalkerVcpu {
  const cpu_role = kvm_calc_cpu_role({ ...BASE_REGS, ...s.regs });
  const meta = reset_guest_paging_metadata(cpu_role, {
    maxphyaddr: s.maxphyaddr ?? 40,
    vendor: s.vendor ?? "intel",
    gbpages: s.gbpages ?? false,
  });
  return {
    ...meta,
    cpu_role,
    cr3: s.cr3 ?? 0x1000n,
    pdptrs: s.pdptrs ?? [0n, 0n, 0n, 0n],
    cpl: s.cpl ?? 0,
    rflags_ac: s.ac ?? false,
    pkru: s.pkru ?? 0,
  };
}

// gpte bits: P=0x1 W=0x2 U=0x4 A=0x20 D=0x40 PS=0x80; "0x27" = P|W|U|A, "0x67" = P|W|U|A|D.
const NX = 1n << 63n;

/**
 * 4-level tables for 0x40201123 (PML4 0, PDPT 1, PD 1, PT 1): PML4 at gfn 1, PDPT gfn 2,
 * PD gfn 3, PT gfn 4, page gfn 5. `flags` are the low bits of the four entries, top first.
 */
const ADDR4 = 0x4020_1123n;
function fourLevel(mem: FakeMem, flags: [number, number, number, number]): void {
  mem.write(0x1000, 8, 0x2000n | BigInt(flags[0]));
  mem.write(0x2008, 8, 0x3000n | BigInt(flags[1]));
  mem.write(0x3008, 8, 0x4000n | BigInt(flags[2]));
  mem.write(0x4008, 8, 0x5000n | BigInt(flags[3]));
}

function walk(desc: PttypeDesc, vcpu: WalkerVcpu, mem: FakeMem, addr: bigint, access: number) {
  return walk_addr_generic(desc, vcpu, mem, addr, access);
}

function errorCode(w: GuestWalker): number | null {
  return w.fault?.error_code ?? null;
}

// ---------------------------------------------------------------------------------------------
// mmu_role.ts

Deno.test("kvm_calc_cpu_role: nonpaging sets only access, direct and ext.valid", () => {
  const role = kvm_calc_cpu_role({ ...BASE_REGS, cr0_pg: false });
  // level 0 | direct (bit 7) | access 7 << 8
  equal(roleWord(role.base), 0x780);
  equal(role.ext.valid, true);
  equal(role.ext.efer_lma, false);
  equal(role.ext.cr4_smep, false);
  equal(paging_tmpl_for(role), null);
});

Deno.test("kvm_calc_cpu_role: 4-level with NX, WP and SMEP", () => {
  const role = kvm_calc_cpu_role({ ...BASE_REGS, cr4_smep: true });
  // level 4 | access 0x700 | efer_nx 0x1000 | cr0_wp 0x2000
  equal(roleWord(role.base), 0x3704);
  deepStrictEqual(role.ext, {
    valid: true,
    execonly: false,
    cr4_pse: false,
    cr4_pke: false,
    cr4_smap: false,
    cr4_smep: true,
    cr4_la57: false,
    efer_lma: true,
  });
  equal(paging_tmpl_for(role), paging64);
});

Deno.test("kvm_calc_cpu_role: 32-bit, WP=0, SMEP and SMAP, PKE/LA57 ignored without LMA", () => {
  const role = kvm_calc_cpu_role({
    ...BASE_REGS,
    cr4_pae: false,
    efer_lme: false,
    efer_nx: false,
    cr0_wp: false,
    cr4_smep: true,
    cr4_smap: true,
    cr4_pke: true,
    cr4_la57: true,
  });
  // level 2 | has_4_byte_gpte 0x10 | access 0x700 | smep_andnot_wp 0x4000 | smap_andnot_wp 0x8000
  equal(roleWord(role.base), 0xc712);
  equal(role.ext.cr4_pke, false);
  equal(role.ext.cr4_la57, false);
  equal(paging_tmpl_for(role), paging32);
});

Deno.test("kvm_calc_cpu_role: PAE and 5-level levels, SMM in bits 31:24", () => {
  const pae = kvm_calc_cpu_role({ ...BASE_REGS, efer_lme: false, smm: true });
  equal(pae.base.level, 3);
  equal(roleWord(pae.base), 0x0100_3703);
  const la57 = kvm_calc_cpu_role({ ...BASE_REGS, cr4_la57: true, cr4_pke: true });
  equal(la57.base.level, 5);
  equal(la57.ext.cr4_la57, true);
  equal(la57.ext.cr4_pke, true);
});

Deno.test("root role: level max(level, 3), efer_nx forced, nonpaging root is direct", () => {
  const nonpaging = kvm_calc_shadow_mmu_root_role(
    kvm_calc_cpu_role({ ...BASE_REGS, cr0_pg: false }),
  );
  // level 3 | direct 0x80 | access 0x700 | efer_nx 0x1000
  equal(roleWord(nonpaging), 0x1783);
  const legacy = kvm_calc_shadow_mmu_root_role(
    kvm_calc_cpu_role({ ...BASE_REGS, cr4_pae: false, efer_lme: false, efer_nx: false }),
  );
  // level 3 | has_4_byte_gpte | access | efer_nx | cr0_wp
  equal(roleWord(legacy), 0x3713);
  const four = kvm_calc_shadow_mmu_root_role(
    kvm_calc_cpu_role({ ...BASE_REGS, efer_nx: false }),
  );
  equal(roleWord(four), 0x3704);
});

Deno.test("kvm_mmu_child_role: quadrant = parent index & 1 for 4-byte gptes only", () => {
  const parent32 = { ...roleFromWord(0x3712), quadrant: 3 }; // level 2, 4-byte gptes
  const child32 = kvm_mmu_child_role(parent32, 5, false, 5);
  equal(child32.level, 1);
  equal(child32.quadrant, 1);
  equal(child32.access, 5);
  // level 1 | has_4_byte_gpte | quadrant 1 << 5 | access 5 << 8 | efer_nx | cr0_wp
  equal(roleWord(child32), 0x3531);
  const parent64 = { ...roleFromWord(0x3704), passthrough: true };
  const child64 = kvm_mmu_child_role(parent64, 5, true, ACC_ALL);
  // level 3 | direct | access 7 | efer_nx | cr0_wp, passthrough cleared, quadrant stays 0
  equal(roleWord(child64), 0x3783);
});

Deno.test("role word: round trip, range check, sync_role_ign", () => {
  equal(roleWord(roleFromWord(0xff07_ffff)), 0xff07_ffff);
  equal(roleWord(roleFromWord(0x00f8_0000)), 0); // bits 23:19 are unused
  throws(() => roleWord({ ...roleFromWord(0), access: 8 }), RangeError);
  const a = roleFromWord(0x3704);
  const b = { ...a, level: 1, access: 3, quadrant: 2, passthrough: true };
  equal(roleWordIgnoringForSync(a), roleWordIgnoringForSync(b));
  equal(roleWordIgnoringForSync(a), 0x3000);
  ok(roleWordIgnoringForSync({ ...a, cr0_wp: false }) !== roleWordIgnoringForSync(a));
});

// ---------------------------------------------------------------------------------------------
// guest_metadata.ts

function role(regs: Partial<GuestRegs>): KvmCpuRole {
  return kvm_calc_cpu_role({ ...BASE_REGS, ...regs });
}

Deno.test("rsvd masks: 4-level, MAXPHYADDR 40, Intel vs AMD, NX, GBPAGES", () => {
  const intel = reset_guest_rsvds_bits_mask(role({}), 40, "intel", false).rsvd_bits_mask;
  const hi = 0x000f_ff00_0000_0000n; // bits 51:40
  equal(intel[0][3], hi | 0x80n); // PML4E: hi, bit 7
  equal(intel[1][3], hi | 0x80n);
  equal(intel[0][2], hi | 0x80n); // PDPTE -> PD (bit 7 row 0: moot)
  equal(intel[1][2], hi | 0x80n | 0x3fff_e000n); // 1 GiB without GBPAGES: + bit 7, 29:13
  equal(intel[1][1], hi | 0x1f_e000n); // 2 MiB: 20:13
  equal(intel[0][1], hi);
  equal(intel[0][0], hi);
  equal(intel[1][0], hi);
  equal(intel[0][4], 0n); // no PML5 in 4-level mode
  const amd = reset_guest_rsvds_bits_mask(role({}), 40, "amd", true).rsvd_bits_mask;
  equal(amd[0][3], hi | 0x180n); // + bit 8
  equal(amd[1][2], hi | 0x3fff_e000n); // GBPAGES: bit 7 allowed
  const noNx = reset_guest_rsvds_bits_mask(role({ efer_nx: false }), 52, "intel", true);
  equal(noNx.rsvd_bits_mask[0][0], 1n << 63n); // MAXPHYADDR 52: only bit 63
  const five = reset_guest_rsvds_bits_mask(role({ cr4_la57: true }), 48, "amd", true);
  equal(five.rsvd_bits_mask[0][4], 0x000f_0000_0000_0180n);
});

Deno.test("rsvd masks: PAE (bits 62:MAXPHYADDR) and 32-bit PSE quirk 21:17", () => {
  const pae =
    reset_guest_rsvds_bits_mask(role({ efer_lme: false, efer_nx: false }), 36, "intel", true)
      .rsvd_bits_mask;
  const hi = 0xffff_fff0_0000_0000n; // 62:36 plus 63 (!NX)
  equal(pae[0][2], hi | 0x1e6n); // PDPTE: 63, hi, 8:5, 2:1
  equal(pae[0][1], hi);
  equal(pae[1][1], hi | 0x1f_e000n);
  equal(pae[0][0], hi);
  const paeNx = reset_guest_rsvds_bits_mask(role({ efer_lme: false }), 36, "intel", true);
  equal(paeNx.rsvd_bits_mask[0][0], 0x7fff_fff0_0000_0000n);
  for (const maxphyaddr of [36, 40, 52]) {
    const pse = reset_guest_rsvds_bits_mask(
      role({ cr4_pae: false, efer_lme: false, cr4_pse: true }),
      maxphyaddr,
      "intel",
      false,
    ).rsvd_bits_mask;
    equal(pse[1][1], 0x3e_0000n); // bits 21:17 whatever MAXPHYADDR is
    equal(pse[0][1], 0n);
    equal(pse[0][0], 0n);
    equal(pse[1][0], 0n);
  }
  const noPse = reset_guest_rsvds_bits_mask(
    role({ cr4_pae: false, efer_lme: false }),
    40,
    "intel",
    false,
  );
  equal(noPse.rsvd_bits_mask[1][1], 0n);
});

Deno.test("update_permission_bitmask: W/U/F, CR0.WP, NX, SMEP, SMAP rows", () => {
  // Bytes are indexed by pfec >> 1: 1 = W, 2 = U, 4 = RSVD (SMAP override), 8 = F.
  const p = update_permission_bitmask(role({}));
  equal(p[0], 0x00); // supervisor read
  equal(p[1], 0x33); // supervisor write: every ACC value without W (0,1,4,5)
  equal(p[2], 0x0f); // user read: every ACC value without U (0..3)
  equal(p[3], 0x3f); // user write
  equal(p[8], 0x55); // supervisor fetch: ACC values without X (0,2,4,6)
  equal(p[10], 0x5f); // user fetch
  equal(update_permission_bitmask(role({ efer_nx: false }))[8], 0x00);
  const wp0 = update_permission_bitmask(role({ cr0_wp: false }));
  equal(wp0[1], 0x00); // supervisor writes ignore W
  equal(wp0[3], 0x3f); // user writes do not
  const smep = update_permission_bitmask(role({ cr4_smep: true }));
  equal(smep[8], 0xf5); // + every ACC value with U (4..7)
  equal(smep[12], 0xf5); // SMEP ignores the SMAP override
  equal(smep[0], 0x00);
  const smap = update_permission_bitmask(role({ cr4_smap: true }));
  equal(smap[0], 0xf0);
  equal(smap[4], 0x00); // override set
  equal(smap[1], 0xf3);
  equal(smap[5], 0x33);
  equal(smap[8], 0x55); // fetches are not SMAP's
  equal(smap[2], 0x0f); // user accesses are not SMAP's
});

Deno.test("update_pkru_bitmask: 0 without PKE or LMA, AD/WD pairs otherwise", () => {
  equal(update_pkru_bitmask(role({})), 0);
  equal(update_pkru_bitmask(role({ cr4_pke: true, efer_lme: false })), 0);
  // pfec 8 (sup read, U page) AD; 10 (sup write) AD+WD with WP; 12 user read AD; 14 AD+WD.
  equal(update_pkru_bitmask(role({ cr4_pke: true })), 0xdd00);
  equal(update_pkru_bitmask(role({ cr4_pke: true, cr0_wp: false })), 0xd500);
});

Deno.test("permission_fault: returns P (and PK) only, SMAP override and the implicit flag", () => {
  const smap = { permissions: update_permission_bitmask(role({ cr4_smap: true })), pkru_mask: 0 };
  equal(permission_fault(smap, 0, false, 7, 0, 0, 0), 0x1);
  equal(permission_fault(smap, 0, true, 7, 0, 0, 0), 0);
  equal(permission_fault(smap, 0, true, 7, 0, PFERR_IMPLICIT_ACCESS, 0), 0x1);
  equal(permission_fault(smap, 3, false, 3, 0, W, 0), 0); // sup write to sup RW page
  equal(permission_fault(smap, 3, false, 5, 0, W | U, 0), 0x1);
  throws(() => permission_fault(smap, 0, false, 7, 0, 0x8, 0), RangeError);
  // Bit 48 does not survive JS `|`; pferr_with_implicit adds it.
  equal(PFERR_IMPLICIT_ACCESS | W, W);
  equal(pferr_with_implicit(W), 2 ** 48 + 2);
  equal(pferr_with_implicit(pferr_with_implicit(W)), 2 ** 48 + 2);
  equal(pferr_is_implicit(pferr_with_implicit(W)), true);
  equal(pferr_is_implicit(W), false);
  equal(pferr_low32(pferr_with_implicit(W | U)), 6);
  const pk = {
    permissions: update_permission_bitmask(role({ cr4_pke: true })),
    pkru_mask: update_pkru_bitmask(role({ cr4_pke: true })),
  };
  const pkru = 0x4; // key 1: AD
  equal(permission_fault(pk, 3, false, 7, 1, U, pkru), 0x21);
  equal(permission_fault(pk, 3, false, 7, 0, U, pkru), 0); // key 0 is open
  equal(permission_fault(pk, 0, false, 3, 1, 0, pkru), 0); // supervisor page: no PK
  equal(permission_fault(pk, 3, false, 5, 1, W | U, pkru), 0x21); // W fault and PK
});

// ---------------------------------------------------------------------------------------------
// paging_tmpl.ts helpers

Deno.test("gpte helpers: access, protect_clean_gpte, gfn masks, is_last_gpte", () => {
  equal(gpte_access(paging64, 0x8000_0000_0000_0007n), 0x6); // NX clears X
  equal(gpte_access(paging64, 0x5n), 0x5); // P -> X, U
  equal(gpte_access(paging32, 0x7n), 0x7);
  equal(protect_clean_gpte(7, 0x40n), 7);
  equal(protect_clean_gpte(7, 0x00n), 5);
  equal(protect_clean_gpte(5, 0x40n), 5);
  equal(gpte_to_gfn(paging64, 0x800f_ffff_ffff_f067n), 0xff_ffff_ffff);
  equal(gpte_to_gfn(paging32, 0xffff_f067n), 0xfffff);
  equal(gpte_to_gfn_lvl(paging32, 0x00c0_60e7n, 2), 0xc00);
  equal(gpte_to_gfn_lvl(paging64, 0x4030_00e7n, 3), 0x40000);
  const pse = role({ cr4_pae: false, efer_lme: false, cr4_pse: true });
  const nopse = role({ cr4_pae: false, efer_lme: false });
  equal(is_last_gpte(paging32, pse, 2, 0x80n), true);
  equal(is_last_gpte(paging32, nopse, 2, 0x80n), false);
  equal(is_last_gpte(paging32, nopse, 1, 0x0n), true);
  equal(is_last_gpte(paging64, role({}), 2, 0x80n), true);
  equal(is_last_gpte(paging64, role({}), 3, 0x01n), false);
});

Deno.test("prefetch_invalid_gpte: not present, A=0, level-1 reserved bits", () => {
  const vcpu = vcpuFor({ maxphyaddr: 36 });
  equal(prefetch_invalid_gpte(paging64, vcpu, 0x5026n), true); // P=0
  equal(prefetch_invalid_gpte(paging64, vcpu, 0x5007n), true); // A=0
  equal(prefetch_invalid_gpte(paging64, vcpu, 0x10_0000_5027n), true); // bit 36
  equal(prefetch_invalid_gpte(paging64, vcpu, 0x5027n | NX), false);
  equal(prefetch_invalid_gpte(paging64, vcpu, 0x50a7n), false); // PAT bit in a PTE
  const v32 = vcpuFor({ regs: { cr4_pae: false, efer_lme: false, cr4_pse: true } });
  equal(prefetch_invalid_gpte(paging32, v32, 0x003e_00a7n), false); // 21:17 only for 4 MiB PDEs
});

// ---------------------------------------------------------------------------------------------
// Walks

Deno.test("4-level walk: gfn, levels, table gfns and gpas; no A/D write when all set", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x67]);
  const w = walk(paging64, vcpuFor(), mem, ADDR4, 0);
  equal(w.fault, null);
  equal(w.gfn, 5);
  equal(w.level, 1);
  equal(w.max_level, 4);
  equal(w.pte_access, 7);
  deepStrictEqual(w.table_gfn.slice(0, 4), [4, 3, 2, 1]);
  deepStrictEqual(w.pte_gpa.slice(0, 4), [0x4008, 0x3008, 0x2008, 0x1000]);
  deepStrictEqual(w.pt_access.slice(0, 4), [7, 7, 7, 7]);
  equal(w.prefetch_ptes.length, 8);
  equal(mem.cmpxchgs.length, 0);
  deepStrictEqual(mem.dirty, []);
  deepStrictEqual(gva_to_gpa(paging64, vcpuFor(), mem, ADDR4, 0), { gpa: 0x5123, exception: null });
  deepStrictEqual(gva_to_gpa(paging64, vcpuFor(), mem, 0x8000_0000n, U), {
    gpa: null,
    exception: { error_code: 0x4, address: 0x8000_0000n },
  });
});

Deno.test("4-level walk: high canonical address uses PML4 index 256", () => {
  const mem = new FakeMem();
  mem.write(0x1800, 8, 0x2027n);
  mem.write(0x2000, 8, 0x3027n);
  mem.write(0x3000, 8, 0x4027n);
  mem.write(0x4000, 8, 0x9067n);
  const w = walk(paging64, vcpuFor(), mem, 0xffff_8000_0000_0123n, 0);
  equal(w.fault, null);
  equal(w.gfn, 9);
  equal(w.pte_gpa[3], 0x1800);
});

Deno.test("A/D: set top-down after success, D on the leaf for a write, dirty table gfns", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x07, 0x07, 0x07, 0x07]);
  const w = walk(paging64, vcpuFor(), mem, ADDR4, W | U);
  equal(w.fault, null);
  deepStrictEqual(mem.cmpxchgs, [
    { gpa: 0x1000, old: 0x2007n, val: 0x2027n },
    { gpa: 0x2008, old: 0x3007n, val: 0x3027n },
    { gpa: 0x3008, old: 0x4007n, val: 0x4027n },
    { gpa: 0x4008, old: 0x5007n, val: 0x5067n },
  ]);
  deepStrictEqual(mem.dirty, [1, 2, 3, 4]);
  deepStrictEqual(w.ptes.slice(0, 4), [0x5067n, 0x4027n, 0x3027n, 0x2027n]);
  equal(mem.read(0x4008, 8), 0x5067n);
  equal(w.pte_access, 7); // a write keeps W
});

Deno.test("A/D: a read sets A only; protect_clean_gpte removes W from a clean leaf", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x07]);
  const w = walk(paging64, vcpuFor(), mem, ADDR4, U);
  equal(w.fault, null);
  equal(w.pte_access, 5); // X|U: W withheld until the first write sets D
  deepStrictEqual(mem.cmpxchgs, [{ gpa: 0x4008, old: 0x5007n, val: 0x5027n }]);
  deepStrictEqual(mem.dirty, [4]);
});

Deno.test("A/D: a clean leaf with A set still needs D on a write", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x27]);
  const w = walk(paging64, vcpuFor(), mem, ADDR4, W);
  equal(w.fault, null);
  deepStrictEqual(mem.cmpxchgs, [{ gpa: 0x4008, old: 0x5027n, val: 0x5067n }]);
});

Deno.test("A/D: a faulting walk sets no A bit", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x07, 0x07, 0x07, 0x05]); // leaf read-only
  const w = walk(paging64, vcpuFor(), mem, ADDR4, W | U);
  equal(errorCode(w), 0x7); // P|W|U
  equal(w.fault?.address, ADDR4);
  equal(mem.cmpxchgs.length, 0);
  equal(mem.read(0x1000, 8), 0x2007n);
});

Deno.test("A/D: CR0.WP=0 supervisor write to a read-only page succeeds and sets D", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x25]);
  const w = walk(paging64, vcpuFor({ regs: { cr0_wp: false } }), mem, ADDR4, W);
  equal(w.fault, null);
  equal(w.pte_access, 5);
  equal(mem.read(0x4008, 8), 0x5065n);
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, W)), 0x3); // WP=1: P|W
});

Deno.test("A/D: tables in a read-only memslot (ROM) are skipped silently", () => {
  const mem = new FakeMem();
  mem.slots.splice(0, 1, { base_gfn: 0, npages: 4, readOnly: false }, {
    base_gfn: 4,
    npages: 0x100,
    readOnly: true,
  });
  fourLevel(mem, [0x07, 0x27, 0x27, 0x07]);
  const w = walk(paging64, vcpuFor(), mem, ADDR4, W);
  equal(w.fault, null);
  equal(w.pte_writable[0], false);
  deepStrictEqual(mem.cmpxchgs, [{ gpa: 0x1000, old: 0x2007n, val: 0x2027n }]);
  equal(mem.read(0x4008, 8), 0x5007n);
  equal(w.ptes[0], 0x5007n);
});

Deno.test("A/D: a lost cmpxchg restarts the whole walk (retry_walk)", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x07, 0x07, 0x07, 0x07]);
  let raced = false;
  mem.intercept = (gpa) => {
    if (gpa !== 0x4008 || raced) return undefined;
    raced = true;
    mem.write(0x4008, 8, 0x6027n); // another vCPU remapped the page meanwhile
    return "changed";
  };
  const w = walk(paging64, vcpuFor(), mem, ADDR4, 0);
  equal(w.fault, null);
  equal(w.retries, 1);
  equal(w.gfn, 6);
  deepStrictEqual(mem.cmpxchgs.map((c) => c.gpa), [0x1000, 0x2008, 0x3008, 0x4008]);
  deepStrictEqual(mem.dirty, [1, 2, 3]);
});

Deno.test("A/D: a faulting cmpxchg fails the walk with P=0", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x07]);
  mem.intercept = () => "fault";
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, W | U)), 0x6);
});

Deno.test("error codes: not present, U/S, R/W, NX and the I/D rule", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x66]); // leaf not present
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, U)), 0x4);
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, U | F)), 0x14);
  equal(errorCode(walk(paging64, vcpuFor({ regs: { efer_nx: false } }), mem, ADDR4, U | F)), 0x4);
  const smepNoNx = vcpuFor({ regs: { efer_nx: false, cr4_smep: true } });
  equal(errorCode(walk(paging64, smepNoNx, mem, ADDR4, F)), 0x10);

  fourLevel(mem, [0x27, 0x27, 0x23, 0x67]); // PDE supervisor-only
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, U)), 0x5);
  equal(walk(paging64, vcpuFor(), mem, ADDR4, W).fault, null);

  fourLevel(mem, [0x27, 0x25, 0x27, 0x67]); // PDPTE read-only
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, W | U)), 0x7);
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, W)), 0x3);

  fourLevel(mem, [0x27, 0x27, 0x27, 0x67]);
  mem.write(0x3008, 8, 0x4027n | NX); // NX in the PDE
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, F)), 0x11);
  equal(errorCode(walk(paging64, vcpuFor(), mem, ADDR4, U | F)), 0x15);
  const ok1 = walk(paging64, vcpuFor(), mem, ADDR4, U);
  equal(ok1.fault, null);
  equal(ok1.pte_access, 6); // W|U, no X
  deepStrictEqual(ok1.pt_access.slice(0, 2), [6, 7]); // PT level sees the PDE's NX
});

Deno.test("SMEP and SMAP (EFLAGS.AC and the implicit-access flag)", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x67]); // user page
  const smep = vcpuFor({ regs: { cr4_smep: true } });
  equal(errorCode(walk(paging64, smep, mem, ADDR4, F)), 0x11);
  equal(walk(paging64, smep, mem, ADDR4, U | F).fault, null);
  const smap = vcpuFor({ regs: { cr4_smap: true } });
  equal(errorCode(walk(paging64, smap, mem, ADDR4, 0)), 0x1);
  equal(errorCode(walk(paging64, smap, mem, ADDR4, W)), 0x3);
  equal(walk(paging64, smap, mem, ADDR4, F).fault, null); // fetch: SMEP's business
  const ac = vcpuFor({ regs: { cr4_smap: true }, ac: true });
  equal(walk(paging64, ac, mem, ADDR4, W).fault, null);
  equal(errorCode(walk(paging64, ac, mem, ADDR4, pferr_with_implicit(0))), 0x1);
  equal(errorCode(walk(paging64, ac, mem, ADDR4, pferr_with_implicit(W))), 0x3);
  fourLevel(mem, [0x27, 0x27, 0x27, 0x63]); // supervisor page: SMAP does not apply
  equal(walk(paging64, smap, mem, ADDR4, 0).fault, null);
});

Deno.test("reserved bits: RSVD|P, per level, AMD bit 8, NX without EFER.NX, GBPAGES", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x67]);
  mem.write(0x4008, 8, 0x10_0000_5067n); // bit 36 with MAXPHYADDR 36
  const m36 = vcpuFor({ maxphyaddr: 36 });
  equal(errorCode(walk(paging64, m36, mem, ADDR4, 0)), 0x9);
  equal(errorCode(walk(paging64, m36, mem, ADDR4, W | U)), 0xf);
  equal(walk(paging64, vcpuFor({ maxphyaddr: 40 }), mem, ADDR4, 0).fault, null);

  fourLevel(mem, [0xa7, 0x27, 0x27, 0x67]); // PS in a PML4E
  const psWalk = walk(paging64, vcpuFor(), mem, ADDR4, 0);
  equal(errorCode(psWalk), 0x9);
  equal(psWalk.level, 4);
  equal(mem.cmpxchgs.length, 0);

  fourLevel(mem, [0x127, 0x27, 0x27, 0x67]); // bit 8 in a PML4E
  equal(walk(paging64, vcpuFor({ vendor: "intel" }), mem, ADDR4, 0).fault, null);
  equal(errorCode(walk(paging64, vcpuFor({ vendor: "amd" }), mem, ADDR4, 0)), 0x9);

  fourLevel(mem, [0x27, 0x27, 0x27, 0x67]);
  mem.write(0x4008, 8, 0x5067n | NX);
  equal(errorCode(walk(paging64, vcpuFor({ regs: { efer_nx: false } }), mem, ADDR4, 0)), 0x9);

  // A 1 GiB page at PDPT index 1: reserved without GBPAGES, else gfn 0x40000 + 0x12345.
  const addr1g = 0x5234_5678n;
  mem.write(0x2008, 8, 0x4000_00e7n);
  equal(errorCode(walk(paging64, vcpuFor({ gbpages: false }), mem, addr1g, 0)), 0x9);
  const huge = walk(paging64, vcpuFor({ gbpages: true }), mem, addr1g, 0);
  equal(huge.fault, null);
  equal(huge.level, 3);
  equal(huge.gfn, 0x52345);
  mem.write(0x2008, 8, 0x4000_20e7n); // bit 13 of a 1 GiB PDPTE
  equal(errorCode(walk(paging64, vcpuFor({ gbpages: true }), mem, addr1g, 0)), 0x9);
});

Deno.test("table outside every memslot: #PF with P=0 (KVM's deviation)", () => {
  const mem = new FakeMem();
  fourLevel(mem, [0x27, 0x27, 0x27, 0x67]);
  mem.write(0x3008, 8, 0x20_0000_0027n); // PT at gfn 0x2000000: no memslot
  const w = walk(paging64, vcpuFor(), mem, ADDR4, U);
  equal(errorCode(w), 0x4);
  equal(w.fault?.address, ADDR4);
  equal(w.level, 1);
  equal(w.table_gfn[0], 0x200_0000);
  const root = walk(paging64, vcpuFor({ cr3: 0x4000_0000n }), mem, ADDR4, W);
  equal(errorCode(root), 0x2);
});

Deno.test("5-level walk and a reserved PML5E", () => {
  const mem = new FakeMem();
  const addr = 0x0001_0000_4020_1123n; // PML5 1, PML4 0, PDPT 1, PD 1, PT 1
  mem.write(0x1008, 8, 0x2027n);
  mem.write(0x2000, 8, 0x3027n);
  mem.write(0x3008, 8, 0x4027n);
  mem.write(0x4008, 8, 0x5027n);
  mem.write(0x5008, 8, 0x6067n);
  const vcpu = vcpuFor({ regs: { cr4_la57: true } });
  const w = walk(paging64, vcpu, mem, addr, 0);
  equal(w.fault, null);
  equal(w.gfn, 6);
  equal(w.max_level, 5);
  deepStrictEqual(w.table_gfn, [5, 4, 3, 2, 1]);
  mem.write(0x1008, 8, 0x20a7n);
  equal(errorCode(walk(paging64, vcpu, mem, addr, 0)), 0x9);
});

Deno.test("PAE: starts from the cached PDPTE, ignores later PDPT edits, 2 MiB pages", () => {
  const mem = new FakeMem();
  const pdptrs = [0n, 0x3001n, 0n, 0n];
  mem.write(0x1008, 8, 0x9001n); // the in-memory PDPT now says something else
  mem.write(0x3008, 8, 0x4007n);
  mem.write(0x4008, 8, 0x5067n);
  const vcpu = vcpuFor({ regs: { efer_lme: false }, pdptrs });
  const w = walk(paging64, vcpu, mem, ADDR4, W);
  equal(w.fault, null);
  equal(w.gfn, 5);
  equal(w.max_level, 2);
  deepStrictEqual(w.table_gfn.slice(0, 2), [4, 3]);
  deepStrictEqual(mem.cmpxchgs.map((c) => c.gpa), [0x3008]); // the PDPTE is never touched

  const notPresent = walk(paging64, vcpu, mem, 0x123n, U | F);
  equal(errorCode(notPresent), 0x14);
  equal(notPresent.fault?.address, 0x123n);

  // A PDPTE with reserved bits is not re-checked by the walker (load_pdptrs validated it).
  const odd = vcpuFor({ regs: { efer_lme: false }, pdptrs: [0n, 0x3007n, 0n, 0n] });
  equal(walk(paging64, odd, mem, ADDR4, 0).fault, null);

  mem.write(0x3008, 8, 0x0020_00e7n); // 2 MiB page at gfn 0x200
  const big = walk(paging64, vcpu, mem, ADDR4, 0);
  equal(big.fault, null);
  equal(big.level, 2);
  equal(big.gfn, 0x201);
  mem.write(0x3008, 8, 0x0020_20e7n); // bit 13
  equal(errorCode(walk(paging64, vcpu, mem, ADDR4, 0)), 0x9);
  mem.write(0x3008, 8, 0x4027n | NX);
  equal(errorCode(walk(paging64, vcpu, mem, ADDR4, F)), 0x11);
});

Deno.test("paging32: 4 KiB walk, 4-byte gptes, top-level pt_access quirk", () => {
  const mem = new FakeMem();
  const addr = 0x0040_1123n; // PD index 1, PT index 1
  mem.write(0x1004, 4, 0x2027n);
  mem.write(0x2004, 4, 0x5047n);
  const vcpu = vcpuFor({ regs: { cr4_pae: false, efer_lme: false, efer_nx: false } });
  const w = walk(paging32, vcpu, mem, addr, 0);
  equal(w.fault, null);
  equal(w.gfn, 5);
  deepStrictEqual(w.pte_gpa, [0x2004, 0x1004]);
  deepStrictEqual(mem.cmpxchgs, [{ gpa: 0x2004, old: 0x5047n, val: 0x5067n }]);
  // KVM computes pt_access[top] as gpte_access(~0ULL): bit 63 of the all-ones u64 clears X.
  deepStrictEqual(w.pt_access, [7, 6]);
  equal(w.pte_access, 7);
  equal(mem.read(0x2008, 4), 0n); // a 4-byte cmpxchg does not spill
});

Deno.test("paging32: PSE 4 MiB pages, PSE-36 delta, bits 21:17 reserved, bit 7 without PSE", () => {
  const mem = new FakeMem();
  const addr = 0x0040_1123n;
  const pse = vcpuFor({ regs: { cr4_pae: false, efer_lme: false, cr4_pse: true } });
  const nopse = vcpuFor({ regs: { cr4_pae: false, efer_lme: false } });
  mem.write(0x1004, 4, 0x00c0_00e7n);
  const big = walk(paging32, pse, mem, addr, 0);
  equal(big.fault, null);
  equal(big.level, 2);
  equal(big.gfn, 0xc01);
  // Without CR4.PSE bit 7 is ignored: the PDE points at a page table at gfn 0xc00.
  mem.slots.push({ base_gfn: 0xc00, npages: 1, readOnly: false });
  mem.write(0xc0_0004, 4, 0x7067n);
  const small = walk(paging32, nopse, mem, addr, 0);
  equal(small.fault, null);
  equal(small.level, 1);
  equal(small.gfn, 7);
  // PSE-36: PDE bits 16:13 = 3 become gfn bits 23:20.
  mem.write(0x1004, 4, 0x00c0_60e7n);
  equal(walk(paging32, pse, mem, addr, 0).gfn, 0x30_0c01);
  // Bit 17 is reserved even with MAXPHYADDR 40 (KVM's fixed PSE-36 layout).
  mem.write(0x1004, 4, 0x00c2_00e7n);
  const m40 = vcpuFor({ regs: { cr4_pae: false, efer_lme: false, cr4_pse: true }, maxphyaddr: 40 });
  equal(errorCode(walk(paging32, m40, mem, addr, U)), 0xd);
  // The same bit in a non-PS PDE is just an address bit: no fault at the PDE level.
  mem.write(0x1004, 4, 0x0002_2027n);
  mem.write(0x22004, 4, 0x8067n);
  equal(walk(paging32, m40, mem, addr, 0).gfn, 8);
});

Deno.test("paging32: I/D reported for a fetch when EFER.NX=1 even without PAE (KVM rule)", () => {
  const mem = new FakeMem();
  mem.write(0x1004, 4, 0x2027n);
  mem.write(0x2004, 4, 0x5066n); // not present
  const addr = 0x0040_1123n;
  const nx = vcpuFor({ regs: { cr4_pae: false, efer_lme: false, efer_nx: true } });
  equal(errorCode(walk(paging32, nx, mem, addr, U | F)), 0x14);
  const plain = vcpuFor({ regs: { cr4_pae: false, efer_lme: false, efer_nx: false } });
  equal(errorCode(walk(paging32, plain, mem, addr, U | F)), 0x4);
});

Deno.test("walker refuses modes KVM asserts away", () => {
  const mem = new FakeMem();
  const lmaNoPae = vcpuFor({ regs: { cr4_pae: false } });
  throws(() => walk(paging32, lmaNoPae, mem, 0n, 0), Error);
  throws(() => walk(paging32, vcpuFor(), mem, 0n, 0), Error);
});
