/**
 * Exception injection (`x86.c`): `kvm_inject_emulated_page_fault` queues the walker's #PF for
 * the guest and invalidates the faulting address in the current root (so a retried access
 * cannot hit a stale SPTE forever, and to emulate hardware's flush on #PF).
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { kvm_mmu_invalidate_addr } from "./mmu_roots.ts";
import type { WalkerFault } from "./paging_tmpl.ts";
import { PFERR_PRESENT_MASK, PFERR_RSVD_MASK } from "./guest_metadata.ts";

/**
 * `kvm_inject_emulated_page_fault`. The #PF is queued first and the invalidation follows
 * ({@link inject_page_fault_invalidate}), the reverse of KVM's order, which no guest can tell
 * (both come before the next VM entry): the walker's verdict is final here, and when the
 * invalidation's `mmu_lock` is contended (a concurrent case) the delivery retries just that.
 */
export function kvm_inject_emulated_page_fault(vcpu: KvmVcpu, fault: WalkerFault): void {
  const invalidate = (fault.error_code & PFERR_PRESENT_MASK) !== 0 &&
    (fault.error_code & PFERR_RSVD_MASK) === 0;
  vcpu.exception = { error_code: fault.error_code, address: fault.address, invalidate };
  vcpu.kvm.retire({ kind: "pf", error_code: fault.error_code, cr2: fault.address });
  vcpu.kvm.count("pf_guest_injected");
  vcpu.kvm.event(
    vcpu.vcpu_id,
    () => `inject #PF ec=0x${fault.error_code.toString(16)} cr2=0x${fault.address.toString(16)}`,
  );
  inject_page_fault_invalidate(vcpu);
}

/**
 * The invalidation of a queued #PF's address in the current root (a present fault): the
 * unsync SPTE is synced, so the guest's retry after the #PF cannot hit a stale SPTE forever, as
 * hardware flushes the faulting translation.
 */
export function inject_page_fault_invalidate(vcpu: KvmVcpu): void {
  const e = vcpu.exception;
  if (!e?.invalidate) return;
  if (!vcpu.mmu.root_role.direct) {
    kvm_mmu_invalidate_addr(vcpu, e.address, { current: true, previous: [] });
  } else {
    vcpu.tlb.flushGva(Number(e.address >> 12n));
  }
  e.invalidate = false;
}
