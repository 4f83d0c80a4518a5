/**
 * Per-MMU guest paging metadata, as `reset_guest_paging_metadata()` builds it: the guest
 * reserved-bit masks (`guest_rsvd_check`, `__reset_rsvds_bits_mask`), the 16-byte
 * `permissions[]` table (`update_permission_bitmask`, non-EPT) and `pkru_mask`
 * (`update_pkru_bitmask`), plus `permission_fault()` from arch/x86/kvm/mmu.h.
 *
 * **PFEC representation.** KVM's walker takes a 64-bit `access` whose bit 48 is the KVM-only
 * `PFERR_IMPLICIT_ACCESS`. Here an access/PFEC is a non-negative JS integer (< 2^53) and
 * {@link PFERR_IMPLICIT_ACCESS} is `2 ** 48`. JS bitwise operators truncate to 32 bits:
 * `PFERR_IMPLICIT_ACCESS | PFERR_WRITE_MASK` is just `PFERR_WRITE_MASK`. Add the flag with
 * {@link pferr_with_implicit} and test it with {@link pferr_is_implicit}; `access &
 * PFERR_WRITE_MASK` and friends are exact for the low bits, and {@link pferr_low32} is KVM's
 * `unsigned int pfec = access`.
 *
 * @module
 */

import {
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  type KvmCpuRole,
  PT32_ROOT_LEVEL,
  PT32E_ROOT_LEVEL,
  PT64_ROOT_4LEVEL,
  PT64_ROOT_5LEVEL,
} from "./mmu_role.ts";

/** PFEC bit 0 (P): the fault was a protection violation on a present translation. */
export const PFERR_PRESENT_MASK = 1 << 0;
/** PFEC bit 1 (W/R): a write. */
export const PFERR_WRITE_MASK = 1 << 1;
/** PFEC bit 2 (U/S): a user-mode access. */
export const PFERR_USER_MASK = 1 << 2;
/** PFEC bit 3 (RSVD): a reserved bit was set. Reused as the SMAP-override index bit. */
export const PFERR_RSVD_MASK = 1 << 3;
/** PFEC bit 4 (I/D): an instruction fetch. */
export const PFERR_FETCH_MASK = 1 << 4;
/** PFEC bit 5 (PK): protection-key violation. */
export const PFERR_PK_MASK = 1 << 5;
/** `PFERR_RSVD_BIT`. */
export const PFERR_RSVD_BIT = 3;
/**
 * `PFERR_IMPLICIT_ACCESS` (`BIT_ULL(48)`): KVM-defined, set by the emulator for implicit
 * supervisor accesses (descriptor tables etc.). A hardware #PF never carries it.
 */
export const PFERR_IMPLICIT_ACCESS = 2 ** 48;

/** `unsigned int pfec = access`: the low 32 bits of an access/PFEC number. */
export function pferr_low32(access: number): number {
  return access >>> 0;
}

/** `access | PFERR_IMPLICIT_ACCESS` for an access number (JS `|` would drop bit 48). */
export function pferr_with_implicit(access: number): number {
  return pferr_is_implicit(access) ? access : access + PFERR_IMPLICIT_ACCESS;
}

/** `access & PFERR_IMPLICIT_ACCESS` for an access number (see the module note). */
export function pferr_is_implicit(access: number): boolean {
  return Math.floor(access / PFERR_IMPLICIT_ACCESS) % 2 === 1;
}

/**
 * The CPU vendor (`CpuModel["vendor"]` in src/model/case.ts), which decides AMD's reserved bit 8
 * in non-leaf PML4Es/PML5Es.
 */
export type Vendor = "intel" | "amd";

/**
 * `struct rsvd_bits_validate`. `rsvd_bits_mask[bit7][level - 1]`: row 0 for entries with bit 7
 * clear, row 1 with bit 7 set (large page, or PAT in a PTE). `bad_mt_xwr` is EPT-only, always 0.
 */
export interface RsvdBitsValidate {
  /** `[bit7 = 0][level - 1]` and `[bit7 = 1][level - 1]`, five levels each. */
  rsvd_bits_mask: [bigint[], bigint[]];
  /** `bad_mt_xwr`: 0 for non-EPT paging. */
  bad_mt_xwr: bigint;
}

/** The guest CPUID facts the reserved-bit masks depend on. */
export interface GuestCpuid {
  /** `cpuid_maxphyaddr(vcpu)`: `reserved_gpa_bits = rsvd_bits(maxphyaddr, 63)`. */
  maxphyaddr: number;
  /** `guest_cpuid_is_amd_or_hygon(vcpu)` when `"amd"`. */
  vendor: Vendor;
  /**
   * `guest_can_use(vcpu, X86_FEATURE_GBPAGES)`. With TDP off KVM can shadow 1 GiB guest pages,
   * so this is the guest CPUID bit.
   */
  gbpages: boolean;
}

/** The guest-walk metadata of a `struct kvm_mmu`. */
export interface GuestPagingMetadata {
  /** `guest_rsvd_check`. */
  guest_rsvd_check: RsvdBitsValidate;
  /** `permissions[16]`: byte `pfec >> 1`, bit `ACC_*` value set = fault. */
  permissions: Uint8Array;
  /** `pkru_mask`: 2 bits per `pfec` (even bit offsets, PFEC.RSVD replaced by the pte's U). */
  pkru_mask: number;
}

/** `rsvd_bits(s, e)`: bits s..e inclusive as a u64 (0 when e < s; e is taken mod 64). */
export function rsvd_bits(s: number, e: number): bigint {
  const end = e & 63;
  if (end < s) return 0n;
  return ((2n << BigInt(end - s)) - 1n) << BigInt(s);
}

/** `is_cpuid_PSE36()`: hard-wired to 1 in KVM (doc §4 item 5). */
export function is_cpuid_PSE36(): boolean {
  return true;
}

function emptyRsvdCheck(): RsvdBitsValidate {
  return { rsvd_bits_mask: [[0n, 0n, 0n, 0n, 0n], [0n, 0n, 0n, 0n, 0n]], bad_mt_xwr: 0n };
}

/**
 * `__reset_rsvds_bits_mask()`: reserved bits per paging level for non-EPT paging.
 *
 * - 2-level: none, except a 4 MiB PDE with PSE, whose bits 21:17 are reserved whatever
 *   MAXPHYADDR is (`is_cpuid_PSE36()` is 1, so KVM assumes a 36-bit PSE-36 layout).
 * - PAE: PDPTE 63, hi (62:maxphy), 8:5, 2:1; PDE/PTE hi; 2 MiB PDE hi, 20:13.
 * - 4/5-level: PML5E/PML4E hi, bit 7, bit 8 on AMD; PDPTE hi (+ bit 7 without GBPAGES);
 *   1 GiB PDPTE also 29:13; 2 MiB PDE 20:13; PDE/PTE hi.
 * - "hi" is `pa_bits_rsvd & rsvd_bits(0, 51)` (`(0, 62)` for PAE), plus bit 63 when !nx.
 * - Levels other than 2..5 leave the masks zero.
 */
export function __reset_rsvds_bits_mask(
  pa_bits_rsvd: bigint,
  level: number,
  nx: boolean,
  gbpages: boolean,
  pse: boolean,
  amd: boolean,
): RsvdBitsValidate {
  const check = emptyRsvdCheck();
  const [m0, m1] = check.rsvd_bits_mask;
  const gbpages_bit_rsvd = gbpages ? 0n : rsvd_bits(7, 7);
  let high_bits_rsvd = pa_bits_rsvd &
    (level === PT32E_ROOT_LEVEL ? rsvd_bits(0, 62) : rsvd_bits(0, 51));
  // NX does not exist in PDPTEs: their bit 63 is added unconditionally below.
  if (!nx) high_bits_rsvd |= rsvd_bits(63, 63);
  // Non-leaf PML4Es and PDPEs reserve bit 8 (G in leaves) on AMD only.
  const nonleaf_bit8_rsvd = amd ? rsvd_bits(8, 8) : 0n;

  switch (level) {
    case PT32_ROOT_LEVEL:
      m0[1] = 0n;
      m0[0] = 0n;
      m1[0] = m0[0];
      if (!pse) m1[1] = 0n;
      else if (is_cpuid_PSE36()) m1[1] = rsvd_bits(17, 21); // 36-bit PSE 4 MiB page
      else m1[1] = rsvd_bits(13, 21); // 32-bit PSE 4 MiB page
      break;
    case PT32E_ROOT_LEVEL:
      m0[2] = rsvd_bits(63, 63) | high_bits_rsvd | rsvd_bits(5, 8) | rsvd_bits(1, 2); // PDPTE
      m0[1] = high_bits_rsvd; // PDE
      m0[0] = high_bits_rsvd; // PTE
      m1[1] = high_bits_rsvd | rsvd_bits(13, 20); // 2 MiB page
      m1[0] = m0[0];
      break;
    case PT64_ROOT_5LEVEL:
    case PT64_ROOT_4LEVEL:
      if (level === PT64_ROOT_5LEVEL) {
        m0[4] = high_bits_rsvd | nonleaf_bit8_rsvd | rsvd_bits(7, 7);
        m1[4] = m0[4];
      }
      m0[3] = high_bits_rsvd | nonleaf_bit8_rsvd | rsvd_bits(7, 7);
      m0[2] = high_bits_rsvd | gbpages_bit_rsvd;
      m0[1] = high_bits_rsvd;
      m0[0] = high_bits_rsvd;
      m1[3] = m0[3];
      m1[2] = high_bits_rsvd | gbpages_bit_rsvd | rsvd_bits(13, 29);
      m1[1] = high_bits_rsvd | rsvd_bits(13, 20); // 2 MiB page
      m1[0] = m0[0];
      break;
  }
  return check;
}

/**
 * `reset_guest_rsvds_bits_mask()`: {@link __reset_rsvds_bits_mask} with
 * `vcpu->arch.reserved_gpa_bits = rsvd_bits(maxphyaddr, 63)`, the guest level, guest EFER.NX,
 * GBPAGES, CR4.PSE and the vendor.
 */
export function reset_guest_rsvds_bits_mask(
  cpu_role: KvmCpuRole,
  maxphyaddr: number,
  vendor: Vendor,
  gbpages: boolean,
): RsvdBitsValidate {
  return __reset_rsvds_bits_mask(
    rsvd_bits(maxphyaddr, 63),
    cpu_role.base.level,
    cpu_role.base.efer_nx,
    gbpages,
    cpu_role.ext.cr4_pse,
    vendor === "amd",
  );
}

/** `get_rsvd_bits()`: the mask row selected by the entry's bit 7, for `level` (1-based). */
export function get_rsvd_bits(rsvd_check: RsvdBitsValidate, pte: bigint, level: number): bigint {
  const bit7 = Number((pte >> 7n) & 1n);
  const mask = rsvd_check.rsvd_bits_mask[bit7 as 0 | 1][level - 1];
  if (mask === undefined) throw new RangeError(`no reserved-bit mask for level ${level}`);
  return mask;
}

/** `__is_rsvd_bits_set()`: `pte & rsvd_bits_mask[bit7][level - 1]` is non-zero. */
export function is_rsvd_bits_set(
  rsvd_check: RsvdBitsValidate,
  gpte: bigint,
  level: number,
): boolean {
  return (gpte & get_rsvd_bits(rsvd_check, gpte, level)) !== 0n;
}

/** `BYTE_MASK(access)`: bit i (i = 0..7, an `ACC_*` value) set iff `i & access`. */
function byte_mask(access: number): number {
  let mask = 0;
  for (let acc = 0; acc < 8; acc++) if (acc & access) mask |= 1 << acc;
  return mask;
}

/**
 * `update_permission_bitmask(mmu, ept = false)`: for each `pfec >> 1` (W, U, RSVD-as-SMAP-
 * override, F), the set of `ACC_*` values that fault.
 *
 * - write fault: W && !w, but with CR0.WP=0 only user writes fault on !w;
 * - user fault: U && !u;
 * - fetch fault: F && !x, only when EFER.NX=1;
 * - SMEP: CR4.SMEP, supervisor fetch of a u page;
 * - SMAP: CR4.SMAP, supervisor non-fetch access to a u page, no override (index bit RSVD).
 */
export function update_permission_bitmask(cpu_role: KvmCpuRole): Uint8Array {
  const permissions = new Uint8Array(16);
  const x = byte_mask(ACC_EXEC_MASK);
  const w = byte_mask(ACC_WRITE_MASK);
  const u = byte_mask(ACC_USER_MASK);
  const cr4_smep = cpu_role.ext.cr4_smep;
  const cr4_smap = cpu_role.ext.cr4_smap;
  const cr0_wp = cpu_role.base.cr0_wp;
  const efer_nx = cpu_role.base.efer_nx;

  for (let byte = 0; byte < permissions.length; byte++) {
    const pfec = byte << 1;
    let wf = pfec & PFERR_WRITE_MASK ? ~w & 0xff : 0;
    const uf = pfec & PFERR_USER_MASK ? ~u & 0xff : 0;
    let ff = pfec & PFERR_FETCH_MASK ? ~x & 0xff : 0;
    let smepf = 0;
    let smapf = 0;
    // Faults from kernel-mode accesses to user pages.
    const kf = pfec & PFERR_USER_MASK ? 0 : u;
    // Not really needed: with !nx a gpte's NX bit is reserved.
    if (!efer_nx) ff = 0;
    // Supervisor writes to read-only pages are allowed with CR0.WP=0.
    if (!cr0_wp) wf = pfec & PFERR_USER_MASK ? wf : 0;
    if (cr4_smep) smepf = pfec & PFERR_FETCH_MASK ? kf : 0;
    // SMAP: the RSVD position of the index means "not subject to SMAP" (permission_fault()).
    if (cr4_smap) smapf = pfec & (PFERR_RSVD_MASK | PFERR_FETCH_MASK) ? 0 : kf;
    permissions[byte] = ff | uf | wf | smepf | smapf;
  }
  return permissions;
}

/**
 * `update_pkru_bitmask()`: 0 unless `cpu_role.ext.cr4_pke` (CR4.PKE && LMA). Otherwise, for
 * every pfec (PFEC.RSVD replaced by the pte's U bit), 2 bits at offset `pfec`: AD is checked for
 * non-fetch accesses to user pages, WD additionally for writes that are user or CR0.WP=1.
 *
 * KVM never exposes PKU to guests with TDP off (`kvm_set_cpu_caps` clears it), so under shadow
 * paging CR4.PKE stays 0 and this is 0; it is kept for the emulator-walk model.
 */
export function update_pkru_bitmask(cpu_role: KvmCpuRole): number {
  if (!cpu_role.ext.cr4_pke) return 0;
  const wp = cpu_role.base.cr0_wp;
  let pkru_mask = 0;
  for (let bitIndex = 0; bitIndex < 16; bitIndex++) {
    const pfec = bitIndex << 1;
    const ff = (pfec & PFERR_FETCH_MASK) !== 0;
    const uf = (pfec & PFERR_USER_MASK) !== 0;
    const wf = (pfec & PFERR_WRITE_MASK) !== 0;
    const pte_user = (pfec & PFERR_RSVD_MASK) !== 0; // PFEC.RSVD is replaced by ACC_USER_MASK.
    const check_pkey = !ff && pte_user;
    const check_write = check_pkey && wf && (uf || wp);
    const pkey_bits = (check_pkey ? 1 : 0) | ((check_write ? 1 : 0) << 1);
    pkru_mask |= (pkey_bits & 3) << pfec;
  }
  return pkru_mask >>> 0;
}

/**
 * `reset_guest_paging_metadata()`: rebuilds the three tables for a paging `cpu_role`. With
 * CR0.PG=0 KVM returns early and leaves the previous (stale) tables in place; this returns
 * `prev` then (or all-zero tables, as a freshly created vCPU has).
 */
export function reset_guest_paging_metadata(
  cpu_role: KvmCpuRole,
  cpuid: GuestCpuid,
  prev?: GuestPagingMetadata,
): GuestPagingMetadata {
  if (cpu_role.base.level === 0) {
    return prev ??
      { guest_rsvd_check: emptyRsvdCheck(), permissions: new Uint8Array(16), pkru_mask: 0 };
  }
  return {
    guest_rsvd_check: reset_guest_rsvds_bits_mask(
      cpu_role,
      cpuid.maxphyaddr,
      cpuid.vendor,
      cpuid.gbpages,
    ),
    permissions: update_permission_bitmask(cpu_role),
    pkru_mask: update_pkru_bitmask(cpu_role),
  };
}

/** The `struct kvm_mmu` fields `permission_fault()` reads. */
export interface PermissionMmu {
  /** `permissions[16]` from {@link update_permission_bitmask}. */
  permissions: Uint8Array;
  /** `pkru_mask` from {@link update_pkru_bitmask}. */
  pkru_mask: number;
}

const PFEC_ACCESS_BITS = PFERR_PRESENT_MASK | PFERR_WRITE_MASK | PFERR_USER_MASK |
  PFERR_FETCH_MASK;

/**
 * `permission_fault()` (mmu.h, v5.19+): returns 0 when the access is allowed, otherwise the
 * error-code bits the fault contributes: `PFERR_PRESENT_MASK`, plus `PFERR_PK_MASK` when the
 * protection-key check failed (`-(u32)fault & errcode`). The caller ORs in W/U/F itself.
 *
 * SMAP override: `not_smap = EFLAGS.AC && !(access & PFERR_IMPLICIT_ACCESS)` is added at the
 * PFEC.RSVD position of the index. (Before "KVM: X86: Handle implicit supervisor access with
 * SMAP", 2022, the override was `CPL < 3 && EFLAGS.AC`; `_cpl` is kept for that history only and
 * is unused.)
 *
 * @param mmu `permissions` and `pkru_mask`
 * @param _cpl current privilege level (unused by the modelled rule)
 * @param rflags_ac EFLAGS.AC
 * @param pte_access effective `ACC_*` rights of the translation
 * @param pte_pkey protection key of the leaf (bits 62:59; 0 for 32-bit gptes)
 * @param access PFEC subset: W/U/F, optionally P and {@link PFERR_IMPLICIT_ACCESS}
 * @param pkru the PKRU register
 * @throws {RangeError} when `access` carries RSVD, PK or other bits KVM WARNs about (the table
 *   index would leave `permissions[]`)
 */
export function permission_fault(
  mmu: PermissionMmu,
  _cpl: number,
  rflags_ac: boolean,
  pte_access: number,
  pte_pkey: number,
  access: number,
  pkru: number,
): number {
  const pfec = pferr_low32(access);
  if ((pfec & ~PFEC_ACCESS_BITS) !== 0) {
    throw new RangeError(`permission_fault: unexpected PFEC bits 0x${pfec.toString(16)}`);
  }
  const not_smap = rflags_ac && !pferr_is_implicit(access);
  const index = (pfec + (not_smap ? 1 << PFERR_RSVD_BIT : 0)) >> 1;
  let fault = (((mmu.permissions[index] ?? 0) >> pte_access) & 1) === 1;
  let errcode = PFERR_PRESENT_MASK;

  if (mmu.pkru_mask !== 0) {
    // Two PKRU bits per key: AD at 2*key, WD at 2*key+1.
    let pkru_bits = (pkru >>> (pte_pkey * 2)) & 3;
    // Clear the present bit, replace PFEC.RSVD with ACC_USER_MASK.
    const offset = (pfec & ~1) + ((pte_access & ACC_USER_MASK) << (PFERR_RSVD_BIT - 2));
    pkru_bits &= mmu.pkru_mask >>> offset;
    if (pkru_bits !== 0) errcode |= PFERR_PK_MASK;
    fault ||= pkru_bits !== 0;
  }
  return fault ? errcode : 0;
}
