/**
 * The bug zoo: named switches, off by default, each re-creating one KVM bug at the place it
 * lived. A case's `sut.inject` names the switches to turn on; the code tests a switch with
 * `kvm.bug(name)` at the line the bug was in (the name is type-checked against this registry).
 *
 * Most entries are historical bugs from the catalogue of `kvm-shadow-mmu.md` §2 (the item is in
 * `origin`, the fixing commit in `commit`). The others ("own") are bugs of the same classes that
 * history suggests: an off-by-one in the prefetch window, a missing recheck or flush, a stale role
 * bit, a forgotten generation check. Each says what KVM gets wrong (`mechanism`) and what the
 * guest sees (`symptom`). {@link NOT_EXPRESSIBLE} lists the catalogue items the model cannot
 * re-create, and why.
 *
 * @module
 */

/** A registered bug. */
export interface InjectedBug {
  readonly name: string;
  /** The catalogue item (`§2 D.22`) or `own (class)`. */
  readonly origin: string;
  /** The fixing commit (upstream hash), or null for an own bug. */
  readonly commit: string | null;
  /** What KVM gets wrong, and where. */
  readonly description: string;
  /** What the guest sees. */
  readonly symptom: string;
}

/** Every bug the SUT can re-create. */
export const INJECTED_BUGS = [
  // --- A. Shadow-page identity, roles and permissions
  {
    name: "direct_sp_role_ignores_access",
    origin: "§2 A.1",
    commit: "d28c6cfbbc5e",
    description: "FNAME(fetch) looks up the direct shadow page of a guest large page with a role " +
      "whose access is always ACC_ALL (the key did not include access), so two large gptes that " +
      "map the same frames with different rights share one direct sp, and __direct_pte_prefetch " +
      "maps its neighbours with full rights",
    symptom: "a write or user access through a read-only or supervisor large page succeeds",
  },
  {
    name: "direct_sp_access_ignores_leaf_w",
    origin: "§2 A.2",
    commit: "5fd5387c89ec",
    description: "FNAME(fetch) takes the access of the direct sp under a guest large page from " +
      "the upper levels only (gw->pt_access), not from the large gpte itself",
    symptom: "prefetched 4K pieces of a read-only large page are writable",
  },
  {
    name: "cr0_wp_not_in_role",
    origin: "own (A: stale role bit after a CR0 write; cf. §2 A.10)",
    commit: null,
    description: "kvm_calc_shadow_mmu_root_role drops cr0_wp (always 1), so shadow pages built " +
      "under CR0.WP=0, with kernel SPTEs that let the supervisor write read-only user pages, " +
      "are reused after CR0.WP=1",
    symptom: "a supervisor write to a read-only page succeeds with CR0.WP=1",
  },
  {
    name: "smep_andnot_wp_not_in_role",
    origin: "own (A: stale role bit after a CR4 write)",
    commit: null,
    description: "kvm_calc_cpu_role leaves smep_andnot_wp 0, so shadow pages whose CR0.WP=0 " +
      "kernel SPTEs kept X (made with SMEP off) are reused after CR4.SMEP=1",
    symptom: "the supervisor executes a user page with SMEP on",
  },
  {
    name: "smap_toggle_reloads_pdptrs",
    origin: "§2 A.11",
    commit: "427890aff855",
    description: "kvm_set_cr4 counts CR4.SMAP among the bits whose change reloads the PAE " +
      "PDPTEs from memory",
    symptom: "a PAE guest sees its edited in-memory PDPT before any CR3 load",
  },
  // --- B. Guest walker, A/D bits, error codes
  {
    name: "walker_readonly_slot_faults",
    origin: "§2 B.13",
    commit: "ba6a35415455",
    description: "FNAME(walk_addr_generic) maps the table's gfn for writing (for the A/D " +
      "update), which fails in a read-only memslot, so a walk through a table in ROM faults",
    symptom: "#PF (P=0) on an address mapped by page tables in a read-only memslot",
  },
  {
    name: "walker_error_drops_user_bit",
    origin: "own (B: error codes)",
    commit: null,
    description: "the error path of FNAME(walk_addr_generic) ORs only the write bit of the " +
      "access into the error code, not PFERR_USER_MASK",
    symptom: "a #PF on a CPL3 access the emulator or the fault path walked has U/S=0",
  },
  {
    name: "rsvd_check_2m_as_1g",
    origin: "own (B: reserved bits at the wrong level)",
    commit: null,
    description: "FNAME(walk_addr_generic) checks a 64-bit PDE with the PDPTE's reserved-bit " +
      "masks (rsvd_bits_mask[.][2] instead of [.][1]), so a 2 MiB page whose frame is not " +
      "1 GiB aligned has 'reserved' bits 29:21",
    symptom: "#PF with RSVD=1 on a valid 2 MiB page",
  },
  {
    name: "pse36_gfn_delta_ignored",
    origin: "own (B: wrong gfn, cf. §2 B.16)",
    commit: null,
    description: "FNAME(walk_addr_generic) forgets pse36_gfn_delta for a 4 MiB page, dropping " +
      "physical-address bits 35:32 held in PDE bits 16:13",
    symptom: "a 4 MiB page above 4 GiB translates to the frame 4 GiB lower",
  },
  // --- C. Prefetch
  {
    name: "prefetch_ignores_accessed",
    origin: "§2 C (prefetch_invalid_gpte)",
    commit: null,
    description: "FNAME(prefetch_invalid_gpte) does not check the gpte's A bit, so prefetch " +
      "maps pages the guest never accessed and their A bit is never set by a walk",
    symptom: "an access through a gpte with A=0 leaves A=0",
  },
  {
    name: "prefetch_ignores_reserved",
    origin: "own (C)",
    commit: null,
    description: "FNAME(prefetch_invalid_gpte) does not check reserved bits, so a gpte with a " +
      "reserved bit set is prefetched into a present SPTE",
    symptom: "no #PF (RSVD=1) on an access through a gpte with a reserved bit",
  },
  {
    name: "prefetch_window_off_by_one",
    origin: "own (C: an off-by-one in the prefetch window)",
    commit: null,
    description: "FNAME(pte_prefetch) pairs SPTE first+i with gpte first+i+1 of the window " +
      "FNAME(gpte_changed) read",
    symptom: "a neighbouring page translates to its neighbour's frame with its neighbour's rights",
  },
  {
    name: "prefetch_ignores_upper_access",
    origin: "own (C)",
    commit: null,
    description: "FNAME(prefetch_gpte) takes the access from the gpte alone, without ANDing " +
      "sp->role.access (the rights of the upper levels)",
    symptom: "a prefetched page is writable or user-accessible where an upper level forbids it",
  },
  // --- D. Unsync / sync / INVLPG / flush
  {
    name: "invlpg_no_sync",
    origin: "§2 D (INVLPG, §1.8)",
    commit: null,
    description: "INVLPG flushes the hardware TLB but does not sync the unsync leaf SPTE " +
      "(kvm_mmu_invalidate_addr skips sync_spte), so a stale translation survives INVLPG",
    symptom: "a stale translation after INVLPG",
  },
  {
    name: "cr3_flush_skips_sync",
    origin: "§2 D.21/D.22 (flush without sync)",
    commit: null,
    description: "MOV CR3 without NOFLUSH requests KVM_REQ_TLB_FLUSH_CURRENT but not " +
      "KVM_REQ_MMU_SYNC, so unsync pages keep stale SPTEs after a flushing CR3 write",
    symptom: "a stale translation after a flushing MOV CR3",
  },
  {
    name: "unsync_no_write_protect_on_sync",
    origin: "§2 D (mmu_sync_children, §1.8)",
    commit: null,
    description: "mmu_sync_children syncs unsync pages without first write-protecting their " +
      "gfn, so the guest keeps writing a page table KVM believes is synced",
    symptom: "later page-table writes are not tracked: stale translations after a flush",
  },
  {
    name: "invalidate_pcid_keeps_prev_roots",
    origin: "§2 D.22",
    commit: "21823fbda552",
    description: "kvm_invalidate_pcid does not free the cached previous roots that use the " +
      "PCID a flushing MOV CR3 invalidates",
    symptom: "a stale translation after MOV CR3 with NOFLUSH back to a root whose PCID was flushed",
  },
  {
    name: "pdptr_change_keeps_root",
    origin: "§2 D.24",
    commit: "6b123c3a89a9",
    description: "load_pdptrs caches new PDPTEs but does not free the current root, whose " +
      "pae_root still points at the shadows of the old page directories",
    symptom: "a PAE guest translates through its old PDPTEs after MOV CR3",
  },
  {
    name: "pge_toggle_no_flush",
    origin: "own (D: cf. §2 D.24, a91a7c709600)",
    commit: null,
    description: "kvm_set_cr4 does not request KVM_REQ_TLB_FLUSH_GUEST when CR4.PGE changes, " +
      "so neither the hardware TLB nor the unsync pages are flushed",
    symptom: "a stale translation after toggling CR4.PGE",
  },
  {
    name: "child_quadrant_ignored",
    origin: "own (A: a wrong quadrant)",
    commit: null,
    description: "kvm_mmu_get_child_sp computes the child role of a 4-byte-gpte table without " +
      "the quadrant (parent_index & 1), so the shadow pages of the two 512-entry halves of a " +
      "1024-entry guest page table are one page",
    symptom: "in 32-bit paging, an address in the upper half of a page table's range " +
      "translates through an entry of the lower half (or the other way round)",
  },
  {
    name: "rmap_write_protect_no_flush",
    origin: "§2 D.20/D.27",
    commit: "f81602958c11",
    description: "account_shadowed write-protects the SPTEs of a newly shadowed gfn but drops " +
      "the flush kvm_mmu_slot_gfn_write_protect asks for, so writable TLB entries survive",
    symptom: "writes to a new page table are not tracked: a stale translation after INVLPG",
  },
  {
    name: "track_write_skips_zap",
    origin: "own (D: a missing update of the written SPTE)",
    commit: null,
    description: "kvm_mmu_track_write (an emulated write to a shadowed page table) neither " +
      "zaps nor updates the SPTEs of the written gptes of synced pages",
    symptom: "a stale translation even after INVLPG or MOV CR3 (the page is synced)",
  },
  {
    name: "sync_spte_keeps_access",
    origin: "own (D: a missing recheck in sync)",
    commit: null,
    description: "FNAME(sync_spte) keeps the SPTE when the gpte still maps the same gfn, " +
      "without comparing the access",
    symptom: "a page made read-only (or supervisor) stays writable (or user) after INVLPG",
  },
  {
    name: "unsync_walk_one_level",
    origin: "own (D)",
    commit: null,
    description: "mmu_unsync_walk collects the unsync children of the root's direct children " +
      "only and does not descend further, so a sync of a 4- or 5-level root misses them",
    symptom: "a stale translation after MOV CR3 in 4- and 5-level paging",
  },
  // --- E. Huge pages, self-maps, dirty logging
  {
    name: "hugepage_ignores_disallow_lpage",
    origin: "§2 E.29 (the disallow_lpage invariant, §3 I-6)",
    commit: "7751babd3c6d",
    description: "kvm_mmu_max_mapping_level ignores disallow_lpage, so a writable huge SPTE " +
      "maps a range that holds a shadowed page table",
    symptom: "page-table writes through the large page are not tracked: stale translations",
  },
  {
    name: "dirty_log_enable_no_write_protect",
    origin: "own (E)",
    commit: null,
    description: "kvm_mmu_slot_apply_flags turns dirty logging on without write-protecting " +
      "(kvm_mmu_slot_remove_write_access) the slot's SPTEs",
    symptom: "writes through SPTEs made before logging started are missing from the dirty log",
  },
  {
    name: "dirty_log_clear_no_flush",
    origin: "own (E: cf. §2 D.27)",
    commit: null,
    description: "kvm_get_dirty_log_protect write-protects the harvested pages but does not " +
      "flush the TLBs",
    symptom: "writes through a cached writable translation are missing from the next harvest",
  },
  {
    name: "memslot_delete_no_zap",
    origin: "own (E)",
    commit: null,
    description: "deleting a memslot does not zap the SPTEs that map it " +
      "(kvm_arch_flush_shadow_memslot skipped)",
    symptom: "the guest still reads and writes RAM where no memslot is (MMIO)",
  },
  // --- F. MMIO SPTEs and generations
  {
    name: "mmio_spte_ignores_generation",
    origin: "§2 F.33",
    commit: "ddfd1730fd82",
    description: "check_mmio_spte does not compare the MMIO SPTE's generation with the " +
      "memslots', so an MMIO SPTE made before a memslot appeared stays valid",
    symptom: "an access to new RAM is still emulated as MMIO",
  },
  {
    name: "mmio_cache_ignores_generation",
    origin: "§2 F.33 (56f17dd3fbc4)",
    commit: "56f17dd3fbc4",
    description: "vcpu_match_mmio_gva does not compare the cached MMIO info's generation",
    symptom: "the emulator treats new RAM as MMIO through the vCPU's MMIO info cache",
  },
  {
    name: "mmio_cache_ignores_access",
    origin: "own (F)",
    commit: null,
    description: "vcpu_mmio_gva_to_gpa uses the MMIO info cache without permission_fault on " +
      "the cached access",
    symptom: "a write or user access to an MMIO page the gpte forbids is emulated, no #PF",
  },
  // --- G. State changed without KVM seeing the guest write
  {
    name: "mmio_spte_over_present_spte",
    origin: "§2 G.34",
    commit: "aad885e77496",
    description: "mmu_set_spte writes an MMIO SPTE over a present SPTE without dropping it (no " +
      "rmap removal, no flush)",
    symptom: "a stale rmap entry and a stale TLB entry for the old RAM page",
  },
  // --- Written after the catalogue's order: the CR0.WP=0 fix-up
  {
    name: "wp0_spte_keeps_exec_under_smep",
    origin: "§1.4 step 5 (the CR0.WP=0 fix-up)",
    commit: null,
    description: "The CR0.WP=0 supervisor-write fix-up in FNAME(page_fault) does not remove X " +
      "when CR4.SMEP=1, so the kernel-made SPTE lets the supervisor execute a user page",
    symptom: "the supervisor executes a user page with SMEP on",
  },
  // --- Concurrency (need another thread between two atomic steps: a schedule)

  {
    name: "split_spte_set_low_first",
    origin: "own (E: split-SPTE write order on a 32-bit host)",
    commit: null,
    description: "__set_spte on a 32-bit host writes the low half (with P) before the high " +
      "half, so for a moment the SPTE is present with the high bits (NX, pfn 51:32) of the " +
      "non-present value",
    symptom: "a CPU walking the tables in that moment uses an executable translation of an NX " +
      "page",
  },

  {
    name: "flush_after_mmu_unlock",
    origin: "own (D: a flush issued after dropping mmu_lock)",
    commit: null,
    description: "the remote flush owed by write-protecting a gfn for shadowing " +
      "(rmap_write_protect in kvm_mmu_get_shadow_page) is issued after mmu_lock is dropped, so " +
      "another vCPU that takes the lock in between sees the gfn write-protected while a TLB " +
      "still has it writable",
    symptom: "a store through the stale writable entry changes a shadowed gpte unnoticed: " +
      "a stale translation after INVLPG",
  },
  {
    name: "fast_pf_ignores_mmu_writable",
    origin: "own (E: fast_page_fault and MMU-writable)",
    commit: null,
    description: "fast_page_fault sets W in any present read-only leaf SPTE, not only in one " +
      "that is MMU-writable (write-protected for dirty logging alone)",
    symptom: "a store to a read-only memslot or to a shadowed gpte page succeeds without exit",
  },
  {
    name: "fetch_skips_gpte_changed",
    origin: "own (C: a missing FNAME(gpte_changed) recheck)",
    commit: null,
    description: "FNAME(fetch) does not re-read the gptes of the walk under mmu_lock, so a gpte " +
      "changed by another vCPU between the walk and the lock is shadowed from its old value",
    symptom: "an SPTE from a gpte the guest already replaced: a stale translation after " +
      "INVLPG",
  },
] as const satisfies readonly InjectedBug[];

/** The name of a bug of the zoo. */
export type BugName = (typeof INJECTED_BUGS)[number]["name"];

/** Catalogue items of `kvm-shadow-mmu.md` §2 the model cannot re-create, and why. */
export const NOT_EXPRESSIBLE: readonly { readonly origin: string; readonly why: string }[] = [
  {
    origin: "§2 A.8 5f0b819995e1",
    why:
      "the host EFER is fixed (NX=1); the bug needed hardware running the guest with EFER.NX=0 and KVM's SPTE sanity mask",
  },
  {
    origin: "§2 A.7 0be0226f07d1",
    why: "its symptom, a missed SMAP #PF through a kernel SPTE made for a CR0.WP=0 write, is " +
      "what KVM does today too (known divergence kvm-smap-lost-by-cr0-wp0-kernel-spte), so no " +
      "finding can be attributed to the bug",
  },
  {
    origin: "§2 A.10 cf9f4c0eb169",
    why:
      "TDP-only (CR0.WP guest-owned with EPT); the shadow model resets on CR0.WP, so the same trigger is cr0_wp_not_in_role here",
  },
  {
    origin: "§2 A.12 d6174299365d, 4346db6e6e7a",
    why: "host-initiated SREGS/EFER writes are not a host event of the model",
  },
  {
    origin: "§2 B.14 8cbc70696f14",
    why:
      "A bits on upper levels of a faulting walk are architecturally allowed (MAY_A), so no detector can see it",
  },
  { origin: "§2 B.16 (SME C-bit)", why: "the model has no host memory encryption mask" },
  {
    origin: "§2 C.18",
    why: "prefetch unsyncing pages changes which pages are unsync, not what the guest sees",
  },
  {
    origin: "§2 D.21 b53e84eed08b",
    why: "no paravirtual TLB-flush hypercall in the program vocabulary",
  },
  { origin: "§2 D.23 07ffaf343e34", why: "nested virtualization is not modelled" },
  {
    origin: "§2 D.25 226d9b8f1688",
    why: "a store-load reordering race between vCPUs: the model's memory is sequentially " +
      "consistent, so no schedule reorders a store after a later load",
  },
  { origin: "§2 D.28 e5f3f0279601", why: "async page faults are not modelled" },
  {
    origin: "§2 E.30 404381c5839d",
    why: "host COW read-only large SPTEs are not modelled (host pages are always writable)",
  },
  {
    origin: "§2 E.32 c7ba5b48cc8d (mmu_spte_update without the exchange)",
    why: "a plain write loses only what the exchange would return: a W that " +
      "fast_page_fault set, or a D the CPU set. In today's KVM neither feeds anything " +
      "guest-visible in a shadow MMU: the remote flush is decided by MMU-writable (changed only " +
      "under mmu_lock), not by W; dirty logging flushes by the bitmap bits it reaped, and " +
      "fast_page_fault marks the page dirty itself; D feeds host page dirtiness (and D-bit " +
      "dirty logging, PML, TDP only), which the model does not have. The 2012 bug lost a flush " +
      "because the flush was then decided by the old W: injecting that is two changes to " +
      "today's code, not one",
  },
  {
    origin: "own: a lockless reader without the clear_spte_count retry (32-bit host)",
    why: "a torn value reaches fast_page_fault (its cmpxchg then fails against the whole SPTE, " +
      "or it returns spurious and the access faults again) and the MMIO fault's lockless walk " +
      "(get_mmio_spte). There the halves of two SPTEs never make an MMIO SPTE the guest could " +
      "not have met: a present low half has the MMU-present bit an MMIO SPTE must not have, and " +
      "a gfn below 2^20 lies in the low half, so a torn MMIO SPTE has the gfn of the SPTE its " +
      "low half came from and at worst a mixed generation, which check_mmio_spte refuses. " +
      "Nothing the model keeps or the guest sees depends on the retry",
  },
  {
    origin: "§2 G.35 0cb2af2ea66a, G.36 81ccda30b4e8",
    why:
      "need a write to a shadowed upper-level gpte that KVM does not track (host userspace); the program has no host write op yet",
  },
];

/** Throws on an unknown bug name (a case naming one is invalid input). */
export function checkBugNames(names: readonly string[]): void {
  const known = new Set<string>(INJECTED_BUGS.map((b) => b.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new RangeError(
      `unknown injected bug(s) ${unknown.join(", ")}; known: ${[...known].join(", ")}`,
    );
  }
}
