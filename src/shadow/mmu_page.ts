/**
 * `struct kvm_mmu_page`: one 512-entry shadow table, its role and gfn, and the bookkeeping the
 * legacy shadow MMU keeps for it. The table itself lives in host memory (`spt` is the host
 * page), so the simulated CPU walks it and an sptep is a host physical address.
 *
 * @module
 */
import type { KvmMmuPageRole } from "./mmu_role.ts";

/** `KVM_MMU_HASH_SHIFT`. */
export const KVM_MMU_HASH_SHIFT = 12;
/** `SPTE_ENT_PER_PAGE`. */
export const SPTE_ENT_PER_PAGE = 512;

/** `hash_64(gfn, KVM_MMU_HASH_SHIFT)`: the golden-ratio multiplicative hash of the kernel. */
export function kvm_page_table_hashfn(gfn: number): number {
  const GOLDEN_RATIO_64 = 0x61c8_8646_80b5_83ebn;
  const h = (BigInt(gfn) * GOLDEN_RATIO_64) & ((1n << 64n) - 1n);
  return Number(h >> BigInt(64 - KVM_MMU_HASH_SHIFT));
}

/** One shadow page. */
export class KvmMmuPage {
  /** A debugging id, in allocation order. */
  readonly id: number;
  readonly gfn: number;
  role: KvmMmuPageRole;
  /** `role.word`, for identity comparisons. */
  roleWord: number;
  /** Host pfn of the table (`__pa(sp->spt) >> PAGE_SHIFT`). */
  readonly pfn: number;
  /** The table's words (`sp->spt`), an alias of the host page. */
  readonly spt: BigUint64Array;
  /**
   * `shadowed_translation[i]`, indirect pages only: the gfn and the guest access the SPTE was
   * built from (`gfn << 12 | access`, kept as two arrays).
   */
  readonly shadowed_gfn: Float64Array | null;
  readonly shadowed_access: Uint8Array | null;
  /** `parent_ptes`: the sptep (host physical addresses) that point at this page. */
  readonly parent_ptes = new Set<number>();
  unsync = false;
  /** `unsync_children`: the number of bits set in `unsync_child_bitmap`. */
  unsync_children = 0;
  readonly unsync_child_bitmap = new Uint8Array(SPTE_ENT_PER_PAGE);
  root_count = 0;
  mmu_valid_gen: number;
  write_flooding_count = 0;
  /** `clear_spte_count` of the 32-bit-host split-SPTE protocol. */
  clear_spte_count = 0;
  /**
   * Not KVM state, a diagnostic for the harness: true while a sync of this page is in flight
   * (from `kvm_unlink_unsync_page` in `mmu_sync_children` to the end of `kvm_sync_page`). In KVM
   * that is only the mmu_lock holder's stack; another vCPU that reads the page's SPTEs in the
   * meantime (in guest mode or locklessly) still sees the unsync contents.
   */
  syncing = false;

  /** Builds a page; `spt` is the zeroed host page at `pfn`. */
  constructor(
    id: number,
    gfn: number,
    role: KvmMmuPageRole,
    roleWord: number,
    pfn: number,
    spt: BigUint64Array,
    gen: number,
  ) {
    this.id = id;
    this.gfn = gfn;
    this.role = role;
    this.roleWord = roleWord;
    this.pfn = pfn;
    this.spt = spt;
    this.mmu_valid_gen = gen;
    const indirect = !role.direct && !role.passthrough;
    this.shadowed_gfn = indirect ? new Float64Array(SPTE_ENT_PER_PAGE) : null;
    this.shadowed_access = indirect ? new Uint8Array(SPTE_ENT_PER_PAGE) : null;
  }

  /** The sptep (host physical address) of entry `index`. */
  sptep(index: number): number {
    return this.pfn * 4096 + index * 8;
  }

  /** `sp_has_gptes`: indirect and not passthrough. */
  get has_gptes(): boolean {
    return !this.role.direct && !this.role.passthrough;
  }

  /** A short name for logs: `sp#3 gfn=0x12 L1 q0 acc=7 ind`. */
  toString(): string {
    const r = this.role;
    return `sp#${this.id} gfn=0x${this.gfn.toString(16)} L${r.level}` +
      `${r.has_4_byte_gpte ? ` q${r.quadrant}` : ""} acc=${r.access}` +
      `${r.direct ? " direct" : ""}${this.unsync ? " unsync" : ""}${r.invalid ? " invalid" : ""}`;
  }
}

/** `spte_index(sptep)`. */
export function spte_index(sptep: number): number {
  return (sptep % 4096) / 8;
}

/** The host pfn an sptep lies in. */
export function sptep_pfn(sptep: number): number {
  return Math.floor(sptep / 4096);
}
