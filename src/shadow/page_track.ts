/**
 * Emulated writes to guest page tables (`mmu.c`: `kvm_mmu_track_write`, reached through
 * `kvm_page_track_write` from `emulator_write_phys` and the emulated cmpxchg), and the
 * write-flooding counters (`detect_write_flooding`, `shadow_page_table_clear_flood`).
 *
 * KVM calls `kvm_mmu_track_write` after the emulator has written guest memory, so the new gpte
 * is already there. For every valid shadow page that shadows the written gfn:
 *
 * - a misaligned write (`detect_write_misaligned`) or the third write to an upper-level table
 *   without the table being walked in between (`detect_write_flooding`) zaps the whole page;
 * - otherwise the shadow entries built from the written gpte (`get_written_sptes`) are zapped.
 *
 * No new SPTE is installed: the next access faults and walks the new gpte. KVM does not call
 * this for its own A/D updates in the walker, for `kvm_write_guest` users (PV clocks, steal
 * time), for host userspace or device DMA.
 *
 * Version: mmu.c ~v6.10 (unchanged through the 2026 kvm-x86 snapshot).
 *
 * @module
 */
import type { Kvm } from "./kvm.ts";
import type { KvmVcpu } from "./kvm_vcpu.ts";
import { PG_LEVEL_4K } from "./kvm_memslots.ts";
import type { KvmMmuPage } from "./mmu_page.ts";
import { PT32_ROOT_LEVEL } from "./mmu_role.ts";
import {
  for_each_gfn_valid_sp_with_gptes,
  get_spte,
  is_obsolete_sp,
  kvm_flush_remote_tlbs,
  kvm_mmu_commit_zap_page,
  kvm_mmu_prepare_zap_page,
  mmu_page_zap_pte,
  sptep_to_sp,
} from "./mmu.ts";
import { is_mmio_spte, is_shadow_present_pte } from "./spte.ts";
import {
  for_each_shadow_entry_lockless,
  walk_shadow_page_lockless_begin,
  walk_shadow_page_lockless_end,
} from "./direct_mmu.ts";

const PAGE_SIZE = 4096;

/** Reads `bytes` bytes of guest memory at `gpa` within one page, little-endian; null on failure. */
function read_guest_bytes(kvm: Kvm, gpa: number, bytes: number): bigint | null {
  const gfn = Math.floor(gpa / PAGE_SIZE);
  if ((gpa % PAGE_SIZE) + bytes > PAGE_SIZE) return null;
  if (!kvm.gfn_to_memslot(gfn)) return null;
  let value = 0n;
  for (let i = bytes - 1; i >= 0; i--) {
    const a = gpa + i;
    const word = kvm.readGuestPhys(a - (a % 8), 8);
    value = (value << 8n) | ((word >> BigInt(8 * (a % 8))) & 0xffn);
  }
  return value;
}

/** The write as `kvm_mmu_track_write` sees it after `mmu_pte_write_fetch_gpte`. */
export interface TrackedWrite {
  readonly gpa: number;
  readonly bytes: number;
  /** The gpte now in memory (0 if it could not be read, or for other sizes). Informational. */
  readonly gentry: bigint;
}

/**
 * `mmu_pte_write_fetch_gpte`: with CR4.PAE set (`is_pae`: PAE paging or long mode), a 4-byte
 * write is a 32-bit guest writing half of a 64-bit gpte, so it is widened to the aligned
 * 8-byte gpte. Then the (new) gpte is read back for 4- and 8-byte writes.
 */
export function mmu_pte_write_fetch_gpte(vcpu: KvmVcpu, gpa: number, bytes: number): TrackedWrite {
  if (vcpu.arch.cr4_pae && bytes === 4) {
    gpa -= gpa % 8;
    bytes = 8;
  }
  let gentry = 0n;
  if (bytes === 4 || bytes === 8) gentry = read_guest_bytes(vcpu.kvm, gpa, bytes) ?? 0n;
  return { gpa, bytes, gentry };
}

/**
 * `detect_write_flooding`: counts an emulated write to an upper-level table; the third without
 * an intervening walk through the page means it is probably no longer a page table. Level-1
 * pages are exempt (they can be unsynced instead).
 */
export function detect_write_flooding(sp: KvmMmuPage): boolean {
  if (sp.role.level === PG_LEVEL_4K) return false;
  sp.write_flooding_count++;
  return sp.write_flooding_count >= 3;
}

/**
 * `detect_write_misaligned`: the write crosses a gpte boundary or is shorter than 4 bytes,
 * except a 1-byte write at a gpte-aligned offset (e.g. `andb` in `clear_bit`).
 */
export function detect_write_misaligned(sp: KvmMmuPage, gpa: number, bytes: number): boolean {
  const offset = gpa % PAGE_SIZE;
  const pte_size = sp.role.has_4_byte_gpte ? 4 : 8;
  if ((offset & (pte_size - 1)) === 0 && bytes === 1) return false;
  const crosses = ((offset ^ (offset + bytes - 1)) & ~(pte_size - 1)) !== 0;
  return crosses || bytes < 4;
}

/**
 * `get_written_sptes`: the index of the first SPTE of `sp` built from the gpte at `gpa`, and
 * how many. With 4-byte gptes the offset doubles (32 → 64-bit entries); a 32-bit PDE maps
 * 4 MiB, i.e. two 2 MiB shadow PDEs, so at level 2 it doubles again and two SPTEs are
 * affected. The bits above the page select the quadrant; a page of another quadrant holds no
 * SPTE for this gpte (null).
 */
export function get_written_sptes(
  sp: KvmMmuPage,
  gpa: number,
): { index: number; npte: number } | null {
  let page_offset = gpa % PAGE_SIZE;
  let npte = 1;
  if (sp.role.has_4_byte_gpte) {
    page_offset <<= 1;
    if (sp.role.level === PT32_ROOT_LEVEL) {
      page_offset &= ~7; // kill rounding error
      page_offset <<= 1;
      npte = 2;
    }
    const quadrant = page_offset >> 12;
    page_offset &= PAGE_SIZE - 1;
    if (quadrant !== sp.role.quadrant) return null;
  }
  return { index: Math.floor(page_offset / 8), npte };
}

/**
 * `kvm_mmu_remote_flush_or_zap`: commits the zapped pages (which flushes), or just flushes
 * remote TLBs when a present SPTE was zapped.
 */
function kvm_mmu_remote_flush_or_zap(
  kvm: Kvm,
  invalid_list: KvmMmuPage[],
  remote_flush: boolean,
): boolean {
  if (!remote_flush && invalid_list.length === 0) return false;
  if (invalid_list.length > 0) kvm_mmu_commit_zap_page(kvm, invalid_list);
  else kvm_flush_remote_tlbs(kvm);
  return true;
}

/**
 * `kvm_mmu_track_write(vcpu, gpa, new, bytes)`: an emulated guest write of `bytes` bytes at
 * `gpa` has just been stored in guest memory (KVM's `new` argument is only informational and is
 * not taken). Zaps the shadow state built from the written gptes; see the module comment.
 *
 * Counters: `misaligned_zaps` / `flooding_zaps` per shadow page zapped for that reason (KVM's
 * `mmu_flooded` counts both), `track_write_zaps` per written SPTE that held something (present
 * or MMIO) when it was zapped.
 */
export function kvm_mmu_track_write(vcpu: KvmVcpu, gpa: number, bytes: number): void {
  const kvm = vcpu.kvm;
  const gfn = Math.floor(gpa / PAGE_SIZE);
  // No indirect shadow page: nothing is write-protected for shadowing.
  if (kvm.indirect_shadow_pages === 0) return;
  kvm.locked(() => {
    const w = mmu_pte_write_fetch_gpte(vcpu, gpa, bytes);
    kvm.event(
      vcpu.vcpu_id,
      () =>
        `track write gpa=0x${w.gpa.toString(16)} bytes=${w.bytes} gpte=0x${w.gentry.toString(16)}`,
    );
    const invalid_list: KvmMmuPage[] = [];
    let flush = false;
    for (const sp of for_each_gfn_valid_sp_with_gptes(kvm, gfn)) {
      // for_each_valid_sp re-checks each page as it goes: a zap earlier in this loop (of a
      // page's unsync children) may have invalidated it.
      if (is_obsolete_sp(kvm, sp)) continue;
      if (detect_write_misaligned(sp, w.gpa, w.bytes)) {
        kvm_mmu_prepare_zap_page(kvm, sp, invalid_list);
        kvm.count("misaligned_zaps");
        continue;
      }
      if (detect_write_flooding(sp)) {
        kvm_mmu_prepare_zap_page(kvm, sp, invalid_list);
        kvm.count("flooding_zaps");
        continue;
      }
      const written = get_written_sptes(sp, w.gpa);
      if (!written || kvm.bug("track_write_skips_zap")) continue;
      for (let i = 0; i < written.npte; i++) {
        const sptep = sp.sptep(written.index + i);
        const entry = get_spte(kvm, sptep);
        // KVM passes a NULL invalid_list here; the model's mmu_page_zap_pte may queue a
        // parentless direct child, which is committed below with the rest.
        mmu_page_zap_pte(kvm, sp, sptep, invalid_list);
        if (is_shadow_present_pte(entry) || is_mmio_spte(entry)) kvm.count("track_write_zaps");
        if (is_shadow_present_pte(entry)) flush = true;
      }
    }
    kvm_mmu_remote_flush_or_zap(kvm, invalid_list, flush);
  });
}

/** `clear_sp_write_flooding_count`: the page holding `sptep` was just walked. */
export function clear_sp_write_flooding_count(kvm: Kvm, sptep: number): void {
  sptep_to_sp(kvm, sptep).write_flooding_count = 0;
}

/**
 * `shadow_page_table_clear_flood`: a lockless walk of the current root for `addr` that clears
 * the write-flooding count of every shadow page on the path (including the one whose SPTE is
 * not present). `FNAME(page_fault)` calls it when a write fault hits a write-tracked gfn.
 */
export function shadow_page_table_clear_flood(vcpu: KvmVcpu, addr: bigint): void {
  walk_shadow_page_lockless_begin(vcpu);
  try {
    for (const e of for_each_shadow_entry_lockless(vcpu, addr)) {
      clear_sp_write_flooding_count(vcpu.kvm, e.sptep);
    }
  } finally {
    walk_shadow_page_lockless_end(vcpu);
  }
}
