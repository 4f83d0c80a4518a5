/**
 * Divergences already triaged as true differences between KVM and the architecture: the SUT is
 * faithful to KVM there, so a fuzz run reports them as "known" (counted, not written as
 * findings, not failing the run). Each entry names the signatures it covers, why KVM differs,
 * where that is documented, and a corpus case that shows it (tested to diverge).
 *
 * Add an entry only with a case in `corpus/<mode>/` tagged `kvm-divergence` and a reason a KVM developer would
 * accept; anything else stays a finding.
 *
 * @module
 */

/** One triaged divergence. */
export interface KnownDivergence {
  readonly id: string;
  /** Matches the signatures (`explain.ts`) of this divergence. */
  readonly pattern: RegExp;
  readonly explanation: string;
  readonly reference: string;
  /** A corpus case that shows it. */
  readonly example: string;
}

/** The triaged divergences. */
export const KNOWN_DIVERGENCES: readonly KnownDivergence[] = [
  {
    id: "kvm-role-lacks-efer-nx-cr4-pse",
    pattern:
      /^invariant:[^:]+:(writeEfer|writeCr4|writeCr0):I-[89]m(,I-[89]m)?\||^(invariant:[^:]+:[^:]+:I-[89]m(,I-[89]m)?|observation:[^|]+)\|.*\|modes=mixed$|^observation:[^:]+:[^:]+:ok-vs-pf:(reserved-xd|[a-z-]+-ps-ignored)@/,
    explanation: "Guest EFER.NX and CR4.PSE are not part of kvm_mmu_page_role, so after the " +
      "guest changes them KVM reuses shadow pages built under the old meaning of the gptes " +
      "(XD bits, PS in 32-bit PDEs); the audit flags those SPTEs (I-8m/I-9m) at the control write " +
      "(or, with vCPUs in different modes, at any step: modes=mixed; in a concurrent case, " +
      "whose audit waits until no op is in flight, also at any step after such a write), " +
      "and a vCPU with EFER.NXE=0 (CR4.PSE=0) uses SPTEs another vCPU built with NXE=1 (PSE=1): " +
      "no reserved-bit #PF for XD, a 4 MiB mapping for a PDE that points at a page table",
    reference: "kvm-shadow-mmu.md §4 items 1 and 2",
    example: "corpus/ia32e4/nxe-clear-xd-becomes-reserved.json",
  },
  {
    id: "kvm-emulated-gpte-write-before-zap",
    pattern: /^(observation|memory):[^|]+\|.*\|racing=emulated-store$/,
    explanation: "An emulated store to a shadowed gpte (emulator_write_phys) writes guest " +
      "memory first and zaps the SPTEs built from the old gpte afterwards, in " +
      "kvm_mmu_track_write under mmu_lock. In between, another vCPU still walks the stale SPTE, " +
      "even after flushing its own TLB, though a load on it would already see the new gpte: " +
      "no processor's walk can use a page-table entry older than a value it could read (and, " +
      "using the stale SPTE, it sets no A/D in the new gpte: a memory divergence)",
    reference: "x86.c emulator_write_phys → kvm_page_track_write; mmu.c kvm_mmu_track_write",
    example: "corpus/ia32e5/two-vcpus-emulated-pde-write-before-zap.json",
  },
  {
    id: "kvm-legacy32-fetch-fault-sets-id",
    pattern: /^observation:legacy32(-pse)?:fetch:ec:\+I\|/,
    explanation: "KVM's walker sets PFERR_FETCH for a fetch fault when EFER.NX or CR4.SMEP is " +
      "set (walk_addr_generic: is_efer_nx || is_cr4_smep); with 32-bit paging the SDM sets I/D " +
      "only when CR4.SMEP=1 (NX needs PAE paging), so a 32-bit guest with EFER.NXE=1 sees I/D=1",
    reference: "SDM Vol. 3A §4.7 (I/D flag); x86-paging-spec.md §7 row 33; paging_tmpl.h",
    example: "corpus/legacy32/nxe-fetch-fault-id-bit.json",
  },
  {
    id: "kvm-mmio-cache-skips-dirty-with-wp0",
    pattern:
      /^(memory:[^:]+:store:-(A|D|A-D)@(PT|PD|PDPT|PML4|PML5)|observation:[^:]+:store:ok-vs-pf:not-present@[A-Z0-9]+)\|(.*@emulate\|leaf=mmio(-unsync)?|[^|]*mmio_cache_hits[^|]*@emulate\|leaf=[a-z-]+)(\|after=[a-z-]+)?$/,
    explanation: "A store to MMIO through a cached MMIO SPTE is emulated with the MMIO cache " +
      "(vcpu_mmio_gva_to_gpa): when its permission check passes, no guest walk runs, so the " +
      "leaf gpte's D bit (and its A bit, if the guest cleared it since) is never set, and a " +
      "gpte the guest made not present since (no INVLPG) does not fault, where the processor " +
      "must walk to set D. KVM relies on the cached access lacking W for a clean gpte, but with " +
      "CR0.WP=0 a supervisor write passes that check. (A concurrent case compares memory only " +
      "when no op is in flight: by then the SPTE may be anything, so there the store's own " +
      "mmio_cache_hits@emulate is what names the path.)",
    reference: "x86.c vcpu_mmio_gva_to_gpa; mmu.c kvm_handle_noslot_fault",
    example: "corpus/ia32e4/mmio-store-wp0-no-dirty.json",
  },
  {
    id: "kvm-mmio-cache-write-dirties-new-pte",
    pattern: /^memory:[^:]+:store:\+A?\+D@[A-Z0-9]+\|mech=[^@]*mmio_cache_hits[^@]*@emulate\|/,
    explanation: "A write fault that needs emulation runs FNAME(page_fault)'s walk, which sets " +
      "A/D in the current gpte, but the emulator then translates the address with the MMIO " +
      "info cache (vcpu_mmio_gva_to_gpa) filled by an earlier MMIO access to that page. When " +
      "the guest changed the PTE without INVLPG, the data goes to the old MMIO gpa while the new " +
      "PTE is marked dirty: no processor sets D in a PTE whose translation the write did not use",
    reference: "x86.c vcpu_mmio_gva_to_gpa, emulator_read_write_onepage; paging_tmpl.h " +
      "FNAME(walk_addr_generic)",
    example: "corpus/ia32e4/mmio-cache-write-dirties-new-pte.json",
  },
  {
    id: "kvm-smap-lost-by-cr0-wp0-kernel-spte",
    pattern: /^observation:[^:]+:(load|store):ok-vs-pf:rights-smap@/,
    explanation: "With CR0.WP=0, FNAME(page_fault) turns a supervisor write to a read-only user " +
      "page into a kernel SPTE (U=0, W=1). With SMAP and RFLAGS.AC=1 that write is allowed, so " +
      "the SPTE is made; a later supervisor data access with AC=0 is not stopped by hardware SMAP " +
      "(the SPTE says kernel page), where the architecture requires a SMAP #PF",
    reference: "kvm-shadow-mmu.md §4 item 3",
    example: "corpus/ia32e4/smap-wp0-ac-write-then-read.json",
  },
  {
    id: "kvm-not-present-pf-keeps-unsync-spte",
    pattern:
      /^(observation:[^|]*:(ok-vs-pf:[^|]*|gpa(-stale)?)|memory:[^|]*:-[AD][^|]*)\|.*\|leaf=(mmio-)?(unsync|syncing)\|after=pf-not-present$/,
    explanation: "kvm_inject_emulated_page_fault invalidates the faulting address only for a " +
      "P=1 fault. When the guest made a PTE not-present without INVLPG and an access then " +
      "faulted on the stale SPTE of the unsync page (e.g. a write through a read-only one, or " +
      "one the MMIO info cache refused), the " +
      "#PF injected with P=0 leaves that SPTE, so a later access uses the old translation where " +
      "the architecture's #PF invalidated it (or, when the new PTE maps the same frame, does " +
      "not walk the gptes and leaves A or D clear). In a concurrent case the page may be " +
      "`syncing`: another vCPU's sync has not reached that SPTE yet",
    reference: "x86.c kvm_inject_emulated_page_fault; SDM Vol. 3A §4.10.4.1 (#PF invalidates)",
    example: "corpus/pae/not-present-pf-keeps-unsync-spte.json",
  },
  {
    id: "kvm-rsvd-pf-keeps-unsync-spte",
    pattern:
      /^(observation:[^|]*:(ok-vs-pf:[^|]*|gpa(-stale)?)|memory:[^|]*:-[AD][^|]*)\|.*\|leaf=(mmio-)?(unsync|syncing)\|after=pf-rsvd$/,
    explanation: "kvm_inject_emulated_page_fault does not invalidate the faulting address for a " +
      "fault with RSVD=1 (hardware caches no translation with reserved bits). With shadow paging " +
      "the stale SPTE of an unsync page is such a cached translation: when the guest wrote a " +
      "reserved bit into a PTE without INVLPG and a write through the stale read-only SPTE " +
      "faulted, KVM's walker injects #PF with RSVD=1 and keeps the SPTE, so a later read uses " +
      "the old translation where the architecture's #PF invalidated it",
    reference: "x86.c kvm_inject_emulated_page_fault; SDM Vol. 3A §4.10.4.1 (#PF invalidates)",
    example: "corpus/pae/rsvd-pf-keeps-unsync-spte.json",
  },
  {
    id: "kvm-mmio-spte-overwrite-skips-unsync",
    pattern: /^invariant:[^:]+:[^:]+:I-6[ab](,I-[89])*\|mech=([a-z_]+,)?mmio_spte_replaced[,@]/,
    explanation: "When a RAM mapping replaces an MMIO SPTE (its gfn got a memslot, or the " +
      "gpte of an unsync page now points at RAM), in a fault or in pte_prefetch, make_spte " +
      "sees the old SPTE's access bits, which include PT_WRITABLE_MASK for a writable gpte, as " +
      "a writable SPTE and skips mmu_try_to_unsync_pages. If the new gfn is shadowed as a page " +
      "table, the new SPTE is writable while that shadow page stays synced and write-protected " +
      "(the audit's I-6a, or I-6b for a level-1 page; with I-8/I-9 when the faulting store " +
      "itself already wrote the page table through it): guest writes to that page table bypass " +
      "write tracking (a candidate KVM bug)",
    reference: "spte.c make_spte (is_writable_pte(old_spte)); mmu.c mmu_set_spte; found by this " +
      "harness",
    example: "corpus/legacy32/mmio-spte-overwrite-skips-write-protect.json",
  },
  {
    id: "kvm-sync-refreshes-stale-mmio-spte",
    pattern: /^(observation:[^:]+:(load|fetch):value|memory:[^:]+:store:[^|]+)\|.*\|leaf=mmio-ram$/,
    explanation: "FNAME(sync_spte) -> sync_mmio_spte (from a sync of the unsync page, or from " +
      "the invalidation kvm_inject_emulated_page_fault does) re-marks an MMIO SPTE whose gfn is " +
      "unchanged with the current memslot generation, without checking that the gfn still has " +
      "no memslot. If a memslot was created at that gfn since, the stale MMIO SPTE becomes " +
      "current again and the RAM keeps being emulated as MMIO: loads read the device, stores go to " +
      "the device instead of RAM (and, through the MMIO info cache, may skip the walk that sets D) (a candidate KVM bug; a VMM that dispatches MMIO exits through " +
      "its own memory map would hide it, our model's VMM does not)",
    reference: "mmu.c sync_mmio_spte, mark_mmio_spte; found by this harness",
    example: "corpus/legacy32/sync-refreshes-stale-mmio-spte.json",
  },
];

/** The tag of corpus cases that show a known divergence (with `expect:divergence`). */
export const KVM_DIVERGENCE = "kvm-divergence";

/** The known divergence a signature belongs to, if any. */
export function knownDivergenceOf(signature: string): KnownDivergence | null {
  return KNOWN_DIVERGENCES.find((k) => k.pattern.test(signature)) ?? null;
}
