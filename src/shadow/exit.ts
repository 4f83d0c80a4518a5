/**
 * The #PF VM exit (`handle_exception_nmi` → `kvm_handle_page_fault` → `kvm_mmu_page_fault`):
 * a reserved-bit fault first tries the MMIO SPTE path (`handle_mmio_page_fault`), anything else
 * goes to `mmu->page_fault` (`kvm_mmu_do_page_fault`); a write to a gfn KVM shadows and could
 * not unsync ends in emulation (`kvm_mmu_write_protect_fault`).
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { handle_mmio_page_fault } from "./mmio.ts";
import { new_page_fault, type RetPf } from "./page_fault.ts";
import { nonpaging_page_fault } from "./direct_mmu.ts";
import { FNAME_page_fault } from "./paging_tmpl_mmu.ts";
import { PFERR_RSVD_MASK } from "./guest_metadata.ts";

/** What the exit handler decided: resume the guest, or emulate the faulting instruction. */
export type PageFaultExit = { readonly kind: "resume"; readonly r: RetPf } | {
  readonly kind: "emulate";
  readonly r: RetPf;
};

/** `kvm_mmu_do_page_fault`: the MMU's page-fault handler, with the `pf_*` statistics. */
function kvm_mmu_do_page_fault(vcpu: KvmVcpu, cr2: bigint, error_code: number): RetPf {
  const fault = new_page_fault(cr2, error_code);
  const kvm = vcpu.kvm;
  kvm.count("pf_taken");
  const r = vcpu.mmu.handler === "nonpaging"
    ? nonpaging_page_fault(vcpu, fault)
    : FNAME_page_fault(vcpu, fault);
  if (r === "RET_PF_FIXED") kvm.count("pf_fixed");
  else if (r === "RET_PF_EMULATE") kvm.count("pf_emulate");
  else if (r === "RET_PF_SPURIOUS") kvm.count("pf_spurious");
  else if (r === "RET_PF_RETRY") kvm.count("pf_retry");
  return r;
}

/**
 * `kvm_mmu_write_protect_fault`: the faulting store hit a gfn KVM write-protects for shadowing.
 * KVM emulates it (a MOV is a page-table-writing instruction, so the unprotect-and-retry
 * shortcut of `EMULTYPE_ALLOW_RETRY_PF` does not apply).
 */
function kvm_mmu_write_protect_fault(vcpu: KvmVcpu): RetPf {
  vcpu.last_retry_addr = -1;
  return "RET_PF_EMULATE";
}

/** `kvm_mmu_page_fault`. */
export function kvm_mmu_page_fault(vcpu: KvmVcpu, cr2: bigint, error_code: number): PageFaultExit {
  const kvm = vcpu.kvm;
  kvm.event(
    vcpu.vcpu_id,
    () => `#PF exit cr2=0x${cr2.toString(16)} ec=0x${error_code.toString(16)}`,
  );
  let r: RetPf = "RET_PF_INVALID";
  if (error_code & PFERR_RSVD_MASK) {
    const mmio = handle_mmio_page_fault(vcpu, cr2);
    if (mmio.kind === "emulate") return { kind: "emulate", r: "RET_PF_EMULATE" };
    if (mmio.kind === "retry") r = "RET_PF_RETRY";
  }
  if (r === "RET_PF_INVALID") r = kvm_mmu_do_page_fault(vcpu, cr2, error_code);
  if (r === "RET_PF_WRITE_PROTECTED") r = kvm_mmu_write_protect_fault(vcpu);
  return r === "RET_PF_EMULATE" ? { kind: "emulate", r } : { kind: "resume", r };
}
