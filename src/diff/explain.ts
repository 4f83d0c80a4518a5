/**
 * Explaining a divergence: what both sides saw at the diverging step, side by side, and a short
 * stable signature that deduplicates findings (the same bug found by many generated cases
 * should give one signature, different bugs different ones).
 *
 * An explanation ({@link explainDivergence}) records the step, the SUT's result and the allowed
 * outcomes, the oracle's fresh walk (per level, from `outcomes[0]`, the fresh walk), the SUT's
 * shadow walk of the op's linear address under the vCPU's current root (each SPTE decoded, with
 * the shadow page holding it and that page's role), the hardware TLB entry, the SUT mechanisms
 * (counters) that moved in the steps that led there, the tail of the SUT's event log, and the
 * signature. The SUT side is its state *after* the diverging step (the run stops there).
 *
 * ## The signature
 *
 * `<kind>:<mode>:<op>:<what differs>|mech=<mechanisms>@<path>[|leaf=<state>]`, with no address
 * or value in it:
 *
 * - `kind`: `observation`, `memory`, `invariant` or `sut-failure`; `mode`: the guest paging mode
 *   of the op's vCPU (vCPU 0 for host ops) when the step ran, from the oracle's control state
 *   (`disabled`, `legacy32`, `pae`, `ia32e4`, `ia32e5`); `op`: the op kind (`load`, `movCr3`…).
 * - `what differs` (the architectural field):
 *   - observation, the SUT's result against the nearest allowed outcome of the same kind:
 *     `gpa` (another guest-physical address; `gpa-stale` when the SUT's address is one an
 *     earlier step committed for the same vCPU and linear page: a stale translation), `value`
 *     (same address, other data), `ec:+X-Y` (error-code bits the SUT has in excess / lacks
 *     against the nearest allowed #PF, bits `P W U RSVD I PK`), `cr2`; across kinds
 *     `ok-vs-pf:<reason>@<level>` (the SUT completed an access the fresh walk faults on, at an
 *     address that is not stale, even when a paging-structure cache would allow another one, with
 *     the walk's fault reason `not-present`/`reserved`/`rights-<rule>` and level, the rule one
 *     of `us`, `w`, `xd`, `smep`, `smap`; `reserved-xd` when the reserved bit is XD with
 *     EFER.NXE=0; a `-ps-ignored` suffix when a 32-bit walk with CR4.PSE=0 went through a PDE
 *     with PS set), `pf-vs-ok:<reason>`
 *     (the SUT faulted, reason read from its error code), otherwise `<sut>-vs-<allowed kinds>`
 *     (e.g. `gp-vs-ok`); dirty logs: `dirtylog-missing` or `dirtylog-slot`.
 *   - memory: per differing (4- or 8-byte) entry, the bits, `+` set only by the SUT and `-` set
 *     only by the oracle, and the level of the paging-structure entry when the word is one the
 *     oracle walked (in this step or, failing that, an earlier one): `-A@PT`, `+D@PD`; else
 *     `data`.
 *   - invariant: the audit's invariant tags, sorted (`I-8`, `I-6b,I-8`); with `I-8m`/`I-9m`,
 *     the suffix `|modes=mixed` when the paging vCPUs disagree on EFER.NX, CR4.PSE or the
 *     paging depth (one vCPU's SPTEs checked against another's meaning of the gptes). An
 *     observation gets the same suffix when the vCPUs disagree and the observer (EFER.NX=0)
 *     went through an SPTE with NX set, which only another vCPU's EFER.NX=1 could have built.
 *   - sut-failure: the reason (`livelock`, `stale_host_page`, `exception:<first line of the
 *     message, lower case, numbers replaced by n>`).
 * - `mechanisms`: at most two SUT mechanisms (counters), taken only from the *specific* ones of
 *   {@link SPECIFIC_MECHANISMS}, which also fixes their order of preference (lockless fast page
 *   fault, prefetch, INVLPG, MMIO and emulation, write-tracking zaps, sync/unsync, dirty
 *   logging, host events, shadow-page and root reuse, retries, zaps, MMIO exits). The generic
 *   counters (`pf_taken`, `pf_fixed`, `hw_walks`, `hw_tlb_hits`, `sp_created`, `root_allocs`,
 *   TLB flushes, `dirty_marks`, `pf_guest_injected`) move in nearly every step and are never
 *   named. First the most preferred mechanism that moved in the steps of the *window* before
 *   the diverging step, then the most preferred one that moved in the diverging step itself;
 *   `none` when neither exists. `invlpg` counts only for an INVLPG of the diverging op's
 *   linear page. The window:
 *   - an op with a linear address: the steps after the last earlier step in which the SUT
 *     translated the same linear page on the same vCPU by a walk or a VM exit (`hw_walks` or
 *     `pf_taken` moved), i.e. since the translation it used was last (re)built;
 *   - an invariant violation or a SUT failure: the diverging step only (the audit passed after
 *     the step before; a failure happens within its step);
 *   - any other op: the steps after the previous op of the same kind (e.g. since the last
 *     dirty-log harvest).
 *   Exception: an observation divergence where the SUT delivered a #PF that KVM's walker
 *   injected in that step is signed `mech=walk_addr_generic@exit` with no `leaf`: the walker
 *   computed the error code, and whatever moved before is incidental.
 * - `path`: how the SUT produced its result in the diverging step: `emulate` (the emulator ran),
 *   `exit` (a VM exit into the page-fault handler), `walk` (a hardware walk of the shadow tables,
 *   no exit), `tlb` (a hardware TLB hit), `none` (no guest access).
 * - `after=pf-not-present`, `after=pf-rsvd` (an `ok-vs-pf`, `gpa` or `gpa-stale` observation, or a
 *   memory divergence that lacks an A or D bit): the
 *   last invalidation of the page on that vCPU was a #PF with P=0 (with RSVD=1), which KVM's
 *   `kvm_inject_emulated_page_fault` does not turn into an invalidation of its shadow entries.
 * - `leaf` (observation and memory divergences of an op with a linear address): the shadow page
 *   holding the SUT's leaf SPTE for that address after the step: `unsync`, `syncing` (a
 *   concurrent case seen while another thread syncs it: the SPTE is still the unsync one),
 *   `synced` (indirect, write-protected), `direct`, or `mmio`, `mmio-unsync` (an MMIO SPTE in an unsync page: the
 *   guest may have changed its PTE since), `mmio-ram` (an MMIO SPTE of the current memslot
 *   generation for a gfn that a memslot now backs: re-marked since the memslot appeared),
 *   `mmio-ram-old-gen` (the same, made before the memslot appeared: `check_mmio_spte` should
 *   have refused it), `none` (not present), `noroot`. A stale
 *   translation in an `unsync` page is a missed sync; in a `synced` one, a missed write
 *   protection or role check.
 *
 * Measured on the hand corpus (every smoke and oracle program with each injected bug): each bug
 * gives one signature per paging mode in most programs, and no two bugs share one.
 *
 * Examples: `observation:ia32e4:load:gpa-stale|mech=invlpg@walk|leaf=unsync` (INVLPG did not
 * sync an unsync PTE edit), `memory:ia32e4:load:-A@PT|mech=prefetched_sptes@walk|leaf=synced`
 * (a prefetched SPTE let the CPU skip the walk that sets A).
 *
 * @module
 */
import { type ModeControls, pagingModeOf } from "../../oracles/paging_mode.ts";
import type { AllowedOutcome } from "../../oracles/machine.ts";
import type { VcpuControl } from "../../oracles/control_state.ts";
import type { TraceEntry } from "../../oracles/walk.ts";
import type { Case } from "../model/case.ts";
import { hex } from "../model/hex.ts";
import type { Observation } from "../model/observation.ts";
import type { Op } from "../model/op.ts";
import type { Kvm } from "../shadow/kvm.ts";
import { INVALID_PAGE, type KvmVcpu } from "../shadow/kvm_vcpu.ts";
import { hw_linear_address } from "../shadow/cpu.ts";
import { get_spte, kvm_mmu_page_get_gfn } from "../shadow/mmu.ts";
import { type KvmMmuPage, spte_index } from "../shadow/mmu_page.ts";
import { is_dummy_root, ShadowWalkIterator } from "../shadow/mmu_roots.ts";
import { type KvmMmuPageRole, PT32E_ROOT_LEVEL } from "../shadow/mmu_role.ts";
import {
  get_mmio_spte_access,
  get_mmio_spte_generation,
  get_mmio_spte_gfn,
  is_host_writable_spte,
  is_last_spte,
  is_mmio_spte,
  is_mmu_writable_spte,
  is_shadow_present_pte,
  MMIO_SPTE_GEN_MASK,
  spte_to_pfn,
} from "../shadow/spte.ts";
import type { Counter } from "../shadow/stats.ts";
import type { DiffResult, DiffStep, DivergenceKind } from "./differential.ts";

/** One level of the oracle's walk. */
export interface OracleWalkLevel {
  level: string;
  addr: string;
  value: string;
  /** `memory`, `register`, or `snapshot@<step>` (a cached entry from that step's memory). */
  source: string;
  /** The entry's flags and the address it points at, e.g. `P W U A -> 0x3000`. */
  decoded: string;
}

/** One level of the SUT's shadow walk. */
export interface SpteWalkLevel {
  /** Shadow level: 5..1; in a PAE-format root, level 3 is the `pae_root` entry. */
  level: number;
  sptep: string;
  spte: string;
  /**
   * `leaf 4K P W U A D NX pfn=… gfn=… (mmu-writable host-writable)`, `table P W U A -> sp#3`,
   * `MMIO gfn=… gen=… acc=…`, `pae_root entry -> sp#2`, or `not present`.
   */
  decoded: string;
  /** The shadow page holding the SPTE: id, gfn and role (`pae_root`/`dummy root` otherwise). */
  sp: string;
}

/** Why a case diverged, both sides, and its signature. */
export interface DivergenceExplanation {
  /** Short and stable, no addresses or values (see the module doc). */
  signature: string;
  step: number;
  kind: DivergenceKind;
  /** The guest paging mode of the op's vCPU when the step ran (oracle's control state). */
  mode: string;
  /** The op, compact: `load la=0x40010000 cpl0 cpu0`. */
  op: string;
  /** What the SUT did. */
  sut: string;
  /** What the oracle allowed. */
  allowed: string[];
  /** The divergence's own detail line(s). */
  detail: string;
  /** The fresh walk (`outcomes[0]`) per level, top first; empty when the op is no access. */
  oracleWalk: OracleWalkLevel[];
  /** The SUT's shadow root for the op's vCPU: `sp#0 gfn=0x1 L4 …`, `pae_root`, `none`, … */
  root: string;
  /** The SUT's shadow walk of the op's linear address, top first; empty without a root. */
  spteWalk: SpteWalkLevel[];
  /** The hardware TLB entry of the op's linear page under the current PCID, or `none`. */
  tlb: string;
  /** An invariant violation's SPTEs (`sp#N … [index]` in its detail), as they are now. */
  flagged: SpteWalkLevel[];
  /** The SUT's event log up to the divergence, last 30 lines (`#6 cpu0 #PF exit …`). */
  events: string[];
  /** Per step of the window that led to the divergence: the counters that moved. */
  mechanisms: string[];
}

/**
 * The specific mechanisms, in a signature's order of preference: the only counters a signature
 * names. Every other counter is generic (moves in nearly every step) and never named.
 */
export const SPECIFIC_MECHANISMS: readonly Counter[] = [
  // a stale MMIO SPTE overwritten by a RAM mapping: rare, and what a divergence then hinges on
  "mmio_spte_replaced",
  // the lockless fast page fault
  "fast_pf_fixed",
  "fast_pf_spurious",
  "fast_pf_retries",
  "lockless_read_retries",
  // prefetch of neighbouring gptes
  "prefetched_sptes",
  // explicit invalidation by the guest
  "invlpg",
  // MMIO SPTEs and emulation
  "pf_mmio_spte_created",
  "mmio_cache_hits",
  "emulated_writes",
  "emulated_reads",
  "pf_emulate",
  // write tracking of shadowed gfns
  "flooding_zaps",
  "misaligned_zaps",
  "track_write_zaps",
  // unsync pages and their sync
  "sync_spte_updated",
  "sync_spte_dropped",
  "sp_synced",
  "sp_unsync",
  // dirty logging
  "write_protects",
  "dirty_log_harvests",
  // host events
  "host_unmaps",
  "random_zaps",
  // reuse of shadow pages and roots
  "root_reuses",
  "sp_reused",
  // retries and spurious faults
  "walker_retries",
  "pf_spurious",
  "pf_retry",
  // zaps, MMIO exits
  "sp_zapped",
  "mmio_exits",
];

const RANK = new Map(SPECIFIC_MECHANISMS.map((m, i) => [m, i]));
const EVENT_LINES = 30;

// ---------------------------------------------------------------------------------------------
// Steps, ops and modes
// ---------------------------------------------------------------------------------------------

type LaOp = Extract<Op, { la: bigint }>;

function laOf(op: Op): bigint | null {
  return "la" in op ? (op as LaOp).la : null;
}

function isAccess(op: Op): boolean {
  return op.op === "load" || op.op === "store" || op.op === "fetch";
}

function vcpuOf(op: Op): number {
  return "vcpu" in op ? op.vcpu : 0;
}

/** A compact op text: `load la=0x40010000 cpl0 cpu0`. */
export function opLine(op: Op): string {
  const parts: string[] = [op.op];
  for (const [k, v] of Object.entries(op)) {
    if (k === "op" || k === "vcpu" || v === undefined) continue;
    if (k === "cpl") parts.push(`cpl${v}`);
    else parts.push(`${k}=${typeof v === "bigint" ? hex(v) : String(v)}`);
  }
  if ("vcpu" in op) parts.push(`cpu${op.vcpu}`);
  return parts.join(" ");
}

/** The paging-mode inputs of a control state (the case's or the oracle's `VcpuControl`). */
interface ModeBits {
  readonly cr0: { readonly pg: boolean };
  readonly cr4: { readonly pae: boolean; readonly la57: boolean; readonly pse: boolean };
  readonly efer: { readonly lme: boolean; readonly nxe: boolean };
}

function modeControls(s: ModeBits): ModeControls {
  return {
    pg: s.cr0.pg,
    pae: s.cr4.pae,
    lme: s.efer.lme,
    la57: s.cr4.la57,
    pse: s.cr4.pse,
    nxe: s.efer.nxe,
  };
}

/** CR0.WP, EFER.NXE and CR4.PSE of vCPU `vcpu` when step `index` ran. */
function bitsAt(
  c: Case,
  steps: readonly DiffStep[],
  index: number,
  vcpu: number,
): { wp: boolean; nxe: boolean; pse: boolean } {
  const ctl = controlAt(c, steps, index, vcpu);
  return { wp: ctl.cr0.wp, nxe: ctl.efer.nxe, pse: ctl.cr4.pse };
}

/** `vcpu`'s control state before step `index` (the case's, then each committed write). */
function controlAt(
  c: Case,
  steps: readonly DiffStep[],
  index: number,
  vcpu: number,
): Omit<VcpuControl, "pdpteRegs"> {
  let ctl: Omit<VcpuControl, "pdpteRegs"> = c.control;
  for (const s of steps.slice(0, index)) {
    const next = s.committed?.outcome.control;
    if (next && s.choices.vcpu === vcpu) ctl = next;
  }
  return ctl;
}

/**
 * The guest paging mode of `vcpu` when step `index` (0-based) ran: the case's initial control
 * state, then every committed control write of that vCPU before the step.
 */
function modeAt(c: Case, steps: readonly DiffStep[], index: number, vcpu: number): string {
  return pagingModeOf(c.cpu, modeControls(controlAt(c, steps, index, vcpu))).kind;
}

// ---------------------------------------------------------------------------------------------
// Mechanisms
// ---------------------------------------------------------------------------------------------

function moved(s: DiffStep, ...counters: Counter[]): boolean {
  return counters.some((k) => (s.mechanisms[k] ?? 0) !== 0);
}

/**
 * The 0-based index of the first step of the window that led to the diverging step `d` (see
 * the module doc); the window is `[start, d]`.
 */
function windowStart(steps: readonly DiffStep[], d: number, kind: DivergenceKind): number {
  if (kind === "invariant" && steps.some((s) => s.audited !== undefined)) {
    // A concurrent case audits only when nothing is in flight: every op since the last audit
    // may have broken the invariant.
    for (let i = d - 1; i >= 0; i--) if (steps[i]!.audited) return i + 1;
    return 0;
  }
  if (kind === "invariant" || kind === "sut-failure") return d;
  const op = steps[d]!.choices.op;
  const la = laOf(op);
  for (let i = d - 1; i >= 0; i--) {
    const o = steps[i]!.choices.op;
    if (la !== null) {
      const ola = laOf(o);
      const same = isAccess(o) && ola !== null && ola >> 12n === la >> 12n &&
        vcpuOf(o) === vcpuOf(op);
      if (same && moved(steps[i]!, "hw_walks", "pf_taken")) return i + 1;
    } else if (o.op === op.op) {
      return i + 1;
    }
  }
  return 0;
}

function specificOf(s: DiffStep): Counter[] {
  return (Object.keys(s.mechanisms) as Counter[])
    .filter((k) => RANK.has(k) && (s.mechanisms[k] ?? 0) !== 0)
    .sort((a, b) => RANK.get(a)! - RANK.get(b)!);
}

/** `emulate`, `exit`, `walk`, `tlb` or `none`: how the SUT produced the step's result. */
function pathOf(s: DiffStep): string {
  if (moved(s, "pf_emulate", "emulated_reads", "emulated_writes")) return "emulate";
  if (moved(s, "pf_taken")) return "exit";
  if (moved(s, "hw_walks")) return "walk";
  if (moved(s, "hw_tlb_hits")) return "tlb";
  return "none";
}

/** The mechanism part of a signature: `mech=a,b@path`. */
function mechanismPart(steps: readonly DiffStep[], d: number, kind: DivergenceKind): string {
  const start = windowStart(steps, d, kind);
  const op = steps[d]!.choices.op;
  const la = laOf(op);
  const specific = (st: DiffStep): Counter[] =>
    specificOf(st).filter((m) =>
      m !== "invlpg" || st === steps[d] || la === null ||
      (laOf(st.choices.op) ?? -1n) >> 12n === la >> 12n
    );
  const before = steps.slice(start, d).flatMap(specific)
    .sort((a, b) => RANK.get(a)! - RANK.get(b)!)[0];
  const now = specific(steps[d]!)[0];
  const list = [...new Set([before, now].filter((m): m is Counter => m !== undefined))];
  return `mech=${list.length === 0 ? "none" : list.join(",")}@${pathOf(steps[d]!)}`;
}

// ---------------------------------------------------------------------------------------------
// What differs
// ---------------------------------------------------------------------------------------------

const EC_BITS: readonly [number, string][] = [
  [1 << 0, "P"],
  [1 << 1, "W"],
  [1 << 2, "U"],
  [1 << 3, "RSVD"],
  [1 << 4, "I"],
  [1 << 5, "PK"],
];

function popcount(n: number): number {
  let c = 0;
  for (let x = n; x !== 0; x &= x - 1) c++;
  return c;
}

function ecDiff(got: number, allowed: number): string {
  const plus = EC_BITS.filter(([b]) => (got & b) !== 0 && (allowed & b) === 0).map(([, n]) => n);
  const minus = EC_BITS.filter(([b]) => (got & b) === 0 && (allowed & b) !== 0).map(([, n]) => n);
  return `ec:${plus.map((n) => `+${n}`).join("")}${minus.map((n) => `-${n}`).join("")}`;
}

function faultReasonOfEc(ec: number): string {
  return (ec & (1 << 3)) !== 0 ? "reserved" : (ec & 1) !== 0 ? "rights" : "not-present";
}

/** The gpas earlier steps committed for `vcpu`'s accesses to the linear page of `la`. */
/**
 * True when the latest earlier step that invalidated the diverging op's linear page on its
 * vCPU (INVLPG, a flushing control write, or a #PF) was a #PF the SUT delivered with P=0:
 * KVM's `kvm_inject_emulated_page_fault` invalidates only for P=1 faults.
 */
function lastInvalidationKvmSkipped(
  c: Case,
  steps: readonly DiffStep[],
  d: number,
  opLa: bigint,
  mode: string,
): "pf-not-present" | "pf-rsvd" | null {
  // Outside IA-32e mode the invalidations carry the 32-bit effective address.
  const la = mode.startsWith("ia32e") ? opLa : opLa & 0xffff_ffffn;
  const vcpu = vcpuOf(steps[d]!.choices.op);
  // A flush of another PCID (a MOV CR3 to it) leaves this one's entries.
  const ctl = controlAt(c, steps, d, vcpu);
  const pcid = ctl.cr4.pcide ? Number(ctl.cr3 & 0xfffn) : 0;
  for (let i = d - 1; i >= 0; i--) {
    const s = steps[i]!;
    if (s.choices.vcpu !== vcpu) continue;
    const invs = s.committed?.outcome.invalidations ?? [];
    const hits = invs.filter((e) =>
      e.kind === "all" || (e.kind === "pcid" ? e.pcid === pcid : e.la >> 12n === la >> 12n)
    );
    if (hits.length === 0) continue;
    const o = s.sut.kind === "observation" ? s.sut.observation : null;
    if (!hits.every((e) => e.kind === "pf") || o?.kind !== "pf") return null;
    return (o.errorCode & 1) === 0 ? "pf-not-present" : (o.errorCode & 8) !== 0 ? "pf-rsvd" : null;
  }
  return null;
}

function earlierGpas(steps: readonly DiffStep[], d: number, la: bigint, vcpu: number) {
  const out = new Set<bigint>();
  for (const s of steps.slice(0, d)) {
    const o = s.choices.op;
    const ola = laOf(o);
    if (!isAccess(o) || ola === null || ola >> 12n !== la >> 12n || vcpuOf(o) !== vcpu) continue;
    const obs = s.committed?.outcome.observation;
    if (obs?.kind === "ok") out.add(obs.gpa);
  }
  return out;
}

/**
 * `ok-vs-pf:rights-smap@<level>` when the SUT completed an access whose cached candidate (an
 * outcome the paging-structure caches allow, not the fresh walk) faults on SMAP: the SUT's
 * result came from that translation without the fault (CR0.WP=0 kernel SPTEs lose U).
 */
function smapMissed(c: Case, steps: readonly DiffStep[], d: number): string | null {
  const s = steps[d]!;
  const { wp } = bitsAt(c, steps, d, vcpuOf(s.choices.op));
  for (const o of s.choices.outcomes.slice(1)) {
    const cw = o.walk;
    if (o.observation.kind !== "pf" || cw?.kind !== "pf" || cw.reason !== "rights") continue;
    if (rightsRule(s.choices.op, cw.path, wp) === "smap") {
      return `ok-vs-pf:rights-smap@${cw.level ?? "-"}`;
    }
  }
  return null;
}

function observationDiff(c: Case, steps: readonly DiffStep[], d: number): string {
  const s = steps[d]!;
  if (s.sut.kind !== "observation") return "failure";
  const got: Observation = s.sut.observation;
  const outcomes: readonly AllowedOutcome[] = s.choices.outcomes;
  const same = outcomes.map((o) => o.observation).filter((o) => o.kind === got.kind);
  switch (got.kind) {
    case "ok": {
      const oks = same as Extract<Observation, { kind: "ok" }>[];
      if (oks.some((o) => o.gpa === got.gpa)) return "value";
      const la = laOf(s.choices.op);
      if (
        oks.length > 0 && la !== null &&
        earlierGpas(steps, d, la, vcpuOf(s.choices.op)).has(got.gpa)
      ) {
        return "gpa-stale";
      }
      // A fresh translation where the fresh walk faults: the fault is what the SUT missed,
      // whatever stale translation the paging-structure caches would also allow.
      const fresh = outcomes[0];
      const pf = fresh?.observation.kind === "pf"
        ? fresh
        : oks.length === 0
        ? outcomes.find((o) => o.observation.kind === "pf")
        : undefined;
      if (pf) {
        const w = pf.walk;
        if (w?.kind !== "pf") return "ok-vs-pf";
        const { wp, nxe, pse } = bitsAt(c, steps, d, vcpuOf(s.choices.op));
        const failing = w.path[w.path.length - 1];
        const xd = !nxe && failing !== undefined && (failing.value >> 63n) === 1n;
        // 32-bit paging with CR4.PSE=0 walked through a PDE whose PS bit it had to ignore.
        const psIgnored = w.path.length === 2 && !pse && w.path[0]!.level === "PD" &&
          (w.path[0]!.value & 0x80n) !== 0n;
        const why = w.reason === "rights"
          ? `rights-${rightsRule(s.choices.op, w.path, wp)}`
          : w.reason === "reserved" && xd
          ? "reserved-xd"
          : w.reason;
        if (psIgnored) return `ok-vs-pf:${why}-ps-ignored@${w.level ?? "-"}`;
        return smapMissed(c, steps, d) ?? `ok-vs-pf:${why}@${w.level ?? "-"}`;
      }
      // A translation no candidate gives: when the cached candidate faults on SMAP, the SUT used
      // that translation without the fault (the fresh walk's new translation is not the story).
      if (oks.length > 0) return smapMissed(c, steps, d) ?? "gpa";
      break;
    }
    case "pf": {
      const ecs = outcomes.flatMap((o) =>
        o.observation.kind === "pf"
          ? [o.observation.errorCode, ...(o.walk?.kind === "pf" ? o.walk.alternatives : [])]
          : []
      );
      if (ecs.length > 0) {
        if (ecs.includes(got.errorCode)) return "cr2";
        const nearest = ecs.reduce((a, b) =>
          popcount(b ^ got.errorCode) < popcount(a ^ got.errorCode) ? b : a
        );
        return ecDiff(got.errorCode, nearest);
      }
      if (outcomes.some((o) => o.observation.kind === "ok")) {
        return `pf-vs-ok:${faultReasonOfEc(got.errorCode)}`;
      }
      break;
    }
    case "dirtyLog": {
      const logs = same as Extract<Observation, { kind: "dirtyLog" }>[];
      if (logs.length > 0) {
        return logs.some((l) => l.slot === got.slot) ? "dirtylog-missing" : "dirtylog-slot";
      }
      break;
    }
    default:
      break;
  }
  const kinds = [...new Set(outcomes.map((o) => o.observation.kind))].sort();
  return `${got.kind}-vs-${kinds.join("+")}`;
}

const ENTRY_BITS: readonly [number, string][] = [
  [0, "P"],
  [1, "W"],
  [2, "U"],
  [3, "PWT"],
  [4, "PCD"],
  [5, "A"],
  [6, "D"],
  [7, "PS"],
  [8, "G"],
  [63, "XD"],
];

/** Names of the bits of a paging entry that differ, as `+A-D` (sorted by bit, named once). */
function entryBitsDiff(oracle: bigint, sut: bigint, width: 4 | 8): string {
  const out: string[] = [];
  const named = new Map(ENTRY_BITS);
  const groups = new Map<string, string>();
  for (let b = 0; b < width * 8; b++) {
    const m = 1n << BigInt(b);
    if (((oracle ^ sut) & m) === 0n) continue;
    const sign = (sut & m) !== 0n ? "+" : "-";
    const name = named.get(b) ??
      (b >= 12 && b <= (width === 4 ? 31 : 51) ? "addr" : b >= 59 && b <= 62 ? "PK" : "avl");
    if (named.has(b)) out.push(`${sign}${name}`);
    else if (!groups.has(name)) {
      groups.set(name, sign);
      out.push(`${sign}${name}`);
    } else if (groups.get(name) !== sign) {
      groups.set(name, "±");
      const i = out.findIndex((t) => t.slice(1) === name);
      out[i] = `±${name}`;
    }
  }
  return out.join("");
}

/** The entry the oracle walked at `addr` (this step first, then earlier ones), if any. */
function walkedEntry(steps: readonly DiffStep[], d: number, addr: bigint): TraceEntry | null {
  for (let i = d; i >= 0; i--) {
    for (const o of steps[i]!.choices.outcomes) {
      const w = o.walk;
      if (!w || !("path" in w)) continue;
      const e = w.path.find((p) => p.addr === addr && p.source !== "register");
      if (e) return e;
    }
  }
  return null;
}

const MEMORY_DETAIL = /guest memory at (0x[0-9a-f]+) differs/;

function memoryDiff(
  steps: readonly DiffStep[],
  d: number,
  detail: string,
  expected: string,
  got: string,
  mode: string,
): string {
  const m = MEMORY_DETAIL.exec(detail);
  if (!m) return "data";
  const gpa = BigInt(m[1]!);
  const o = BigInt(expected), s = BigInt(got);
  const halves: { addr: bigint; shift: bigint; width: 4 | 8 }[] = mode === "legacy32"
    ? [{ addr: gpa, shift: 0n, width: 4 }, { addr: gpa + 4n, shift: 32n, width: 4 }]
    : [{ addr: gpa, shift: 0n, width: 8 }];
  const tokens: string[] = [];
  for (const h of halves) {
    const mask = h.width === 4 ? 0xffff_ffffn : (1n << 64n) - 1n;
    const ov = (o >> h.shift) & mask, sv = (s >> h.shift) & mask;
    if (ov === sv) continue;
    const e = walkedEntry(steps, d, h.addr);
    const token = e ? `${entryBitsDiff(ov, sv, h.width)}@${e.level}` : "data";
    if (!tokens.includes(token)) tokens.push(token);
  }
  return tokens.length === 0 ? "data" : tokens.join(",");
}

/** The first line of a failure message with numbers replaced and spaces turned into dashes. */
function normalizeMessage(detail: string): string {
  const first = (detail.split("\n")[0] ?? "").toLowerCase()
    .replace(/0x[0-9a-f]+/g, "n").replace(/[0-9]+/g, "n")
    .replace(/[^a-z_]+/g, "-").replace(/^-+|-+$/g, "");
  return first.slice(0, 60).replace(/-+$/, "") || "unknown";
}

function failureDiff(s: DiffStep): string {
  if (s.sut.kind !== "failure") return "failure";
  return s.sut.reason === "exception"
    ? `exception:${normalizeMessage(s.sut.detail)}`
    : s.sut.reason;
}

/**
 * The index in `r.steps` of the diverging op: the last step, unless a concurrent case's late
 * memory comparison blamed an earlier op.
 */
function divergingStep(r: DiffResult): number {
  const v = r.verdict;
  const last = r.steps.length - 1;
  if (v.status !== "divergence") return last;
  const at = r.steps.findLastIndex((s) => s.index === v.divergence.step - 1);
  return at < 0 ? last : at;
}

/**
 * The signature of a diverging run (null unless it diverged): `<kind>:<mode>:<op>:<what
 * differs>|mech=<mechanisms>@<path>`, see the module doc. Cheap: reads only the run's steps
 * (counters, oracle outcomes), not the SUT's tables or event log, so a fuzzer can dedup with it.
 */
export function divergenceSignature(c: Case, r: DiffResult): string | null {
  const v = r.verdict;
  if (v.status !== "divergence" || r.steps.length === 0) return null;
  const d = divergingStep(r);
  const s = r.steps[d]!;
  const dv = v.divergence;
  const mode = modeAt(c, r.steps, d, vcpuOf(s.choices.op));
  let differs: string;
  switch (dv.kind) {
    case "observation":
      differs = observationDiff(c, r.steps, d);
      break;
    case "memory":
      differs = memoryDiff(r.steps, d, dv.detail, dv.expected[0] ?? "0x0", dv.got, mode);
      break;
    case "invariant":
      differs = [...new Set(dv.got.split(",").map((t) => t.trim()).filter((t) => t))].sort()
        .join(",");
      break;
    case "sut-failure":
      differs = failureDiff(s);
      break;
  }
  // A #PF that KVM's guest walker computed and injected: the walker is the mechanism, whatever
  // else moved before (one signature per error-code rule, not one per preceding mechanism).
  const injected = s.sut.kind === "observation" && s.sut.observation.kind === "pf" &&
    (s.mechanisms.pf_guest_injected ?? 0) > 0;
  if (dv.kind === "observation" && injected) {
    return `${dv.kind}:${mode}:${s.choices.op.op}:${differs}|mech=walk_addr_generic@exit`;
  }
  const la = laOf(s.choices.op);
  // A translation the SUT kept: committed before (gpa-stale), or never seen by the guest (gpa: a
  // prefetched SPTE), or where the fresh walk faults.
  const stale = differs.startsWith("ok-vs-pf") || differs === "gpa-stale" || differs === "gpa";
  // A missing A/D update is what a kept translation also does: the CPU did not walk the gptes.
  const missingAd = dv.kind === "memory" && /^-[AD]/.test(differs);
  const skipped = ((dv.kind === "observation" && stale) || missingAd) && la !== null
    ? lastInvalidationKvmSkipped(c, r.steps, d, la, mode)
    : null;
  const after = skipped ? `|after=${skipped}` : "";
  const leaf = (dv.kind === "observation" || dv.kind === "memory") && la !== null && r.sut
    ? `|leaf=${leafState(r.sut.kvm, vcpuOf(s.choices.op), la)}`
    : "";
  const observer = vcpuOf(s.choices.op);
  const mixedInvariant = dv.kind === "invariant" && /I-[89]m/.test(differs);
  const mixedLeaf = dv.kind === "observation" && la !== null && r.sut !== null &&
    (leafNxFromOtherMode(r.sut.kvm, observer, la) || leafPsFromOtherMode(r.sut.kvm, observer, la));
  // A concurrent case audits only when nothing is in flight, maybe after a control write
  // changed a vCPU's mode: the modes were mixed in between. For an invariant, only a write
  // since the last audit counts (an earlier one was audited after it, with nothing flagged).
  const since = dv.kind === "invariant" ? windowStart(r.steps, d, "invariant") : 0;
  const modeWritten = c.schedule !== undefined &&
    r.steps.slice(since, d + 1).some((st) =>
      MODE_WRITES.has(st.choices.op.op) && st.committed?.outcome.control
    );
  const modeChanged = modeWritten && (mixedInvariant || mixedLeaf);
  const modes = (mixedInvariant || mixedLeaf) && r.sut &&
      (vcpuModesDiffer(r.sut.kvm) || modeChanged)
    ? "|modes=mixed"
    : "";
  const racing = (dv.kind === "observation" || dv.kind === "memory") &&
      racingEmulatedStore(r.steps, d)
    ? "|racing=emulated-store"
    : "";
  return `${dv.kind}:${mode}:${s.choices.op.op}:${differs}|${
    mechanismPart(r.steps, d, dv.kind)
  }${leaf}${after}${modes}${racing}`;
}

/**
 * A concurrent case: whether, when step `d` completed, a store that KVM emulated had written a
 * page holding an entry of `d`'s fresh walk and was still in KVM (before the page-track zap of
 * the SPTEs built from the old entry).
 */
function racingEmulatedStore(steps: readonly DiffStep[], d: number): boolean {
  const s = steps[d]!;
  const walk = s.choices.outcomes[0]?.walk;
  if (!s.finishing || !walk || !("path" in walk)) return false;
  const pages = new Set(walk.path.map((e) => e.addr >> 12n));
  return s.finishing.some((i) => {
    const store = steps.find((st) => st.index === i);
    const o = store?.sut.kind === "observation" ? store.sut.observation : null;
    return store?.choices.op.op === "store" && o?.kind === "ok" && pages.has(o.gpa >> 12n);
  });
}

/**
 * True when the observing vCPU runs with EFER.NX=0 but its leaf SPTE for `la` has NX set: the
 * SPTE was built from an XD gpte under another vCPU's EFER.NX=1 (roles do not record EFER.NX).
 */
function leafNxFromOtherMode(kvm: Kvm, vcpuIndex: number, la: bigint): boolean {
  if (kvm.vcpus[vcpuIndex]?.mmu.cpu_role.base.efer_nx !== false) return false;
  const last = lastSpte(kvm, vcpuIndex, la);
  if (last === null || last === "noroot") return false;
  return is_shadow_present_pte(last.spte) && (last.spte >> 63n) === 1n;
}

/**
 * True when `vcpuIndex` is in 32-bit paging with CR4.PSE=0 and its leaf SPTE for `la` was built
 * from a 4 MiB PDE under CR4.PSE=1 (by it before a CR4 write, or by another vCPU), where its own
 * mode reads that PDE as a page-table pointer: a large SPTE, or one in a direct shadow page (a
 * 32-bit guest's paging structures have direct pages only below a large PDE).
 */
function leafPsFromOtherMode(kvm: Kvm, vcpuIndex: number, la: bigint): boolean {
  const role = kvm.vcpus[vcpuIndex]?.mmu.cpu_role;
  if (!role || role.base.level !== 2 || role.ext.cr4_pse) return false;
  const last = lastSpte(kvm, vcpuIndex, la);
  if (last === null || last === "noroot" || !is_shadow_present_pte(last.spte)) return false;
  const sp = kvm.spOfPfn.get(Math.floor(last.sptep / 4096));
  return (last.spte & 0x80n) !== 0n || sp?.role.direct === true;
}

/** The control writes that can change what a gpte means (EFER.NX, CR4.PSE/PAE, CR0.PG). */
const MODE_WRITES: ReadonlySet<string> = new Set(["writeEfer", "writeCr4", "writeCr0"]);

/**
 * True when the paging vCPUs disagree on a guest mode bit that shadow-page roles do not record
 * (EFER.NX, CR4.PSE) or on the paging depth: then one vCPU may use SPTEs another built under
 * the other meaning of its gptes.
 */
function vcpuModesDiffer(kvm: Kvm): boolean {
  const modes = new Set(
    kvm.vcpus.filter((v) => v.mmu.cpu_role.base.level > 0).map((v) => {
      const r = v.mmu.cpu_role;
      return `${r.base.efer_nx}/${r.ext.cr4_pse}/${r.base.level}`;
    }),
  );
  return modes.size > 1;
}

/**
 * Which rights rule a fresh walk's rights fault broke, from the access and the entries' U/S,
 * R/W and XD bits: `us` (a user access to a supervisor page), `xd` (a fetch from an XD page),
 * `w` (a write to a read-only page: CPL3, or CR0.WP=1), `smep` (a supervisor fetch from a user
 * page) or `smap` (a supervisor data access to a user page). A supervisor write to a user,
 * read-only page is `w` with CR0.WP=1 and `smap` with CR0.WP=0 (then only SMAP can forbid it).
 */
function rightsRule(op: Op, path: readonly TraceEntry[], wp: boolean): string {
  if (!("cpl" in op)) return "other";
  const entries = path.filter((e) => e.source !== "register");
  const user = entries.every((e) => (e.value & 4n) !== 0n);
  const writable = entries.every((e) => (e.value & 2n) !== 0n);
  if (op.cpl === 3 && !user) return "us";
  if (op.op === "fetch") {
    return path.some((e) => e.xd) ? "xd" : user && op.cpl === 0 ? "smep" : "other";
  }
  if (op.op === "store" && !writable && (op.cpl === 3 || wp)) return "w";
  return user && op.cpl === 0 ? "smap" : "other";
}

/**
 * The last SPTE the shadow walk of `la` reaches on a vCPU (present or not), null when the walk
 * reaches none (or the tables are inconsistent), `"noroot"` without a root or a usable address.
 */
function lastSpte(
  kvm: Kvm,
  vcpuIndex: number,
  la: bigint,
): { sptep: number; spte: bigint } | null | "noroot" {
  const vcpu = kvm.vcpus[vcpuIndex];
  const hpa = vcpu?.mmu.root.hpa ?? INVALID_PAGE;
  const hla = vcpu ? hw_linear_address(vcpu, la) : null;
  if (!vcpu || hpa === INVALID_PAGE || hla === null) return "noroot";
  try {
    let last: { sptep: number; spte: bigint } | null = null;
    for (const it = new ShadowWalkIterator(vcpu, hpa, hla); it.okay(); it.next()) {
      last = { sptep: it.sptep, spte: get_spte(kvm, it.sptep) };
    }
    return last;
  } catch {
    return null;
  }
}

/**
 * The state of the SUT's leaf for `la` (see the module doc): `unsync`, `syncing`, `synced`, `direct`,
 * `mmio`, `mmio-unsync`, `mmio-ram`, `mmio-ram-old-gen`, `none` (the walk ends at a non-present
 * SPTE) or `noroot`.
 */
function leafState(kvm: Kvm, vcpuIndex: number, la: bigint): string {
  const last = lastSpte(kvm, vcpuIndex, la);
  if (last === "noroot") return "noroot";
  try {
    if (!last) return "none";
    const sp = kvm.spOfPfn.get(Math.floor(last.sptep / 4096));
    if (is_mmio_spte(last.spte)) {
      if (kvm.gfn_to_memslot(get_mmio_spte_gfn(last.spte))) {
        const current = kvm.memslots.generation & MMIO_SPTE_GEN_MASK;
        return get_mmio_spte_generation(last.spte) === current ? "mmio-ram" : "mmio-ram-old-gen";
      }
      return sp?.unsync || sp?.syncing ? "mmio-unsync" : "mmio";
    }
    if (!is_shadow_present_pte(last.spte)) return "none";
    if (!sp) return "none";
    return sp.unsync ? "unsync" : sp.syncing ? "syncing" : sp.role.direct ? "direct" : "synced";
  } catch {
    return "none";
  }
}

// ---------------------------------------------------------------------------------------------
// The two walks
// ---------------------------------------------------------------------------------------------

function entryFlags(value: bigint, width: 4 | 8): string {
  const f = ENTRY_BITS.filter(([b]) => b < width * 8 && (value & (1n << BigInt(b))) !== 0n)
    .map(([, n]) => n);
  const addr = value & (width === 4 ? 0xffff_f000n : 0x000f_ffff_ffff_f000n);
  return `${f.length === 0 ? "-" : f.join(" ")} -> ${hex(addr)}`;
}

function oracleWalkOf(s: DiffStep, mode: string): OracleWalkLevel[] {
  if (!isAccess(s.choices.op)) return [];
  const w = s.choices.outcomes[0]?.walk;
  if (!w || !("path" in w)) return [];
  const width = mode === "legacy32" ? 4 : 8;
  return w.path.map((e) => ({
    level: e.level,
    addr: hex(e.addr),
    value: hex(e.value),
    source: e.source === "snapshot" ? `snapshot@${e.snapshot}` : e.source,
    decoded: entryFlags(e.value, width),
  }));
}

function rightsName(a: number): string {
  return `${a & 4 ? "u" : "-"}${a & 2 ? "w" : "-"}${a & 1 ? "x" : "-"}`;
}

function roleName(r: KvmMmuPageRole): string {
  return `L${r.level} q${r.quadrant} ${r.direct ? "direct" : "indirect"} acc=${
    rightsName(r.access)
  }${r.has_4_byte_gpte ? " 4-byte" : ""}${r.cr0_wp ? "" : " !wp"}${
    r.smep_andnot_wp ? " smep&!wp" : ""
  }${r.smap_andnot_wp ? " smap&!wp" : ""}${r.efer_nx ? "" : " !nx"}${r.invalid ? " invalid" : ""}`;
}

/** `sp#3 gfn=0x4 L1 q0 indirect acc=uwx unsync`. */
function spName(sp: KvmMmuPage): string {
  return `sp#${sp.id} gfn=${hex(BigInt(sp.gfn))} ${roleName(sp.role)}${sp.unsync ? " unsync" : ""}`;
}

function hex64(v: bigint): string {
  return `0x${v.toString(16).padStart(16, "0")}`;
}

/** What holds the table at host pfn `pfn`. */
function tableName(kvm: Kvm, vcpu: KvmVcpu, pfn: number): string {
  const sp = kvm.spOfPfn.get(pfn);
  if (sp) return spName(sp);
  if (pfn === vcpu.mmu.pae_root) return "pae_root";
  if (is_dummy_root(kvm, pfn * 4096)) return "dummy root";
  return `host page ${hex(BigInt(pfn))} (no shadow page)`;
}

function childName(kvm: Kvm, pfn: number): string {
  const sp = kvm.spOfPfn.get(pfn);
  return sp ? `sp#${sp.id}` : `host page ${hex(BigInt(pfn))}`;
}

function decodeSpte(kvm: Kvm, spte: bigint, level: number, sptep: number): string {
  if (is_mmio_spte(spte)) {
    return `MMIO gfn=${hex(BigInt(get_mmio_spte_gfn(spte)))} gen=${
      get_mmio_spte_generation(spte)
    } acc=${rightsName(get_mmio_spte_access(spte))}`;
  }
  if (!is_shadow_present_pte(spte)) return "not present";
  const flags = [
    [1n << 0n, "P"],
    [1n << 1n, "W"],
    [1n << 2n, "U"],
    [1n << 5n, "A"],
    [1n << 6n, "D"],
    [1n << 63n, "NX"],
  ].filter(([m]) => (spte & (m as bigint)) !== 0n).map(([, n]) => n).join(" ");
  const pfn = spte_to_pfn(spte);
  if (!is_last_spte(spte, level)) return `table ${flags} -> ${childName(kvm, pfn)}`;
  const size = level === 1 ? "4K" : level === 2 ? "2M" : "1G";
  const gfn = kvm.ram.gfnOfPfn(pfn);
  const sp = kvm.spOfPfn.get(Math.floor(sptep / 4096));
  const shadows = sp
    ? ` shadows gfn=${hex(BigInt(kvm_mmu_page_get_gfn(sp, spte_index(sptep))))}`
    : "";
  const sw = [
    is_mmu_writable_spte(spte) ? "mmu-writable" : "",
    is_host_writable_spte(spte) ? "host-writable" : "",
  ].filter((x) => x).join(" ");
  return `leaf ${size} ${flags} pfn=${hex(BigInt(pfn))} gfn=${
    gfn === undefined ? "none" : hex(BigInt(gfn))
  }${shadows}${sw ? ` (${sw})` : ""}`;
}

/** The SUT's root, shadow walk and TLB entry for `la` on `vcpuIndex`. */
function sutWalk(
  kvm: Kvm,
  vcpuIndex: number,
  la: bigint | null,
): { root: string; walk: SpteWalkLevel[]; tlb: string } {
  const vcpu = kvm.vcpus[vcpuIndex];
  if (!vcpu) return { root: "none", walk: [], tlb: "none" };
  const hpa = vcpu.mmu.root.hpa;
  const root = hpa === INVALID_PAGE
    ? "none (reload pending)"
    : `${tableName(kvm, vcpu, Math.floor(hpa / 4096))} (guest cr3 ${hex(vcpu.mmu.root.pgd)})`;
  if (la === null) return { root, walk: [], tlb: "none" };
  const hla = hw_linear_address(vcpu, la);
  if (hla === null) return { root, walk: [], tlb: "none (non-canonical)" };
  const laPage = Number(hla >> 12n);
  const t = vcpu.tlb.lookup(vcpu.active_pcid, laPage);
  let tlb = "none";
  if (t) {
    const gfn = kvm.ram.gfnOfPfn(t.pfn);
    const rights = [t.writable && "W", t.user && "U", t.executable && "X", t.dirty && "D"]
      .filter((x) => x).join(" ");
    tlb = `pcid ${vcpu.active_pcid}: pfn=${hex(BigInt(t.pfn))} gfn=${
      gfn === undefined ? "none" : hex(BigInt(gfn))
    } ${rights || "read-only"}`;
  }
  if (hpa === INVALID_PAGE) return { root, walk: [], tlb };
  const walk: SpteWalkLevel[] = [];
  const row = (level: number, sptep: number, spte: bigint, decoded: string) =>
    walk.push({
      level,
      sptep: hex(BigInt(sptep)),
      spte: hex64(spte),
      decoded,
      sp: tableName(kvm, vcpu, Math.floor(sptep / 4096)),
    });
  if (vcpu.mmu.root_role.level === PT32E_ROOT_LEVEL && !is_dummy_root(kvm, hpa)) {
    const sptep = hpa + Number((hla >> 30n) & 3n) * 8;
    const e = kvm.host.read64(sptep);
    row(
      3,
      sptep,
      e,
      (e & 1n) === 0n ? "not present" : `pae_root entry -> ${childName(kvm, spte_to_pfn(e))}`,
    );
  }
  for (const it = new ShadowWalkIterator(vcpu, hpa, hla); it.okay(); it.next()) {
    const spte = get_spte(kvm, it.sptep);
    row(it.level, it.sptep, spte, decodeSpte(kvm, spte, it.level, it.sptep));
  }
  return { root, walk, tlb };
}

const FLAGGED = /sp#(\d+)\b[^[\n]*\[(\d+)\]/g;

/** The SPTEs an audit finding names (`sp#3 gfn=… [16] spte=…`), read now. */
function flaggedSptes(kvm: Kvm, detail: string): SpteWalkLevel[] {
  const byId = new Map([...kvm.spOfPfn.values()].map((sp) => [sp.id, sp]));
  const seen = new Set<string>();
  const out: SpteWalkLevel[] = [];
  for (const m of detail.matchAll(FLAGGED)) {
    const key = `${m[1]}[${m[2]}]`;
    if (seen.has(key)) continue;
    seen.add(key);
    const sp = byId.get(Number(m[1]));
    if (!sp) {
      out.push({ level: 0, sptep: "-", spte: "-", decoded: "freed", sp: `sp#${m[1]}` });
      continue;
    }
    const sptep = sp.sptep(Number(m[2]));
    const spte = get_spte(kvm, sptep);
    out.push({
      level: sp.role.level,
      sptep: hex(BigInt(sptep)),
      spte: hex64(spte),
      decoded: `[${m[2]}] ${decodeSpte(kvm, spte, sp.role.level, sptep)}`,
      sp: spName(sp),
    });
  }
  return out;
}

function mechanismLines(steps: readonly DiffStep[], d: number, kind: DivergenceKind): string[] {
  const start = windowStart(steps, d, kind);
  return steps.slice(start, d + 1).map((s) => {
    const moved = Object.entries(s.mechanisms).map(([k, n]) => `${k}=${n}`).join(" ");
    const mark = s === steps[d] ? " (diverging step)" : "";
    return `#${s.choices.step} ${opLine(s.choices.op)}${mark}: ${moved || "-"}`;
  });
}

/**
 * Explains a diverging run (null unless the verdict is a divergence): both sides' view of the
 * diverging step, the mechanisms and events that led there, and the signature.
 */
export function explainDivergence(c: Case, r: DiffResult): DivergenceExplanation | null {
  const v = r.verdict;
  const signature = divergenceSignature(c, r);
  if (v.status !== "divergence" || signature === null) return null;
  const d = divergingStep(r);
  const s = r.steps[d]!;
  const op = s.choices.op;
  const vcpu = vcpuOf(op);
  const mode = modeAt(c, r.steps, d, vcpu);
  // A memory divergence's values are words at the address its detail names.
  const at = v.divergence.kind === "memory" ? MEMORY_DETAIL.exec(v.divergence.detail)?.[1] : null;
  const word = (x: string) => (at ? `[${at}] = ${x}` : x);
  let sut = { root: "none (no SUT)", walk: [] as SpteWalkLevel[], tlb: "none" };
  let events: string[] = [];
  let flagged: SpteWalkLevel[] = [];
  if (r.sut) {
    const kvm = r.sut.kvm;
    try {
      sut = sutWalk(kvm, vcpu, laOf(op));
    } catch (e: unknown) {
      sut = {
        root: `walk failed: ${e instanceof Error ? e.message : String(e)}`,
        walk: [],
        tlb: "?",
      };
    }
    if (v.divergence.kind === "invariant") {
      try {
        flagged = flaggedSptes(kvm, v.divergence.detail);
      } catch {
        flagged = [];
      }
    }
    events = kvm.stats.events.filter((e) => e.step <= s.choices.step).slice(-EVENT_LINES)
      .map((e) => `#${e.step} ${e.vcpu === null ? "vm" : `cpu${e.vcpu}`} ${e.what}`);
  }
  return {
    signature,
    step: v.divergence.step,
    kind: v.divergence.kind,
    mode,
    op: opLine(op),
    sut: word(v.divergence.got),
    allowed: v.divergence.expected.map(word),
    detail: v.divergence.detail,
    oracleWalk: oracleWalkOf(s, mode),
    root: sut.root,
    spteWalk: sut.walk,
    tlb: sut.tlb,
    flagged,
    events,
    mechanisms: mechanismLines(r.steps, d, v.divergence.kind),
  };
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

const LEVEL_NUMBER: Record<string, number> = { PML5: 5, PML4: 4, PDPT: 3, PD: 2, PT: 1 };

/** Two columns, the left one padded to its widest cell (at most `max`). */
function columns(rows: [string, string][], max = 64): string[] {
  const width = Math.min(max, Math.max(...rows.map(([l]) => l.length)));
  return rows.map(([l, r]) => `${l.padEnd(width)} | ${r}`.trimEnd());
}

/**
 * A readable side-by-side block: the oracle (allowed outcomes, fresh walk per level) on the
 * left, the SUT (its result, root, SPTE per level with its shadow page) on the right, levels
 * aligned (PML4 with L4 … PT with L1), then the TLB entry, the mechanisms and recent events.
 */
export function explanationText(e: DivergenceExplanation): string[] {
  const lines = [
    `divergence ${e.signature}`,
    `step ${e.step} (${e.kind}, ${e.mode}): ${e.op}`,
  ];
  const rows: [string, string][] = [["oracle", "SUT"]];
  const allowed = e.allowed.length === 0 ? ["(nothing)"] : e.allowed;
  allowed.forEach((a, i) =>
    rows.push([
      `${i === 0 ? "allowed: " : "         "}${a}`,
      i === 0 ? `got:     ${e.sut.split("\n")[0]}` : "",
    ])
  );
  if (e.oracleWalk.length > 0 || e.spteWalk.length > 0) {
    rows.push([
      e.oracleWalk.length > 0 ? "fresh walk:" : "fresh walk: (none)",
      `shadow walk, root ${e.root}:`,
    ]);
    const byLevel = new Map<number, [string[], string[]]>();
    const at = (n: number) => {
      let cell = byLevel.get(n);
      if (!cell) byLevel.set(n, cell = [[], []]);
      return cell;
    };
    for (const o of e.oracleWalk) {
      at(LEVEL_NUMBER[o.level] ?? 0)[0].push(
        `  ${o.level.padEnd(4)} @${o.addr} = ${o.value} (${o.source})`,
        `       ${o.decoded}`,
      );
    }
    for (const w of e.spteWalk) {
      at(w.level)[1].push(
        `  L${w.level} @${w.sptep} = ${w.spte} ${w.decoded}`,
        `       in ${w.sp}`,
      );
    }
    for (const n of [...byLevel.keys()].sort((a, b) => b - a)) {
      const [l, r] = byLevel.get(n)!;
      for (let i = 0; i < Math.max(l.length, r.length); i++) rows.push([l[i] ?? "", r[i] ?? ""]);
    }
    rows.push(["", `hw TLB: ${e.tlb}`]);
  } else {
    rows.push(["", `root ${e.root}`]);
  }
  if (e.flagged.length > 0) {
    rows.push(["", "SPTEs the audit names:"]);
    for (const f of e.flagged) {
      rows.push(["", `  L${f.level} @${f.sptep} = ${f.spte} ${f.decoded}`], [
        "",
        `       in ${f.sp}`,
      ]);
    }
  }
  lines.push(...columns(rows));
  if (e.mechanisms.length > 0) {
    lines.push("SUT mechanisms (counters that moved) in the steps that led here:");
    lines.push(...e.mechanisms.map((m) => `  ${m}`));
  }
  if (e.events.length > 0) {
    lines.push(`SUT events up to step ${e.step} (last ${e.events.length}):`);
    lines.push(...e.events.map((m) => `  ${m}`));
  }
  return lines;
}
