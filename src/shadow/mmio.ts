/**
 * MMIO SPTEs and the per-vCPU MMIO cache (`mmu.c`: `mark_mmio_spte`, `check_mmio_spte`,
 * `get_mmio_spte`, `handle_mmio_page_fault`, `vcpu_cache_mmio_info`, `vcpu_clear_mmio_info`).
 *
 * @module
 */
import type { KvmVcpu } from "./kvm_vcpu.ts";
import {
  get_mmio_spte_access,
  get_mmio_spte_generation,
  get_mmio_spte_gfn,
  is_mmio_spte,
  make_mmio_spte,
  MMIO_SPTE_GEN_MASK,
} from "./spte.ts";
import {
  for_each_shadow_entry_lockless,
  walk_shadow_page_lockless_begin,
  walk_shadow_page_lockless_end,
} from "./direct_mmu.ts";

/** `vcpu_cache_mmio_info`. */
export function vcpu_cache_mmio_info(
  vcpu: KvmVcpu,
  gva: bigint,
  gfn: number,
  access: number,
): void {
  vcpu.mmio_gva = Number(gva >> 12n) * 4096;
  vcpu.mmio_gfn = gfn;
  vcpu.mmio_access = access;
  vcpu.mmio_gen = vcpu.kvm.memslots.generation;
}

/** `vcpu_clear_mmio_info`: `null` is `MMIO_GVA_ANY`. */
export function vcpu_clear_mmio_info(vcpu: KvmVcpu, gva: bigint | null): void {
  if (gva !== null && Number(gva >> 12n) * 4096 !== vcpu.mmio_gva) return;
  vcpu.mmio_gva = 0;
  vcpu.mmio_gen = -1;
}

/** `vcpu_match_mmio_gva` (with the generation check of `vcpu_match_mmio_gen`). */
export function vcpu_match_mmio_gva(vcpu: KvmVcpu, gva: bigint): boolean {
  const gen_ok = vcpu.mmio_gen === vcpu.kvm.memslots.generation ||
    (vcpu.mmio_gen !== -1 && vcpu.kvm.bug("mmio_cache_ignores_generation"));
  return gen_ok && vcpu.mmio_gva !== 0 &&
    vcpu.mmio_gva === Number(gva >> 12n) * 4096;
}

/** `mark_mmio_spte`. */
export function mark_mmio_spte(vcpu: KvmVcpu, sptep: number, gfn: number, access: number): void {
  const gen = vcpu.kvm.memslots.generation & MMIO_SPTE_GEN_MASK;
  vcpu.kvm.host.write64(sptep, make_mmio_spte(gfn, access, gen));
  vcpu.kvm.count("pf_mmio_spte_created");
  vcpu.kvm.event(vcpu.vcpu_id, () => `mmio spte gfn=0x${gfn.toString(16)} gen=${gen}`);
}

/** `check_mmio_spte`: the SPTE's generation is current and no memslot update is in progress. */
export function check_mmio_spte(vcpu: KvmVcpu, spte: bigint): boolean {
  const kvm_gen = vcpu.kvm.memslots.generation;
  if (vcpu.kvm.bug("mmio_spte_ignores_generation")) return true;
  if ((kvm_gen & 1) !== 0) return false;
  return (kvm_gen & MMIO_SPTE_GEN_MASK) === get_mmio_spte_generation(spte);
}

/**
 * `get_mmio_spte`: a lockless walk (`walk_shadow_page_lockless_begin/end`, each SPTE read with
 * `mmu_spte_get_lockless`, an atomic step) to the last SPTE for `addr` (reserved-bit WARNs
 * omitted). Other threads may change the SPTEs meanwhile: what it returns is what it read.
 */
export function get_mmio_spte(vcpu: KvmVcpu, addr: bigint): bigint | null {
  let last: bigint | null = null;
  walk_shadow_page_lockless_begin(vcpu);
  for (const e of for_each_shadow_entry_lockless(vcpu, addr)) last = e.spte;
  walk_shadow_page_lockless_end(vcpu);
  return last;
}

/** What `handle_mmio_page_fault` decided. */
export type MmioFault =
  | { readonly kind: "emulate"; readonly gfn: number; readonly access: number }
  | { readonly kind: "invalid" }
  | { readonly kind: "retry" };

/**
 * `handle_mmio_page_fault` (shadow paging: `addr` is a GVA). A current MMIO SPTE caches the
 * gva/gfn/access and asks for emulation; a stale generation sends the fault to the normal path
 * (`RET_PF_INVALID`); anything else is retried.
 */
export function handle_mmio_page_fault(vcpu: KvmVcpu, addr: bigint): MmioFault {
  if (vcpu_match_mmio_gva(vcpu, addr)) {
    vcpu.kvm.count("mmio_cache_hits");
    return { kind: "emulate", gfn: vcpu.mmio_gfn, access: vcpu.mmio_access };
  }
  const spte = get_mmio_spte(vcpu, addr);
  if (spte === null || !is_mmio_spte(spte)) return { kind: "retry" };
  const gfn = get_mmio_spte_gfn(spte);
  const access = get_mmio_spte_access(spte);
  if (!check_mmio_spte(vcpu, spte)) return { kind: "invalid" };
  vcpu_cache_mmio_info(vcpu, addr, gfn, access);
  return { kind: "emulate", gfn, access };
}
