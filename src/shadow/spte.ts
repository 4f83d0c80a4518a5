/**
 * SPTE encoding for the legacy shadow MMU on a 64-bit host (`arch/x86/kvm/mmu/spte.h`), with
 * A/D bits always available (`ad_disabled` = 0).
 *
 * | bit | meaning |
 * |---|---|
 * | 0 P, 1 W, 2 U, 5 A, 6 D, 7 PS | hardware meanings; the CPU sets A/D in SPTEs |
 * | 9 | `shadow_host_writable_mask`: the host mapping allows writes |
 * | 10 | `shadow_mmu_writable_mask`: KVM does not write-protect this gfn for shadowing |
 * | 11 | `SPTE_MMU_PRESENT_MASK`: shadow-present (MMIO SPTEs lack it) |
 * | 12..51 | pfn |
 * | 63 | NX (KVM forces hardware EFER.NX=1 under shadow paging) |
 *
 * MMIO SPTEs are `BIT(51) | P` (bit 51 is reserved with host MAXPHYADDR 46, so hardware raises
 * #PF with RSVD), the gpa in bits 50:12, `access & (W|U)` in bits 2:1, and a 19-bit memslot
 * generation in bits 10:3 (low 8 bits) and 62:52 (high 11 bits). Not modelled: the L1TF
 * relocation of high gpa bits (`shadow_nonpresent_or_rsvd_mask`), so a gpa at or above 2^51
 * cannot be cached in an MMIO SPTE.
 *
 * @module
 */
import { HOST_MAXPHYADDR } from "./host_memory.ts";
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from "./mmu_role.ts";

/** P. */
export const PT_PRESENT_MASK = 1n << 0n;
/** W. */
export const PT_WRITABLE_MASK = 1n << 1n;
/** U. */
export const PT_USER_MASK = 1n << 2n;
/** A, as the CPU sets it in SPTEs. */
export const shadow_accessed_mask = 1n << 5n;
/** D, as the CPU sets it in leaf SPTEs. */
export const shadow_dirty_mask = 1n << 6n;
/** PS. */
export const PT_PAGE_SIZE_MASK = 1n << 7n;
/** `DEFAULT_SPTE_HOST_WRITABLE`. */
export const shadow_host_writable_mask = 1n << 9n;
/** `DEFAULT_SPTE_MMU_WRITABLE`. */
export const shadow_mmu_writable_mask = 1n << 10n;
/** `SPTE_MMU_PRESENT_MASK`. */
export const SPTE_MMU_PRESENT_MASK = 1n << 11n;
/** NX. */
export const shadow_nx_mask = 1n << 63n;
/** `shadow_present_mask` for legacy shadow paging: the hardware P bit. */
export const shadow_present_mask = PT_PRESENT_MASK;
/** `SPTE_BASE_ADDR_MASK`: bits 51:12. */
export const SPTE_BASE_ADDR_MASK = ((1n << 52n) - 1n) & ~0xfffn;
/** `SHADOW_NONPRESENT_VALUE` on 64-bit hosts (recent kernels): bit 63, P clear. */
export const SHADOW_NONPRESENT_VALUE = 1n << 63n;

/** `shadow_mmio_mask` = `shadow_mmio_value`: bit 51 | P. */
export const shadow_mmio_value = (1n << 51n) | PT_PRESENT_MASK;
/** Bits compared to recognise an MMIO SPTE. */
export const shadow_mmio_mask = shadow_mmio_value | SPTE_MMU_PRESENT_MASK;
/** `shadow_mmio_access_mask`: W and U. */
export const shadow_mmio_access_mask = BigInt(ACC_WRITE_MASK | ACC_USER_MASK);
/** gpa bits an MMIO SPTE can hold (50:12). */
const MMIO_SPTE_GPA_MASK = ((1n << 51n) - 1n) & ~0xfffn;
/** `MMIO_SPTE_GEN_LOW_*` and `MMIO_SPTE_GEN_HIGH_*`. */
const MMIO_GEN_LOW_START = 3n, MMIO_GEN_LOW_BITS = 8n;
const MMIO_GEN_HIGH_START = 52n, MMIO_GEN_HIGH_BITS = 11n;
/** `MMIO_SPTE_GEN_MASK`: the 19 generation bits an MMIO SPTE keeps. */
export const MMIO_SPTE_GEN_MASK = 2 ** 19 - 1;

/** `is_shadow_present_pte`. */
export function is_shadow_present_pte(spte: bigint): boolean {
  return (spte & SPTE_MMU_PRESENT_MASK) !== 0n;
}

/** `is_mmio_spte`. */
export function is_mmio_spte(spte: bigint): boolean {
  return (spte & shadow_mmio_mask) === shadow_mmio_value;
}

/** `is_large_pte`. */
export function is_large_pte(spte: bigint): boolean {
  return (spte & PT_PAGE_SIZE_MASK) !== 0n;
}

/** `is_last_spte`: level 1, or PS set. */
export function is_last_spte(spte: bigint, level: number): boolean {
  return level === 1 || is_large_pte(spte);
}

/** `is_writable_pte`. */
export function is_writable_pte(spte: bigint): boolean {
  return (spte & PT_WRITABLE_MASK) !== 0n;
}

/** `is_mmu_writable_spte`. */
export function is_mmu_writable_spte(spte: bigint): boolean {
  return (spte & shadow_mmu_writable_mask) !== 0n;
}

/** `is_host_writable_spte` (name as in older kernels: `spte_can_locklessly_be_made_writable`'s half). */
export function is_host_writable_spte(spte: bigint): boolean {
  return (spte & shadow_host_writable_mask) !== 0n;
}

/** `is_accessed_spte`. */
export function is_accessed_spte(spte: bigint): boolean {
  return (spte & shadow_accessed_mask) !== 0n;
}

/** `is_dirty_spte`. */
export function is_dirty_spte(spte: bigint): boolean {
  return (spte & shadow_dirty_mask) !== 0n;
}

/** `spte_to_pfn`. */
export function spte_to_pfn(spte: bigint): number {
  return Number((spte & SPTE_BASE_ADDR_MASK) >> 12n);
}

/** `make_nonleaf_spte`: P, W, U, A, no NX, and the child table's address. */
export function make_nonleaf_spte(child_pfn: number): bigint {
  return (BigInt(child_pfn) << 12n) | SPTE_MMU_PRESENT_MASK | shadow_present_mask |
    PT_WRITABLE_MASK | PT_USER_MASK | shadow_accessed_mask;
}

/** `make_mmio_spte`: the MMIO marker, gpa, W/U access and 19-bit generation. */
export function make_mmio_spte(gfn: number, access: number, gen: number): bigint {
  const g = BigInt(gen & MMIO_SPTE_GEN_MASK);
  const low = g & ((1n << MMIO_GEN_LOW_BITS) - 1n);
  const high = g >> MMIO_GEN_LOW_BITS;
  return shadow_mmio_value | (BigInt(access) & shadow_mmio_access_mask) |
    ((BigInt(gfn) << 12n) & MMIO_SPTE_GPA_MASK) | (low << MMIO_GEN_LOW_START) |
    ((high & ((1n << MMIO_GEN_HIGH_BITS) - 1n)) << MMIO_GEN_HIGH_START);
}

/** `get_mmio_spte_generation`. */
export function get_mmio_spte_generation(spte: bigint): number {
  const low = (spte >> MMIO_GEN_LOW_START) & ((1n << MMIO_GEN_LOW_BITS) - 1n);
  const high = (spte >> MMIO_GEN_HIGH_START) & ((1n << MMIO_GEN_HIGH_BITS) - 1n);
  return Number((high << MMIO_GEN_LOW_BITS) | low);
}

/** `get_mmio_spte_gfn`. */
export function get_mmio_spte_gfn(spte: bigint): number {
  return Number((spte & MMIO_SPTE_GPA_MASK) >> 12n);
}

/** `get_mmio_spte_access`. */
export function get_mmio_spte_access(spte: bigint): number {
  return Number(spte & shadow_mmio_access_mask);
}

/**
 * `spte_needs_atomic_update` (2026 text; `spte_has_volatile_bits` before): the SPTE may change
 * outside `mmu_lock` (fast page fault may set W on an MMU-writable SPTE; the CPU may set D on a
 * writable one), so an update must use xchg/cmpxchg rather than a plain store.
 */
export function spte_needs_atomic_update(spte: bigint): boolean {
  if (!is_shadow_present_pte(spte)) return false;
  if (!is_writable_pte(spte) && is_mmu_writable_spte(spte)) return true;
  return is_writable_pte(spte) && !is_dirty_spte(spte);
}

/**
 * `leaf_spte_change_needs_tlb_flush`: clearing MMU-writable from a present SPTE needs a remote
 * flush, even when W was already clear (f81602958c11). Clearing only W (dirty logging) does not:
 * the dirty-log ioctl flushes.
 */
export function leaf_spte_change_needs_tlb_flush(old_spte: bigint, new_spte: bigint): boolean {
  return is_mmu_writable_spte(old_spte) && !is_mmu_writable_spte(new_spte);
}

/** Reserved SPTE bits of the simulated host (MAXPHYADDR 46): 51:46. */
export const HOST_RSVD_ADDR_BITS = ((1n << 52n) - 1n) & ~((1n << BigInt(HOST_MAXPHYADDR)) - 1n);

/** The access bits (`ACC_*`) a leaf SPTE grants. */
export function spte_access(spte: bigint): number {
  return (is_writable_pte(spte) ? ACC_WRITE_MASK : 0) | (spte & PT_USER_MASK ? ACC_USER_MASK : 0) |
    (spte & shadow_nx_mask ? 0 : ACC_EXEC_MASK);
}
