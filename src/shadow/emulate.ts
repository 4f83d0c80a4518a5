/**
 * The part of KVM's instruction emulator a faulting guest access needs
 * (`x86_emulate_instruction` → `emulator_read_write` / `kvm_fetch_guest_virt`): the linear
 * address is translated again (`vcpu_mmio_gva_to_gpa`: the MMIO cache, else
 * `mmu->gva_to_gpa`, which sets the guest's A/D bits), a fault becomes the guest's #PF, RAM is
 * read or written through the memslot (`emulator_write_phys`: dirty marking, then
 * `kvm_page_track_write` → `kvm_mmu_track_write`), and anything else is an MMIO exit to the
 * harness's device, which reads zero and drops writes (a write to a read-only slot is one).
 * An instruction fetch from MMIO cannot be emulated (`KVM_EXIT_INTERNAL_ERROR`).
 *
 * The model has no instruction bytes: the emulated instruction is the access itself (a MOV).
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import type { CpuResult, GuestAccess } from "./cpu.ts";
import { gva_to_gpa, paging_tmpl_for, type WalkerFault } from "./paging_tmpl.ts";
import { walkerGuestAccess, walkerVcpu } from "./guest_access.ts";
import { kvm_inject_emulated_page_fault } from "./exceptions.ts";
import { vcpu_match_mmio_gva } from "./mmio.ts";
import { kvm_mmu_track_write } from "./page_track.ts";
import { MmuLockContended } from "./kvm.ts";
import {
  permission_fault,
  PFERR_FETCH_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "./guest_metadata.ts";

/** What emulation did: completed the access, failed, or re-enters the guest (a #PF is queued). */
export type EmulationResult = CpuResult | { readonly kind: "retry" };

/** `mmu->gva_to_gpa` of the vCPU's MMU (identity when CR0.PG=0: `nonpaging_gva_to_gpa`). */
function mmu_gva_to_gpa(
  vcpu: KvmVcpu,
  gva: bigint,
  access: number,
  cpl: number,
): { gpa: number | null; exception: WalkerFault | null } {
  const desc = paging_tmpl_for(vcpu.mmu.cpu_role);
  if (!desc) return { gpa: Number(gva), exception: null };
  return gva_to_gpa(desc, walkerVcpu(vcpu, cpl), walkerGuestAccess(vcpu.kvm), gva, access);
}

/**
 * `vcpu_mmio_gva_to_gpa`: a hit in the MMIO cache whose rights allow the access goes straight
 * to MMIO; otherwise the guest walk decides.
 */
function vcpu_mmio_gva_to_gpa(
  vcpu: KvmVcpu,
  gva: bigint,
  access: number,
  cpl: number,
): { gpa: number; mmio: boolean } | { exception: WalkerFault } {
  const mmu = vcpu.mmu;
  if (
    vcpu_match_mmio_gva(vcpu, gva) &&
    (!vcpu.is_paging ||
      permission_fault(mmu, cpl, vcpu.arch.rflags_ac, vcpu.mmio_access, 0, access, 0) === 0 ||
      vcpu.kvm.bug("mmio_cache_ignores_access"))
  ) {
    vcpu.kvm.count("mmio_cache_hits"); // trace_vcpu_match_mmio
    return { gpa: vcpu.mmio_gfn * 4096 + Number(gva & 0xfffn), mmio: true };
  }
  const r = mmu_gva_to_gpa(vcpu, gva, access, cpl);
  if (r.gpa === null) return { exception: r.exception! };
  return { gpa: r.gpa, mmio: false };
}

/** `emulator_write_phys`: false when the gpa is not writable RAM (then it is MMIO). */
function emulator_write_phys(vcpu: KvmVcpu, gpa: number, value: bigint): boolean {
  const kvm = vcpu.kvm;
  const gfn = Math.floor(gpa / 4096);
  const slot = kvm.gfn_to_memslot(gfn);
  if (!slot || slot.readOnly) return false;
  // The write and its page-track notification (which takes mmu_lock when anything is shadowed)
  // are one step here: when the lock is held by a thread this one preempted, the instruction
  // is retried before it writes, instead of spinning after it (see Kvm.write_lock).
  if (kvm.indirect_shadow_pages !== 0 && kvm.mmu_lock_held) throw new MmuLockContended();
  kvm.writeGuestPhys(gpa, 8, value);
  kvm.mark_page_dirty_in_slot(slot, gfn);
  kvm.retire({ kind: "ok", gpa });
  kvm_mmu_track_write(vcpu, gpa, 8);
  return true;
}

/** Queues the walker's #PF for the guest (`X86EMUL_PROPAGATE_FAULT`). */
function propagate_fault(vcpu: KvmVcpu, exception: WalkerFault): EmulationResult {
  kvm_inject_emulated_page_fault(vcpu, exception);
  return { kind: "retry" };
}

/**
 * `x86_emulate_instruction` for the access that faulted at `gva` (the 32-bit effective address
 * outside long mode).
 */
export function x86_emulate_instruction(
  vcpu: KvmVcpu,
  gva: bigint,
  access: GuestAccess,
): EmulationResult {
  const kvm = vcpu.kvm;
  const pfec = access.cpl === 3 ? PFERR_USER_MASK : 0;
  kvm.event(vcpu.vcpu_id, () => `emulate ${access.kind} 0x${gva.toString(16)}`);
  if (access.kind === "fetch") {
    // kvm_fetch_guest_virt: the instruction bytes come through the walker and RAM only.
    const r = mmu_gva_to_gpa(vcpu, gva, pfec | PFERR_FETCH_MASK, access.cpl);
    if (r.gpa === null) return propagate_fault(vcpu, r.exception!);
    if (!kvm.gfn_to_memslot(Math.floor(r.gpa / 4096))) {
      return {
        kind: "failure",
        reason: "emulation_failure",
        detail: `instruction fetch from MMIO gpa 0x${r.gpa.toString(16)}`,
      };
    }
    kvm.count("emulated_reads");
    return { kind: "ok", gpa: r.gpa, value: kvm.readGuestPhys(r.gpa) };
  }
  const write = access.kind === "write";
  const t = vcpu_mmio_gva_to_gpa(vcpu, gva, pfec | (write ? PFERR_WRITE_MASK : 0), access.cpl);
  if ("exception" in t) return propagate_fault(vcpu, t.exception);
  const { gpa } = t;
  if (write) {
    kvm.count("emulated_writes");
    if (!t.mmio && emulator_write_phys(vcpu, gpa, access.value)) {
      return { kind: "ok", gpa, value: null };
    }
    kvm.count("mmio_exits");
    kvm.event(vcpu.vcpu_id, () => `mmio write gpa=0x${gpa.toString(16)} (dropped)`);
    return { kind: "ok", gpa, value: null };
  }
  kvm.count("emulated_reads");
  if (!t.mmio && kvm.gfn_to_memslot(Math.floor(gpa / 4096))) {
    return { kind: "ok", gpa, value: kvm.readGuestPhys(gpa) };
  }
  kvm.count("mmio_exits");
  kvm.event(vcpu.vcpu_id, () => `mmio read gpa=0x${gpa.toString(16)} (0)`);
  return { kind: "ok", gpa, value: 0n };
}
