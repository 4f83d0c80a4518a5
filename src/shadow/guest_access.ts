/**
 * How KVM's guest walker reaches guest memory and vCPU state: adapters from `Kvm`/`KvmVcpu` to
 * the walker's interfaces (`kvm_vcpu_gfn_to_memslot`, `__get_user`, `__try_cmpxchg_user`,
 * `kvm_vcpu_mark_page_dirty`), and `kvm_vcpu_read_guest_atomic`.
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import type { KvmVcpu } from "./kvm_vcpu.ts";
import type { WalkerGuestAccess, WalkerVcpu } from "./paging_tmpl.ts";

/** The walker's view of guest memory: raw user-memory accesses through the memslots. */
export function walkerGuestAccess(kvm: Kvm): WalkerGuestAccess {
  return {
    memslot: (gfn) => kvm.gfn_to_memslot(gfn),
    read: (gpa, bytes) => kvm.readGuestPhys(gpa, bytes),
    // Atomic step "walk_addr_generic:cmpxchg_gpte": the guest may change the gpte first. A
    // successful update is published at once (see Kvm.publish).
    cmpxchg: (gpa, bytes, old, val) => {
      kvm.atomicStep("walk_addr_generic:cmpxchg_gpte", gpa);
      const slot = kvm.gfn_to_memslot(Math.floor(gpa / 4096));
      if (!slot || slot.readOnly) return "fault";
      if (kvm.readGuestPhys(gpa, bytes) !== old) return "changed";
      kvm.writeGuestPhys(gpa, bytes, val);
      kvm.publish(gpa);
      return "ok";
    },
    markPageDirty: (gfn) => kvm.mark_page_dirty(gfn),
  };
}

/** The walker's view of a vCPU for an access at `cpl`. */
export function walkerVcpu(vcpu: KvmVcpu, cpl: number): WalkerVcpu {
  const mmu = vcpu.mmu;
  return {
    cpu_role: mmu.cpu_role,
    guest_rsvd_check: mmu.guest_rsvd_check,
    permissions: mmu.permissions,
    pkru_mask: mmu.pkru_mask,
    cr3: vcpu.arch.cr3,
    pdptrs: mmu.pdptrs,
    cpl,
    rflags_ac: vcpu.arch.rflags_ac,
    pkru: vcpu.arch.pkru,
    bug: (name) => vcpu.kvm.bug(name),
  };
}

/**
 * `kvm_vcpu_read_guest_atomic` of one gpte: `null` when the gfn has no memslot (the read
 * fails).
 */
export function kvm_vcpu_read_guest_atomic(kvm: Kvm, gpa: number, bytes: 4 | 8): bigint | null {
  if (!kvm.gfn_to_memslot(Math.floor(gpa / 4096))) return null;
  return kvm.readGuestPhys(gpa, bytes);
}
