/**
 * Injected bugs: named switches, off by default, each re-creating one historical KVM bug at the
 * exact place it lived. A case's `sut.inject` names the switches to turn on. The code tests a
 * switch with `kvm.bug(name)` at the line the bug was in.
 *
 * @module
 */

/** A registered bug. */
export interface InjectedBug {
  readonly name: string;
  /** What KVM got wrong, and where. */
  readonly description: string;
  /** The fixing commit or the report, for the reader. */
  readonly reference: string;
}

/** Every bug the SUT can re-create. */
export const INJECTED_BUGS: readonly InjectedBug[] = [
  {
    name: "prefetch_ignores_accessed",
    description: "FNAME(prefetch_invalid_gpte) does not check the gpte's A bit, so prefetch " +
      "maps pages the guest never accessed and their A bit is never set by a walk",
    reference: "kvm-shadow-mmu.md §2 C; paging_tmpl.h FNAME(prefetch_invalid_gpte)",
  },
  {
    name: "invlpg_no_sync",
    description: "INVLPG flushes the hardware TLB but does not sync the unsync leaf SPTE " +
      "(kvm_mmu_invalidate_addr skips sync_spte), so a stale translation survives INVLPG",
    reference: "kvm-shadow-mmu.md §1.8 INVLPG; §2 D",
  },
  {
    name: "cr3_flush_skips_sync",
    description: "MOV CR3 without NOFLUSH requests KVM_REQ_TLB_FLUSH_CURRENT but not " +
      "KVM_REQ_MMU_SYNC, so unsync pages keep stale SPTEs after a flushing CR3 write",
    reference: "x86.c kvm_invalidate_pcid; kvm-shadow-mmu.md §1.1",
  },
  {
    name: "wp0_spte_keeps_exec_under_smep",
    description: "The CR0.WP=0 supervisor-write fix-up in FNAME(page_fault) does not remove X " +
      "when CR4.SMEP=1, so the kernel-made SPTE lets the supervisor execute a user page",
    reference: "kvm-shadow-mmu.md §1.4 step 5; Documentation/virt/kvm/x86/mmu.rst",
  },
  {
    name: "unsync_no_write_protect_on_sync",
    description: "mmu_sync_children syncs unsync pages without first write-protecting their " +
      "gfn, so the guest keeps writing a page table KVM believes is synced",
    reference: "kvm-shadow-mmu.md §1.8 mmu_sync_children",
  },
];

/** Throws on an unknown bug name (a case naming one is invalid input). */
export function checkBugNames(names: readonly string[]): void {
  const known = new Set(INJECTED_BUGS.map((b) => b.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new RangeError(
      `unknown injected bug(s) ${unknown.join(", ")}; known: ${[...known].join(", ")}`,
    );
  }
}
