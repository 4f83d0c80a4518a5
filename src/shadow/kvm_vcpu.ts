/**
 * `struct kvm_vcpu` as the shadow MMU uses it: the guest's control registers (`vcpu->arch`), the
 * MMU context (`struct kvm_mmu`: roles, root, `prev_roots`, `pae_root`, guest paging metadata),
 * pending requests (`KVM_REQ_*`), the MMIO cache, and the simulated CPU's hardware TLB.
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import type { KvmCpuRole, KvmMmuPageRole } from "./mmu_role.ts";
import type { RsvdBitsValidate } from "./guest_metadata.ts";
import { HardwareTlb } from "./hw_tlb.ts";

/** `INVALID_PAGE`. */
export const INVALID_PAGE = -1;
/** `KVM_MMU_NUM_PREV_ROOTS`. */
export const KVM_MMU_NUM_PREV_ROOTS = 3;

/** `struct kvm_mmu_root_info`. */
export interface KvmMmuRootInfo {
  /** Host physical address of the root table, or `INVALID_PAGE`. */
  hpa: number;
  /** The guest CR3 the root was built for. */
  pgd: bigint;
}

/** The `KVM_REQ_*` requests the shadow MMU uses. */
export type KvmRequest =
  | "KVM_REQ_MMU_SYNC"
  | "KVM_REQ_TLB_FLUSH_CURRENT"
  | "KVM_REQ_TLB_FLUSH_GUEST"
  | "KVM_REQ_TLB_FLUSH"
  | "KVM_REQ_LOAD_MMU_PGD"
  | "KVM_REQ_MMU_FREE_OBSOLETE_ROOTS";

/** The guest's architectural control state (`vcpu->arch`). */
export interface VcpuArch {
  cr0_pg: boolean;
  cr0_wp: boolean;
  /** CR3 as the guest wrote it (PCID in bits 11:0 when CR4.PCIDE=1; never bit 63). */
  cr3: bigint;
  cr4_pse: boolean;
  cr4_pae: boolean;
  cr4_pge: boolean;
  cr4_smep: boolean;
  cr4_smap: boolean;
  cr4_pke: boolean;
  cr4_la57: boolean;
  cr4_pcide: boolean;
  efer_lme: boolean;
  efer_nx: boolean;
  pkru: number;
  rflags_ac: boolean;
}

/** Which template handles guest faults (`mmu->page_fault`). */
export type PagingHandler = "nonpaging" | "paging32" | "paging64";

/** `struct kvm_mmu` (the shadow MMU of one vCPU). */
export interface KvmMmu {
  cpu_role: KvmCpuRole;
  root_role: KvmMmuPageRole;
  handler: PagingHandler;
  root: KvmMmuRootInfo;
  prev_roots: KvmMmuRootInfo[];
  /** Host pfn of the per-vCPU `pae_root` page (allocated once), entries 0..3 used. */
  pae_root: number;
  /** `mmu->pdptrs`: the cached PAE PDPTEs (`load_pdptrs`). */
  pdptrs: bigint[];
  permissions: Uint8Array;
  pkru_mask: number;
  guest_rsvd_check: RsvdBitsValidate;
}

/** One vCPU. */
export class KvmVcpu {
  readonly kvm: Kvm;
  readonly vcpu_id: number;
  readonly arch: VcpuArch;
  mmu!: KvmMmu;
  readonly requests = new Set<KvmRequest>();
  /** The simulated CPU's TLB for this vCPU. */
  readonly tlb = new HardwareTlb();
  /** `vcpu->arch.mmio_gva` / `mmio_gfn` / `mmio_access` / `mmio_gen` (the MMIO cache). */
  mmio_gva = 0;
  mmio_gfn = 0;
  mmio_access = 0;
  mmio_gen = 0;
  /** A #PF queued for injection (`vcpu->arch.exception`): error code and CR2. */
  exception: { error_code: number; address: bigint; invalidate: boolean } | null = null;
  /** `last_retry_addr` of `kvm_mmu_unprotect_gfn_and_retry` (no RIP in the model). */
  last_retry_addr = -1;
  /**
   * `vcpu->mode == IN_GUEST_MODE`: the simulated CPU is running one access (walking the shadow
   * tables). A shadow page is not freed meanwhile (KVM's remote flush waits for the vCPU to
   * exit before the free).
   */
  in_guest_mode = false;
  /** `vcpu->mode == READING_SHADOW_PAGE_TABLES` (a lockless shadow walk). */
  reading_shadow_page_tables = false;

  /** Builds a vCPU with the given control state; `kvm_init_mmu` fills `mmu`. */
  constructor(kvm: Kvm, vcpu_id: number, arch: VcpuArch) {
    this.kvm = kvm;
    this.vcpu_id = vcpu_id;
    this.arch = arch;
  }

  /** `kvm_make_request`. */
  kvm_make_request(req: KvmRequest): void {
    this.requests.add(req);
  }

  /** `kvm_check_request`: tests and clears. */
  kvm_check_request(req: KvmRequest): boolean {
    return this.requests.delete(req);
  }

  /** `is_paging`. */
  get is_paging(): boolean {
    return this.arch.cr0_pg;
  }

  /** `is_long_mode` (EFER.LMA). */
  get is_long_mode(): boolean {
    return this.arch.cr0_pg && this.arch.efer_lme;
  }

  /** `is_pae_paging`: paging, PAE, not long mode. */
  get is_pae_paging(): boolean {
    return this.arch.cr0_pg && this.arch.cr4_pae && !this.is_long_mode;
  }

  /** `kvm_get_active_pcid`. */
  get active_pcid(): number {
    return this.arch.cr4_pcide ? Number(this.arch.cr3 & 0xfffn) : 0;
  }
}
