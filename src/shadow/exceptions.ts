/**
 * Exception injection (`x86.c`): `kvm_inject_emulated_page_fault` queues the walker's #PF for
 * the guest, first invalidating the faulting address in the current root (so a retried access
 * cannot hit a stale SPTE forever, and to emulate hardware's flush on #PF).
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { kvm_mmu_invalidate_addr } from "./mmu_roots.ts";
import type { WalkerFault } from "./paging_tmpl.ts";
import { PFERR_PRESENT_MASK, PFERR_RSVD_MASK } from "./guest_metadata.ts";

/** `kvm_inject_emulated_page_fault`. */
export function kvm_inject_emulated_page_fault(vcpu: KvmVcpu, fault: WalkerFault): void {
  if ((fault.error_code & PFERR_PRESENT_MASK) && !(fault.error_code & PFERR_RSVD_MASK)) {
    if (!vcpu.mmu.root_role.direct) {
      kvm_mmu_invalidate_addr(vcpu, fault.address, { current: true, previous: [] });
    } else {
      vcpu.tlb.flushGva(Number(fault.address >> 12n));
    }
  }
  vcpu.exception = { error_code: fault.error_code, address: fault.address };
  vcpu.kvm.retire({ kind: "pf", error_code: fault.error_code, cr2: fault.address });
  vcpu.kvm.count("pf_guest_injected");
  vcpu.kvm.event(
    vcpu.vcpu_id,
    () => `inject #PF ec=0x${fault.error_code.toString(16)} cr2=0x${fault.address.toString(16)}`,
  );
}
