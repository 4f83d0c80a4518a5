/**
 * The exhaustive sweep's enumeration: every legal combination of the permission space that
 * kvm-unit-tests x86/access.c covers, in a fixed order, each with a stable short name.
 *
 * Dimensions (per paging mode; the guest is the fixed layout of `sweep_layout.ts`):
 *
 * - the PDE: P, R/W, U/S, A, D, XD, PS; the PTE: P, R/W, U/S, A, D, XD. The levels above are
 *   fixed (present, writable, user, accessed; a PAE PDPTE present only), as in access.c;
 * - one extra bit at a time in the PDE or the PTE (a reserved one, a valid address bit, an
 *   ignored one, PAT), from a short list per entry kind;
 * - EFER.NXE (with NXE=0 a set XD bit is a reserved bit);
 * - the access sequence: read, write or fetch at CPL0 or CPL3, once, or followed by a second
 *   access of any kind and CPL (the second sees what the first cached: SPTEs, the hardware
 *   TLB, the A/D bits set). The same access twice is access.c's AC_ACCESS_TWICE; a different
 *   second access is what its directed checks do (`check_smep_andnot_wp`, the dirty bit after
 *   a read, the kernel SPTE made by a CR0.WP=0 write);
 * - CR0.WP, CR4.SMEP, CR4.SMAP with RFLAGS.AC (off, on with AC=0, on with AC=1);
 * - CR4.PKE (IA-32e): off with PKRU denying every key (keys must be ignored), or on with the
 *   leaf's key's AD/WD in four combinations (every other key gets the opposite, and a non-leaf
 *   PDE carries another key, so a key read from the wrong place shows).
 *
 * Pruning rules (every combination left out, and why):
 *
 * - **E1 (access.c `ac_test_legal`)**: at most one extra bit over the PDE and the PTE together;
 *   an XD bit set while EFER.NXE=0 is reserved and takes that one slot.
 * - **E2 (access.c, "the PTE only when the walk reaches it")**: the PTE is enumerated only when
 *   the PDE is present, not a 2-MiB leaf, has no reserved bit and points at RAM (a PDE with
 *   address bit 45 points at MMIO, which reads as zero). Otherwise the name says `pte=-` and a
 *   fixed unused PTE (present, writable, user, A=0) sits in the page table, so a stray use shows.
 * - **E3 (spec §2.2: a not-present entry ignores bits 63:1)**: a not-present PDE or PTE is two
 *   stand-ins, all zero (`0`) and every bit but P set (`~P`), not every flag and extra bit.
 * - **E4 (spec §1.3: D is ignored in a non-leaf entry)**: D is enumerated in PTEs and 2-MiB PDEs,
 *   and clear in a PDE that points at a page table.
 * - **E5 (spec §4.2: a reserved bit faults at its level before any right is checked, with an
 *   error code that depends on the access only)**: an entry with a reserved bit (an extra one,
 *   or XD with NXE=0) has two flag sets, none of the optional flags and all of them, rather than
 *   all 32 (16 for a non-leaf PDE).
 * - **E6 (access.c tries bits 51, 36 and 13)**: the extra bits are, for IA-32e PTEs and
 *   non-leaf PDEs, 45 (the highest address bit, M-1; outside the memslot: MMIO), 46 and 51 (the
 *   lowest and highest reserved address bits, M = 46) and 52 (ignored); 2-MiB PDEs add 12 (PAT)
 *   and 13 and 20 (the ends of the reserved 20:13). PAE: 11 (ignored), 45, and the reserved 46,
 *   52 and 62 (62:M are reserved there); 2-MiB PDEs add 12, 13 and 20.
 * - **C1 (spec §3.3, §4.1: what each control can change)**: CR0.WP is enumerated when the
 *   sequence has a supervisor write (WP changes only those), CR4.SMEP when it has a fetch (SMEP
 *   changes supervisor fetches and the I/D bit of every fetch fault), SMAP/AC when it has a
 *   supervisor read or write. Otherwise the control is held at its restrictive value (WP=1,
 *   SMEP=1, SMAP=1 with AC=0), so a control that wrongly restricts an access it must not still
 *   shows; and each access still runs under every value of every control, paired with an access
 *   that control is enumerated for.
 * - **K1 (spec §3.3: keys apply only to data accesses to user-mode addresses)**: PKE=1 is
 *   enumerated only for sequences with a data access and for entries where the walk ends at a
 *   present user page (U/S=1 at every level) with no extra bit. The SUT cannot run PKE=1 at all
 *   (KVM hides PKU from a guest it shadows: `unsupported`), so these are counted, not compared.
 *
 * Not in the space (fixed): 1-GiB pages, CR4.PGE and global pages, PCIDs, implicit supervisor
 * accesses, PKS, and changes of the upper-level entries.
 *
 * @module
 */
import {
  accessSequences,
  controlStates,
  hasDataAccess,
  PKE_STATES,
  type PkeState,
  type SmapState,
  type SweepAccess,
  type SweepControls,
} from "./sweep_controls.ts";
import { type EntryChoice, type EntryPair, entryPairs } from "./sweep_entries.ts";
import { type SweepLayout, sweepLayout, type SweepMode } from "./sweep_layout.ts";

/** One combination of the sweep: everything a case needs, and its name. */
export interface SweepCombination {
  readonly mode: SweepMode;
  /** Position in the enumeration of its mode, from 0. */
  readonly index: number;
  readonly nxe: boolean;
  readonly pde: EntryChoice;
  /** The PTE, or null when the walk does not reach one (rule E2). */
  readonly pte: EntryChoice | null;
  /** One access, or two in a row. */
  readonly accesses: readonly SweepAccess[];
  readonly wp: boolean;
  readonly smep: boolean;
  readonly smap: SmapState;
  /** CR4.PKE=1 with the leaf key's AD/WD, or null for PKE=0. */
  readonly pke: PkeState | null;
  /** The stable name, e.g. `ia32e4 pde=P|W|U|A pte=P|A|D|XD rsvd=pte:51 access=write cpl=3 …`. */
  readonly name: string;
}

const bit = (b: boolean) => (b ? "1" : "0");

function entryName(level: string, e: EntryChoice | null): string {
  return `${level}=${e === null ? "-" : e.flags}`;
}

/** The name of a combination (see {@link SweepCombination.name}). */
function nameOf(
  mode: SweepMode,
  nxe: boolean,
  pair: EntryPair,
  accesses: readonly SweepAccess[],
  c: { wp: boolean; smep: boolean; smap: SmapState },
  pke: PkeState | null,
): string {
  const parts = [mode, entryName("pde", pair.pde), entryName("pte", pair.pte)];
  for (const [level, e] of [["pde", pair.pde], ["pte", pair.pte]] as const) {
    if (e?.extra) parts.push(`${e.extra.kind}=${level}:${e.extra.bit}`);
  }
  const [first, second] = accesses;
  parts.push(`access=${first!.kind} cpl=${first!.cpl}`);
  if (second) parts.push(`then=${second.kind} cpl=${second.cpl}`);
  parts.push(`wp=${bit(c.wp)} nxe=${bit(nxe)} smep=${bit(c.smep)}`);
  parts.push(`smap=${c.smap === "off" ? "0" : c.smap}`);
  parts.push(`pke=${pke === null ? "0" : `ad${bit(pke.ad)}wd${bit(pke.wd)}`}`);
  return parts.join(" ");
}

/** One block of the enumeration: an entry pair under one NXE/PKE setting and one sequence. */
interface Block {
  readonly nxe: boolean;
  readonly pke: PkeState | null;
  readonly pair: EntryPair;
  readonly accesses: readonly SweepAccess[];
  readonly controls: readonly SweepControls[];
}

/** The blocks of `mode`, in enumeration order (rule K1 applied). */
function* blocks(mode: SweepMode): Generator<Block, void, void> {
  const layout: SweepLayout = sweepLayout(mode);
  const sequences = accessSequences().map((accesses) => ({
    accesses,
    controls: controlStates(accesses),
    data: hasDataAccess(accesses),
  }));
  const pairs = [true, false].map((nxe) => ({ nxe, pairs: entryPairs(layout, nxe) }));
  const pkes: (PkeState | null)[] = [null, ...(layout.keys ? PKE_STATES : [])];
  for (const pke of pkes) {
    for (const { nxe, pairs: list } of pairs) {
      for (const pair of list) {
        if (pke !== null && !pair.userLeaf) continue; // rule K1
        for (const s of sequences) {
          if (pke !== null && !s.data) continue; // rule K1
          yield { nxe, pke, pair, accesses: s.accesses, controls: s.controls };
        }
      }
    }
  }
}

/**
 * Every combination of `mode`, in a fixed order (PKE=0 before PKE=1, EFER.NXE=1 before 0, then
 * the entries, the access sequence and the controls). The same mode always yields the same
 * combinations with the same names and indices.
 *
 * @example Usage
 * ```ts
 * import { sweepCombinations } from "./sweep_combinations.ts";
 * import { equal } from "node:assert/strict";
 * const first = sweepCombinations("ia32e4").next().value!;
 * equal(first.name, "ia32e4 pde=0 pte=- access=read cpl=0 wp=1 nxe=1 smep=1 smap=0 pke=0");
 * ```
 */
export function* sweepCombinations(mode: SweepMode): Generator<SweepCombination, void, void> {
  let index = 0;
  for (const { nxe, pke, pair, accesses, controls } of blocks(mode)) {
    for (const c of controls) {
      yield {
        mode,
        index: index++,
        nxe,
        pde: pair.pde,
        pte: pair.pte,
        accesses,
        wp: c.wp,
        smep: c.smep,
        smap: c.smap,
        pke,
        name: nameOf(mode, nxe, pair, accesses, c, pke),
      };
    }
  }
}

const counts = new Map<SweepMode, number>();

/**
 * The number of combinations of `mode`: what {@link sweepCombinations} yields, counted
 * without building them.
 *
 * @example Usage
 * ```ts
 * import { countSweepCombinations } from "./sweep_combinations.ts";
 * import { equal } from "node:assert/strict";
 * equal(countSweepCombinations("pae"), 528_384);
 * ```
 */
export function countSweepCombinations(mode: SweepMode): number {
  let n = counts.get(mode);
  if (n === undefined) {
    n = 0;
    for (const b of blocks(mode)) n += b.controls.length;
    counts.set(mode, n);
  }
  return n;
}
