/**
 * MMU roles of KVM's legacy shadow MMU (TDP off): `union kvm_mmu_page_role`,
 * `union kvm_mmu_extended_role`, `union kvm_cpu_role`, and the functions that build them
 * (`kvm_calc_cpu_role`, the root-role part of `kvm_init_shadow_mmu`, `kvm_mmu_child_role`).
 *
 * Modelled on arch/x86/include/asm/kvm_host.h and arch/x86/kvm/mmu/mmu.c (~v6.10, mainline
 * layout: `access` is 3 bits, no MBEC `ACC_READ_MASK`).
 *
 * @module
 */

/** `ACC_EXEC_MASK`: the effective X right (guest NX inverted). Same bit as `PT_PRESENT_MASK`. */
export const ACC_EXEC_MASK = 1;
/** `ACC_WRITE_MASK`: same bit as `PT_WRITABLE_MASK`. */
export const ACC_WRITE_MASK = 2;
/** `ACC_USER_MASK`: same bit as `PT_USER_MASK`. */
export const ACC_USER_MASK = 4;
/** `ACC_ALL`: X, W and U. */
export const ACC_ALL = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK;

/** `PG_LEVEL_4K`: level of a PTE. */
export const PG_LEVEL_4K = 1;
/** `PT32_ROOT_LEVEL`: root level of 2-level 32-bit paging. */
export const PT32_ROOT_LEVEL = 2;
/** `PT32E_ROOT_LEVEL`: root level of PAE paging (the PDPTE level). */
export const PT32E_ROOT_LEVEL = 3;
/** `PT64_ROOT_4LEVEL`. */
export const PT64_ROOT_4LEVEL = 4;
/** `PT64_ROOT_5LEVEL`. */
export const PT64_ROOT_5LEVEL = 5;

/**
 * `union kvm_mmu_page_role`: the identity of a shadow page besides its gfn. Two shadow pages
 * for one gfn are interchangeable iff their {@link roleWord} values are equal.
 */
export interface KvmMmuPageRole {
  /** `level:4`: level of the shadow table (0 only in a nonpaging `cpu_role`). */
  level: number;
  /** `has_4_byte_gpte:1`: the guest uses 2-level 32-bit paging. */
  has_4_byte_gpte: boolean;
  /** `quadrant:2`: which part of a 4-byte-gpte guest table this 8-byte shadow table covers. */
  quadrant: number;
  /** `direct:1`: the shadow page shadows no guest table. */
  direct: boolean;
  /** `access:3`: `ACC_*` bits inherited from the gptes above (or the leaf for direct sps). */
  access: number;
  /** `invalid:1`: zapped but still referenced as a root. */
  invalid: boolean;
  /** `efer_nx:1`. */
  efer_nx: boolean;
  /** `cr0_wp:1`. */
  cr0_wp: boolean;
  /** `smep_andnot_wp:1`: CR4.SMEP && !CR0.WP. */
  smep_andnot_wp: boolean;
  /** `smap_andnot_wp:1`: CR4.SMAP && !CR0.WP. */
  smap_andnot_wp: boolean;
  /** `ad_disabled:1`: always 0 for legacy shadow paging. */
  ad_disabled: boolean;
  /** `guest_mode:1`: an L2 context. */
  guest_mode: boolean;
  /** `passthrough:1`: NPT only; always 0 for legacy shadow paging. */
  passthrough: boolean;
  /** `smm:8`: SMM address space. */
  smm: number;
}

/** `union kvm_mmu_extended_role`: MMU state that is not part of the shadow-page identity. */
export interface KvmMmuExtendedRole {
  /** `valid:1`: set on first use so an all-zero role never matches. */
  valid: boolean;
  /** `execonly:1`: nested EPT only. */
  execonly: boolean;
  /** `cr4_pse:1`. */
  cr4_pse: boolean;
  /** `cr4_pke:1`: CR4.PKE && EFER.LMA. */
  cr4_pke: boolean;
  /** `cr4_smap:1`. */
  cr4_smap: boolean;
  /** `cr4_smep:1`. */
  cr4_smep: boolean;
  /** `cr4_la57:1`: CR4.LA57 && EFER.LMA. */
  cr4_la57: boolean;
  /** `efer_lma:1`. */
  efer_lma: boolean;
}

/** `union kvm_cpu_role`: the guest paging mode as the MMU sees it. */
export interface KvmCpuRole {
  /** `base`: page-role part (`mmu->cpu_role.base`). */
  base: KvmMmuPageRole;
  /** `ext`: extended part. */
  ext: KvmMmuExtendedRole;
}

/**
 * `struct kvm_mmu_role_regs` plus the vCPU state `kvm_calc_cpu_role` reads. EFER.LMA is derived
 * as `cr0_pg && efer_lme`, which is what KVM's `kvm_set_cr0`/`kvm_set_efer` maintain.
 */
export interface GuestRegs {
  /** CR0.PG. */
  cr0_pg: boolean;
  /** CR0.WP. */
  cr0_wp: boolean;
  /** CR4.PAE. */
  cr4_pae: boolean;
  /** CR4.PSE. */
  cr4_pse: boolean;
  /** CR4.SMEP. */
  cr4_smep: boolean;
  /** CR4.SMAP. */
  cr4_smap: boolean;
  /** CR4.PKE. */
  cr4_pke: boolean;
  /** CR4.LA57. */
  cr4_la57: boolean;
  /** EFER.LME. */
  efer_lme: boolean;
  /** EFER.NX. */
  efer_nx: boolean;
  /** `is_smm(vcpu)` (the SMM address space, 0 or 1); default false. */
  smm?: boolean;
  /** `is_guest_mode(vcpu)`; default false. */
  guest_mode?: boolean;
}

const bit = (b: boolean, shift: number): number => (b ? 1 : 0) << shift;

function field(value: number, width: number, name: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** width) {
    throw new RangeError(`kvm_mmu_page_role.${name} = ${value} does not fit in ${width} bits`);
  }
  return value;
}

/**
 * `role.word`: packs the role in KVM's bit order (level 3:0, has_4_byte_gpte 4, quadrant 6:5,
 * direct 7, access 10:8, invalid 11, efer_nx 12, cr0_wp 13, smep_andnot_wp 14,
 * smap_andnot_wp 15, ad_disabled 16, guest_mode 17, passthrough 18, smm 31:24) as an unsigned
 * 32-bit integer.
 *
 * @throws {RangeError} when a numeric field does not fit its bit-field
 */
export function roleWord(role: KvmMmuPageRole): number {
  const word = field(role.level, 4, "level") |
    bit(role.has_4_byte_gpte, 4) |
    (field(role.quadrant, 2, "quadrant") << 5) |
    bit(role.direct, 7) |
    (field(role.access, 3, "access") << 8) |
    bit(role.invalid, 11) |
    bit(role.efer_nx, 12) |
    bit(role.cr0_wp, 13) |
    bit(role.smep_andnot_wp, 14) |
    bit(role.smap_andnot_wp, 15) |
    bit(role.ad_disabled, 16) |
    bit(role.guest_mode, 17) |
    bit(role.passthrough, 18) |
    (field(role.smm, 8, "smm") << 24);
  return word >>> 0;
}

/** Unpacks a `role.word` (the inverse of {@link roleWord}; unused bits 23:19 are dropped). */
export function roleFromWord(word: number): KvmMmuPageRole {
  const on = (shift: number): boolean => ((word >>> shift) & 1) === 1;
  return {
    level: word & 0xf,
    has_4_byte_gpte: on(4),
    quadrant: (word >>> 5) & 3,
    direct: on(7),
    access: (word >>> 8) & 7,
    invalid: on(11),
    efer_nx: on(12),
    cr0_wp: on(13),
    smep_andnot_wp: on(14),
    smap_andnot_wp: on(15),
    ad_disabled: on(16),
    guest_mode: on(17),
    passthrough: on(18),
    smm: (word >>> 24) & 0xff,
  };
}

/** `ext.word`: valid 0, execonly 1, cr4_pse 2, cr4_pke 3, cr4_smap 4, cr4_smep 5, la57 6, lma 7. */
export function extRoleWord(ext: KvmMmuExtendedRole): number {
  return bit(ext.valid, 0) | bit(ext.execonly, 1) | bit(ext.cr4_pse, 2) | bit(ext.cr4_pke, 3) |
    bit(ext.cr4_smap, 4) | bit(ext.cr4_smep, 5) | bit(ext.cr4_la57, 6) | bit(ext.efer_lma, 7);
}

/** `cpu_role.as_u64`: `base.word` in bits 31:0, `ext.word` in bits 63:32. */
export function cpuRoleAsU64(role: KvmCpuRole): bigint {
  return (BigInt(extRoleWord(role.ext)) << 32n) | BigInt(roleWord(role.base));
}

function zeroRole(): KvmMmuPageRole {
  return roleFromWord(0);
}

/**
 * `kvm_calc_cpu_role()`: the guest paging mode. With CR0.PG=0 only `access`, `smm`,
 * `guest_mode`, `ext.valid` and `direct=1` are set (level 0, "nonpaging"). Otherwise efer_nx,
 * cr0_wp, sm[ae]p_andnot_wp, has_4_byte_gpte = !CR4.PAE, level 5/4 (LMA, by LA57), 3 (PAE) or
 * 2, and the extended bits (PKE and LA57 only count with LMA).
 */
export function kvm_calc_cpu_role(regs: GuestRegs): KvmCpuRole {
  const base = zeroRole();
  base.access = ACC_ALL;
  base.smm = regs.smm ? 1 : 0;
  base.guest_mode = regs.guest_mode ?? false;
  const ext: KvmMmuExtendedRole = {
    valid: true,
    execonly: false,
    cr4_pse: false,
    cr4_pke: false,
    cr4_smap: false,
    cr4_smep: false,
    cr4_la57: false,
    efer_lma: false,
  };
  if (!regs.cr0_pg) {
    base.direct = true;
    return { base, ext };
  }
  const efer_lma = regs.cr0_pg && regs.efer_lme;
  base.efer_nx = regs.efer_nx;
  base.cr0_wp = regs.cr0_wp;
  base.smep_andnot_wp = regs.cr4_smep && !regs.cr0_wp;
  base.smap_andnot_wp = regs.cr4_smap && !regs.cr0_wp;
  base.has_4_byte_gpte = !regs.cr4_pae;
  if (efer_lma) base.level = regs.cr4_la57 ? PT64_ROOT_5LEVEL : PT64_ROOT_4LEVEL;
  else if (regs.cr4_pae) base.level = PT32E_ROOT_LEVEL;
  else base.level = PT32_ROOT_LEVEL;
  ext.cr4_smep = regs.cr4_smep;
  ext.cr4_smap = regs.cr4_smap;
  ext.cr4_pse = regs.cr4_pse;
  ext.cr4_pke = efer_lma && regs.cr4_pke;
  ext.cr4_la57 = efer_lma && regs.cr4_la57;
  ext.efer_lma = efer_lma;
  return { base, ext };
}

/**
 * The `root_role` computed by `kvm_init_shadow_mmu()` (TDP off): `cpu_role.base` with
 * `level = max(level, PT32E_ROOT_LEVEL)` (2-level, PAE and nonpaging guests are all shadowed by
 * PAE tables; a nonpaging root stays `direct`) and `efer_nx = true` (362505deb8e2, v5.19: KVM
 * always runs the shadow MMU with hardware EFER.NX=1).
 */
export function kvm_calc_shadow_mmu_root_role(cpu_role: KvmCpuRole): KvmMmuPageRole {
  return {
    ...cpu_role.base,
    level: Math.max(cpu_role.base.level, PT32E_ROOT_LEVEL),
    efer_nx: true,
  };
}

/**
 * `kvm_mmu_child_role()`: the role of the shadow page linked from entry `parent_index` of a
 * shadow page with `parent_role`. Level minus one, the given `access` and `direct`,
 * `passthrough = 0`; for 4-byte gptes (only level-1 children exist, KVM WARNs otherwise) the
 * quadrant is `parent_index & 1`: which half of the 1024-entry guest table (or 4 MiB page) the
 * 512-entry child covers. Other fields, including the quadrant of 8-byte-gpte roles, are the
 * parent's.
 */
export function kvm_mmu_child_role(
  parent_role: KvmMmuPageRole,
  parent_index: number,
  direct: boolean,
  access: number,
): KvmMmuPageRole {
  const role: KvmMmuPageRole = {
    ...parent_role,
    level: parent_role.level - 1,
    access,
    direct,
    passthrough: false,
  };
  if (role.has_4_byte_gpte) role.quadrant = parent_index & 1;
  return role;
}

/**
 * `sync_role_ign.word` from `kvm_sync_page_check()`: level (0xf), access (0x7), quadrant (0x3)
 * and passthrough (0x1) are not compared when syncing an unsync sp against `root_role`.
 */
export const SYNC_ROLE_IGN_WORD: number = roleWord({
  ...zeroRole(),
  level: 0xf,
  access: 0x7,
  quadrant: 0x3,
  passthrough: true,
});

/**
 * `role.word & ~sync_role_ign.word`: KVM may sync `sp` under `root_role` only when this value is
 * equal for both (and `sp` is not direct); otherwise `kvm_sync_page_check` WARNs and the sp is
 * zapped.
 */
export function roleWordIgnoringForSync(role: KvmMmuPageRole): number {
  return (roleWord(role) & ~SYNC_ROLE_IGN_WORD) >>> 0;
}
