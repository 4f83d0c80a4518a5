/**
 * The parts of `x86.c` the shadow MMU depends on: MMU context init and reset
 * (`kvm_init_mmu`, `kvm_mmu_reset_context`), control-register writes (`kvm_set_cr0`,
 * `kvm_set_cr3`, `kvm_set_cr4`, `kvm_set_efer`), `load_pdptrs`, `kvm_invalidate_pcid`, and the
 * request servicing of `vcpu_enter_guest`.
 *
 * CPUID under shadow paging: KVM clears PKU when TDP is off, so CR4.PKE is reserved here.
 *
 * @module
 */
import { INVALID_PAGE, type KvmMmu, type KvmRequest, type KvmVcpu } from "./kvm_vcpu.ts";
import { MmuLockContended } from "./kvm.ts";
import {
  cpuRoleAsU64,
  kvm_calc_cpu_role,
  kvm_calc_shadow_mmu_root_role,
  roleWord,
} from "./mmu_role.ts";
import { reset_guest_paging_metadata } from "./guest_metadata.ts";
import {
  kvm_mmu_free_obsolete_roots,
  kvm_mmu_free_roots,
  kvm_mmu_new_pgd,
  kvm_mmu_reload,
  kvm_mmu_sync_roots,
  kvm_mmu_unload,
  kvm_vcpu_flush_tlb_current,
  kvm_vcpu_flush_tlb_guest,
} from "./mmu_roots.ts";
import { PT_PRESENT_MASK } from "./spte.ts";

/** `shadow_mmu_init_context` / `kvm_init_shadow_mmu`: recomputes the roles and metadata. */
export function kvm_init_mmu(vcpu: KvmVcpu): void {
  const a = vcpu.arch;
  const cpu_role = kvm_calc_cpu_role({
    cr0_pg: a.cr0_pg,
    cr0_wp: a.cr0_wp,
    cr4_pae: a.cr4_pae,
    cr4_pse: a.cr4_pse,
    cr4_smep: a.cr4_smep,
    cr4_smap: a.cr4_smap,
    cr4_pke: a.cr4_pke,
    cr4_la57: a.cr4_la57,
    efer_lme: a.efer_lme,
    efer_nx: a.efer_nx,
  });
  const root_role = kvm_calc_shadow_mmu_root_role(cpu_role);
  // Stale role bits: the shadow pages' role forgets a bit whose change must not reuse them.
  if (vcpu.kvm.bug("cr0_wp_not_in_role")) root_role.cr0_wp = true;
  if (vcpu.kvm.bug("smep_andnot_wp_not_in_role")) root_role.smep_andnot_wp = false;
  const mmu = vcpu.mmu as KvmMmu | undefined;
  if (
    mmu && cpuRoleAsU64(mmu.cpu_role) === cpuRoleAsU64(cpu_role) &&
    roleWord(mmu.root_role) === roleWord(root_role)
  ) return;
  const cpuid = vcpu.kvm.cpuid;
  const meta = reset_guest_paging_metadata(
    cpu_role,
    { maxphyaddr: cpuid.maxphyaddr, vendor: cpuid.vendor, gbpages: cpuid.gbpages },
    mmu
      ? {
        guest_rsvd_check: mmu.guest_rsvd_check,
        permissions: mmu.permissions,
        pkru_mask: mmu.pkru_mask,
      }
      : undefined,
  );
  vcpu.mmu = {
    cpu_role,
    root_role,
    handler: cpu_role.base.level === 0
      ? "nonpaging"
      : cpu_role.base.has_4_byte_gpte
      ? "paging32"
      : "paging64",
    root: mmu?.root ?? { hpa: INVALID_PAGE, pgd: 0n },
    prev_roots: mmu?.prev_roots ?? [0, 1, 2].map(() => ({ hpa: INVALID_PAGE, pgd: 0n })),
    pae_root: mmu?.pae_root ?? vcpu.kvm.host.allocKernelPage(),
    pdptrs: mmu?.pdptrs ?? [0n, 0n, 0n, 0n],
    ...meta,
  };
}

/** `kvm_mmu_reset_context`: unloads every root and re-inits the context. */
export function kvm_mmu_reset_context(vcpu: KvmVcpu): void {
  kvm_mmu_unload(vcpu);
  kvm_init_mmu(vcpu);
}

/** `pdptr_rsvd_bits`: reserved gpa bits, 8:5 and 2:1. */
function pdptr_rsvd_bits(vcpu: KvmVcpu): bigint {
  const gpa_rsvd = ((1n << 64n) - 1n) & ~((1n << BigInt(vcpu.kvm.cpuid.maxphyaddr)) - 1n);
  return gpa_rsvd | 0x1e0n | 0x6n;
}

/**
 * `load_pdptrs`: reads the 4 PDPTEs at `cr3 & GENMASK(11, 5)`. A PDPT outside every memslot or
 * a present PDPTE with reserved bits fails (the caller raises #GP). New PDPTEs free the current
 * root (shadow paging) and request a PGD load.
 */
export function load_pdptrs(vcpu: KvmVcpu, cr3: bigint): boolean {
  const kvm = vcpu.kvm;
  const gfn = Number((cr3 >> 12n) & 0xf_ffffn);
  if (!kvm.gfn_to_memslot(gfn)) return false;
  const base = gfn * 4096 + Number(cr3 & 0xfe0n);
  const pdpte = [0, 1, 2, 3].map((i) => kvm.readGuestPhys(base + i * 8));
  const rsvd = pdptr_rsvd_bits(vcpu);
  if (pdpte.some((e) => (e & PT_PRESENT_MASK) !== 0n && (e & rsvd) !== 0n)) return false;
  if (pdpte.some((e, i) => e !== vcpu.mmu.pdptrs[i]) && !kvm.bug("pdptr_change_keeps_root")) {
    kvm_mmu_free_roots(kvm, vcpu.mmu, { current: true, previous: [] });
  }
  vcpu.mmu.pdptrs = pdpte;
  vcpu.kvm_make_request("KVM_REQ_LOAD_MMU_PGD");
  return true;
}

/** The result of a control-register write: done, or #GP. */
export type SetResult = "ok" | "gp";

/** `kvm_set_cr0` (PG and WP only: the model has no PE/CD/NW). */
export function kvm_set_cr0(vcpu: KvmVcpu, pg: boolean, wp: boolean): SetResult {
  const a = vcpu.arch;
  const old = { pg: a.cr0_pg, wp: a.cr0_wp };
  if (a.efer_lme && !old.pg && pg && !a.cr4_pae) return "gp";
  // Entering PAE paging, or a PG change inside it, reloads the PDPTEs.
  if (!a.efer_lme && pg && a.cr4_pae && pg !== old.pg && !load_pdptrs(vcpu, a.cr3)) return "gp";
  if (!pg && a.cr4_pcide) return "gp";
  a.cr0_pg = pg;
  a.cr0_wp = wp;
  // kvm_post_set_cr0
  if (pg !== old.pg && !pg) vcpu.kvm_make_request("KVM_REQ_TLB_FLUSH_GUEST");
  if (pg === old.pg && wp !== old.wp && !pg) return "ok";
  if (pg !== old.pg || wp !== old.wp) kvm_mmu_reset_context(vcpu);
  return "ok";
}

/** CR4 bits as the model has them. */
export interface Cr4Bits {
  pse: boolean;
  pae: boolean;
  pge: boolean;
  smep: boolean;
  smap: boolean;
  pke: boolean;
  la57: boolean;
  pcide: boolean;
}

/** `kvm_set_cr4`. */
export function kvm_set_cr4(vcpu: KvmVcpu, cr4: Cr4Bits): SetResult {
  const a = vcpu.arch;
  const c = vcpu.kvm.cpuid;
  const old: Cr4Bits = {
    pse: a.cr4_pse,
    pae: a.cr4_pae,
    pge: a.cr4_pge,
    smep: a.cr4_smep,
    smap: a.cr4_smap,
    pke: a.cr4_pke,
    la57: a.cr4_la57,
    pcide: a.cr4_pcide,
  };
  // kvm_is_valid_cr4: bits the guest CPUID lacks are reserved (PKU is hidden under shadow paging).
  if ((cr4.pse && !c.pse) || (cr4.smep && !c.smep) || (cr4.smap && !c.smap) || cr4.pke) return "gp";
  if ((cr4.la57 && !c.la57) || (cr4.pcide && !c.pcid)) return "gp";
  if (vcpu.is_long_mode) {
    if (!cr4.pae || cr4.la57 !== old.la57) return "gp";
  }
  const pdptrBits = cr4.pge !== old.pge || cr4.pse !== old.pse || cr4.pae !== old.pae ||
    cr4.smep !== old.smep ||
    (cr4.smap !== old.smap && vcpu.kvm.bug("smap_toggle_reloads_pdptrs"));
  if (!vcpu.is_long_mode && a.cr0_pg && cr4.pae && pdptrBits && !load_pdptrs(vcpu, a.cr3)) {
    return "gp";
  }
  if (cr4.pcide && !old.pcide && ((a.cr3 & 0xfffn) !== 0n || !vcpu.is_long_mode)) return "gp";
  a.cr4_pse = cr4.pse;
  a.cr4_pae = cr4.pae;
  a.cr4_pge = cr4.pge;
  a.cr4_smep = cr4.smep;
  a.cr4_smap = cr4.smap;
  a.cr4_pke = cr4.pke;
  a.cr4_la57 = cr4.la57;
  a.cr4_pcide = cr4.pcide;
  // kvm_post_set_cr4
  const role = cr4.pse !== old.pse || cr4.pae !== old.pae || cr4.la57 !== old.la57 ||
    cr4.smep !== old.smep || cr4.smap !== old.smap || cr4.pke !== old.pke;
  if (role) kvm_mmu_reset_context(vcpu);
  if (cr4.pcide && !old.pcide) kvm_mmu_unload(vcpu);
  const pge_flush = cr4.pge !== old.pge && !vcpu.kvm.bug("pge_toggle_no_flush");
  if (pge_flush || (!cr4.pcide && old.pcide)) {
    vcpu.kvm_make_request("KVM_REQ_TLB_FLUSH_GUEST");
  } else if (cr4.pae !== old.pae || (cr4.smep && !old.smep)) {
    vcpu.kvm_make_request("KVM_REQ_TLB_FLUSH_CURRENT");
  }
  return "ok";
}

/** `kvm_set_efer` (LME and NX). */
export function kvm_set_efer(vcpu: KvmVcpu, lme: boolean, nx: boolean): SetResult {
  const a = vcpu.arch;
  if (nx && !vcpu.kvm.cpuid.nx) return "gp";
  if (lme !== a.efer_lme && a.cr0_pg) return "gp";
  const changed = lme !== a.efer_lme || nx !== a.efer_nx;
  a.efer_lme = lme;
  a.efer_nx = nx;
  if (changed) kvm_mmu_reset_context(vcpu);
  return "ok";
}

/** `kvm_get_pcid` of a CR3 value. */
function kvm_get_pcid(vcpu: KvmVcpu, cr3: bigint): number {
  return vcpu.arch.cr4_pcide ? Number(cr3 & 0xfffn) : 0;
}

/** `kvm_invalidate_pcid`. */
function kvm_invalidate_pcid(vcpu: KvmVcpu, pcid: number): void {
  if (vcpu.active_pcid === pcid) {
    if (!vcpu.kvm.bug("cr3_flush_skips_sync")) vcpu.kvm_make_request("KVM_REQ_MMU_SYNC");
    vcpu.kvm_make_request("KVM_REQ_TLB_FLUSH_CURRENT");
  }
  if (!vcpu.arch.cr4_pcide) return;
  const previous = [0, 1, 2].filter((i) =>
    kvm_get_pcid(vcpu, vcpu.mmu.prev_roots[i]!.pgd) === pcid
  );
  if (previous.length > 0 && !vcpu.kvm.bug("invalidate_pcid_keeps_prev_roots")) {
    kvm_mmu_free_roots(vcpu.kvm, vcpu.mmu, { current: false, previous });
  }
}

/** `kvm_set_cr3`: `noflush` is CR3 bit 63 (`X86_CR3_PCID_NOFLUSH`). */
export function kvm_set_cr3(vcpu: KvmVcpu, value: bigint, noflush: boolean): SetResult {
  const a = vcpu.arch;
  const cr3 = vcpu.is_long_mode ? value : value & 0xffff_ffffn;
  let skip_tlb_flush = false;
  let pcid = 0;
  if (vcpu.is_long_mode && noflush) {
    if (!a.cr4_pcide) return "gp"; // bit 63 is a reserved gpa bit then
    skip_tlb_flush = true;
  }
  if (a.cr4_pcide) pcid = Number(cr3 & 0xfffn);
  if (!(cr3 === a.cr3 && !vcpu.is_pae_paging)) {
    if (vcpu.is_long_mode && cr3 >> BigInt(vcpu.kvm.cpuid.maxphyaddr) !== 0n) return "gp";
    if (vcpu.is_pae_paging && !load_pdptrs(vcpu, cr3)) return "gp";
    if (cr3 !== a.cr3) kvm_mmu_new_pgd(vcpu, cr3);
    a.cr3 = cr3;
  }
  if (!skip_tlb_flush) kvm_invalidate_pcid(vcpu, pcid);
  return "ok";
}

/**
 * The request servicing of `vcpu_enter_guest`, in KVM's order, then `kvm_mmu_reload`: what
 * happens between a guest-visible step and the next guest instruction.
 */
export function vcpu_enter_guest(vcpu: KvmVcpu): void {
  const kvm = vcpu.kvm;
  const locked = (req: KvmRequest, handler: () => void) => {
    if (!vcpu.kvm_check_request(req)) return;
    try {
      kvm.locked(handler);
    } catch (e: unknown) {
      // The lock is held by a preempted thread: the request stays pending for the retry.
      if (e instanceof MmuLockContended) vcpu.kvm_make_request(req);
      throw e;
    }
  };
  locked("KVM_REQ_MMU_FREE_OBSOLETE_ROOTS", () => kvm_mmu_free_obsolete_roots(vcpu));
  locked("KVM_REQ_MMU_SYNC", () => kvm_mmu_sync_roots(vcpu));
  vcpu.kvm_check_request("KVM_REQ_LOAD_MMU_PGD"); // the hardware CR3 is read from mmu.root
  if (vcpu.kvm_check_request("KVM_REQ_TLB_FLUSH")) kvm_vcpu_flush_tlb_current(vcpu);
  if (vcpu.kvm_check_request("KVM_REQ_TLB_FLUSH_CURRENT")) kvm_vcpu_flush_tlb_current(vcpu);
  locked("KVM_REQ_TLB_FLUSH_GUEST", () => kvm_vcpu_flush_tlb_guest(vcpu));
  if (vcpu.mmu.root.hpa === INVALID_PAGE) kvm.locked(() => kvm_mmu_reload(vcpu));
}
