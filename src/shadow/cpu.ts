/**
 * The simulated CPU that runs the guest on KVM's shadow tables (VMX without EPT, with VPID).
 *
 * What the hardware is, under shadow paging:
 * - CR3 is the shadow root KVM loaded: a 4- or 5-level root in long mode (`root_role.level`),
 *   otherwise PAE paging through the per-vCPU `pae_root` page (its 4 entries are the PDPTEs the
 *   CPU loads at VM entry). Linear addresses are 32 bits wide outside long mode.
 * - Hardware CR0.WP is always 1 (KVM emulates a guest CR0.WP=0 in the SPTEs), hardware
 *   EFER.NX is always 1 (so every fetch fault has I/D), guest CR4.SMEP/SMAP apply while the
 *   guest has paging on, RFLAGS.AC is the guest's, and there is no PKE (KVM hides PKU).
 * - SPTE reserved bits: address bits 51:46 (host MAXPHYADDR 46; KVM's MMIO SPTEs set bit 51),
 *   PS in PML4Es/PML5Es, the low address bits of a huge page, and in a PAE PDPTE bits 63, 8:5
 *   and 2:1.
 * - The CPU sets A in every SPTE it walks through and A/D in the leaf of an access it allows.
 * - The TLB ({@link HardwareTlb}) is tagged by PCID; a #PF drops the faulting page's entry.
 *
 * A guest access retries until it completes: each hardware fault becomes a VM exit into
 * `kvm_mmu_page_fault` (`exit.ts`), which fixes the SPTE, queues a #PF for the guest, or asks
 * for emulation. A bounded number of exits is a livelock, a finding in its own right.
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import type { HwTlbEntry } from "./hw_tlb.ts";
import { vcpu_enter_guest } from "./x86.ts";
import { kvm_mmu_page_fault } from "./exit.ts";
import { x86_emulate_instruction } from "./emulate.ts";
import { inject_page_fault_invalidate } from "./exceptions.ts";
import {
  PFERR_FETCH_MASK,
  PFERR_PRESENT_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "./guest_metadata.ts";

/** The kind of a guest access. */
export type AccessKind = "read" | "write" | "fetch";

/** One 8-byte guest access as the program states it. */
export interface GuestAccess {
  readonly la: bigint;
  readonly kind: AccessKind;
  readonly cpl: 0 | 3;
  /** The value a write stores. */
  readonly value: bigint;
}

/** Why the model could not produce a guest-visible result. */
export type CpuFailureReason =
  /** KVM kept fixing a fault the CPU kept taking (the guest hangs). */
  | "livelock"
  /** KVM's emulator gave up (an instruction fetch from MMIO: KVM_EXIT_INTERNAL_ERROR). */
  | "emulation_failure"
  /** The access reached a host page that backs no guest memory (freed, migrated, a KVM page). */
  | "stale_host_page";

/** What a guest access produced. */
export type CpuResult =
  | { readonly kind: "ok"; readonly gpa: number; readonly value: bigint | null }
  | { readonly kind: "pf"; readonly error_code: number; readonly cr2: bigint }
  | { readonly kind: "gp" }
  | { readonly kind: "failure"; readonly reason: CpuFailureReason; readonly detail: string };

/** VM exits one access may take before it counts as a livelock. */
export const MAX_EXITS_PER_ACCESS = 32;

const ADDR_RSVD_HI = 0x000f_c000; // SPTE bits 51:46 in the high word
const PAE_PDPTE_RSVD_LO = 0x1e6; // bits 8:5 and 2:1
const NX_HI = 0x8000_0000;

/** The hardware's view of the address: the 32-bit effective address, or null on a #GP. */
export function hw_linear_address(vcpu: KvmVcpu, la: bigint): bigint | null {
  if (!vcpu.is_long_mode) return la & 0xffff_ffffn;
  const width = vcpu.arch.cr4_la57 ? 57n : 48n;
  const top = la >> (width - 1n);
  return top === 0n || top === (1n << (65n - width)) - 1n ? la : null;
}

/** The rights check of the hardware (CR0.WP=1): true when the access may use the translation. */
function hw_access_allowed(vcpu: KvmVcpu, e: HwTlbEntry, kind: AccessKind, cpl: number): boolean {
  const a = vcpu.arch;
  const user = cpl === 3;
  if (user && !e.user) return false;
  if (kind === "fetch") {
    if (!e.executable) return false;
    return user || !e.user || !(a.cr0_pg && a.cr4_smep);
  }
  if (kind === "write" && !e.writable) return false;
  return user || !e.user || !(a.cr0_pg && a.cr4_smap) || a.rflags_ac;
}

/** The access bits of a hardware #PF error code. */
function hw_error_code(kind: AccessKind, cpl: number): number {
  return (kind === "write" ? PFERR_WRITE_MASK : 0) | (cpl === 3 ? PFERR_USER_MASK : 0) |
    (kind === "fetch" ? PFERR_FETCH_MASK : 0);
}

type HwWalk =
  | { readonly ok: true; readonly entry: HwTlbEntry }
  | { readonly ok: false; readonly error_code: number };

/**
 * The page walk of the hardware through the shadow tables for `laPage`, setting A (and D for
 * an allowed write) in the SPTEs. On success the translation is also what the TLB caches.
 */
function hw_walk(vcpu: KvmVcpu, laPage: number, kind: AccessKind, cpl: number): HwWalk {
  for (;;) {
    const r = hw_walk_once(vcpu, laPage, kind, cpl);
    if (r !== RESTART) return r;
  }
}

/** An A/D update found its SPTE changed since the walk read it: the walk starts again. */
const RESTART = Symbol("restart");

/**
 * Atomic step "cpu:set_ad": the CPU's locked update of A/D in an SPTE it read. It sets the bits
 * in the SPTE as it is now if that still is the value read (A/D aside); otherwise the walk
 * restarts.
 */
function hw_set_ad(vcpu: KvmVcpu, sptep: number, read: bigint, bits: bigint): boolean {
  const host = vcpu.kvm.host;
  vcpu.kvm.atomicStep("cpu:set_ad", sptep);
  const now = host.read64(sptep);
  if ((now | 0x60n) !== (read | 0x60n)) return false;
  if ((now & bits) !== bits) host.write64(sptep, now | bits);
  return true;
}

/** One try of {@link hw_walk}; each SPTE read is atomic step "cpu:walk". */
function hw_walk_once(
  vcpu: KvmVcpu,
  laPage: number,
  kind: AccessKind,
  cpl: number,
): HwWalk | typeof RESTART {
  const host = vcpu.kvm.host;
  const access = hw_error_code(kind, cpl);
  let level = vcpu.mmu.root_role.level;
  let table = vcpu.mmu.root.hpa;
  if (level === 3) {
    // PAE: the PDPTE comes from the pae_root page (loaded into the PDPTRs at VM entry).
    const pdpte = host.read64(table + Math.floor(laPage / 2 ** 18) % 4 * 8);
    const lo = Number(pdpte & 0xffff_ffffn), hi = Number(pdpte >> 32n);
    if ((lo & 1) === 0) return { ok: false, error_code: access };
    if ((lo & PAE_PDPTE_RSVD_LO) !== 0 || (hi & (ADDR_RSVD_HI | NX_HI)) !== 0) {
      return { ok: false, error_code: access | PFERR_PRESENT_MASK | PFERR_RSVD_MASK };
    }
    table = ((hi & 0xf_ffff) * 2 ** 20 + (lo >>> 12)) * 4096;
    level = 2;
  }
  let writable = true, user = true, executable = true;
  for (;;) {
    const sptep = table + Math.floor(laPage / 2 ** (9 * (level - 1))) % 512 * 8;
    vcpu.kvm.atomicStep("cpu:walk", sptep);
    const spte = host.read64(sptep);
    const lo = Number(spte & 0xffff_ffffn), hi = Number(spte >> 32n);
    if ((lo & 1) === 0) return { ok: false, error_code: access };
    const ps = (lo & 0x80) !== 0;
    const hugeRsvd = !ps || level === 1 ? 0 : level === 2 ? 0x1f_e000 : 0x3fff_e000;
    if ((hi & ADDR_RSVD_HI) !== 0 || (ps && level >= 4) || (lo & hugeRsvd) !== 0) {
      return { ok: false, error_code: access | PFERR_PRESENT_MASK | PFERR_RSVD_MASK };
    }
    writable &&= (lo & 2) !== 0;
    user &&= (lo & 4) !== 0;
    executable &&= (hi & NX_HI) === 0;
    const pfn = (hi & 0xf_ffff) * 2 ** 20 + (lo >>> 12);
    if (level > 1 && !ps) {
      if ((lo & 0x20) === 0 && !hw_set_ad(vcpu, sptep, spte, 0x20n)) return RESTART;
      table = pfn * 4096;
      level--;
      continue;
    }
    const pages = 2 ** (9 * (level - 1));
    const entry: HwTlbEntry = {
      pfn: pfn - (pfn % pages) + (laPage % pages),
      writable,
      user,
      executable,
      dirty: kind === "write" || (lo & 0x40) !== 0,
    };
    if (!hw_access_allowed(vcpu, entry, kind, cpl)) {
      return { ok: false, error_code: access | PFERR_PRESENT_MASK };
    }
    const ad = kind === "write" ? 0x60 : 0x20;
    if ((lo & ad) !== ad && !hw_set_ad(vcpu, sptep, spte, BigInt(ad))) return RESTART;
    return { ok: true, entry };
  }
}

/**
 * The translation of one access: a TLB hit whose rights allow it (a write through a clean entry
 * walks again, to set D), else a walk that fills the TLB. A fault drops the page's entry. Null
 * when a flush overtook the walk.
 */
function hw_translate(
  vcpu: KvmVcpu,
  laPage: number,
  kind: AccessKind,
  cpl: number,
): HwWalk | null {
  const pcid = vcpu.active_pcid;
  const hit = vcpu.tlb.lookup(pcid, laPage);
  if (hit && (kind !== "write" || hit.dirty)) {
    if (hw_access_allowed(vcpu, hit, kind, cpl)) {
      vcpu.kvm.count("hw_tlb_hits");
      return { ok: true, entry: hit };
    }
    vcpu.tlb.invalidate(pcid, laPage);
    return { ok: false, error_code: hw_error_code(kind, cpl) | PFERR_PRESENT_MASK };
  }
  vcpu.kvm.count("hw_walks");
  const generation = vcpu.tlb.generation;
  const walk = hw_walk(vcpu, laPage, kind, cpl);
  // A flush delivered while the walk was in flight: the access starts again after it.
  if (vcpu.tlb.generation !== generation) return null;
  if (walk.ok) vcpu.tlb.fill(pcid, laPage, walk.entry);
  else vcpu.tlb.invalidate(pcid, laPage);
  return walk;
}

/**
 * Runs one guest access to completion: VM entry (pending requests, root reload, a queued #PF is
 * delivered), the hardware access, and on a fault the VM exit into KVM, until the access
 * completes, the guest takes a #PF, or KVM emulates the instruction.
 */
export function cpu_access(vcpu: KvmVcpu, access: GuestAccess): CpuResult {
  const la = hw_linear_address(vcpu, access.la);
  if (la === null) return { kind: "gp" };
  const laPage = Number(la >> 12n);
  const word = Number(la & 0xfffn) >>> 3;
  const kvm = vcpu.kvm;
  for (let exits = 0; exits < MAX_EXITS_PER_ACCESS; exits++) {
    vcpu_enter_guest(vcpu);
    inject_page_fault_invalidate(vcpu); // when its mmu_lock was contended at the injection
    if (vcpu.exception) {
      const { error_code, address } = vcpu.exception;
      vcpu.exception = null;
      return { kind: "pf", error_code, cr2: address };
    }
    vcpu.in_guest_mode = true;
    let t: HwWalk | null;
    try {
      t = hw_translate(vcpu, laPage, access.kind, access.cpl);
    } finally {
      vcpu.in_guest_mode = false;
      vcpu.kvm.free_shadow_pages();
    }
    if (t === null) continue;
    if (t.ok) {
      const gfn = kvm.ram.gfnOfPfn(t.entry.pfn);
      // A huge SPTE maps a whole host chunk, some of whose pages were never touched yet.
      if (gfn === undefined || kvm.ram.pfnOf(gfn) !== t.entry.pfn) {
        return {
          kind: "failure",
          reason: "stale_host_page",
          detail: `la 0x${la.toString(16)} reached host pfn 0x${
            t.entry.pfn.toString(16)
          }, which backs no guest page`,
        };
      }
      const page = kvm.host.page(t.entry.pfn);
      const gpa = gfn * 4096 + word * 8;
      if (access.kind === "write") {
        page[word] = access.value;
        kvm.ram.noteWrite(gfn);
        return { kind: "ok", gpa, value: null };
      }
      return { kind: "ok", gpa, value: page[word]! };
    }
    const exit = kvm_mmu_page_fault(vcpu, la, t.error_code);
    if (exit.kind === "emulate") {
      const r = x86_emulate_instruction(vcpu, la, access);
      if (r.kind !== "retry") return r;
    }
  }
  return {
    kind: "failure",
    reason: "livelock",
    detail: `${access.kind} of 0x${
      la.toString(16)
    } at CPL${access.cpl} still faulting after ${MAX_EXITS_PER_ACCESS} VM exits`,
  };
}
