/**
 * The reference machine: executes a case's program step by step on the oracle.
 *
 * For each op, `allowed` computes the set of outcomes the architecture allows (without changing
 * anything); `commit` then applies the one that happened, which is how a nondeterministic
 * specification checks an implementation: the oracle follows the system under test's choice.
 * `step` commits the first outcome, which is always the fresh walk (a processor that never
 * caches), so the oracle alone runs a program deterministically.
 *
 * @module
 */
import type { Case, CpuModel, Memslot } from "../src/model/case.ts";
import type { Observation } from "../src/model/observation.ts";
import type { Op } from "../src/model/op.ts";
import {
  initialControl,
  type Invalidation,
  pcidOf,
  type VcpuControl,
  walkContextOf,
  writeControl,
} from "./control_state.ts";
import { interpretEntry } from "./entry_format.ts";
import { GuestMemory, type WriteFate } from "./guest_memory.ts";
import { accessCandidates, type TimedInvalidation, type TlbFill, tlbFillOf } from "./tlb_model.ts";
import { canonicalFault, effectiveLa, type WalkResult } from "./walk.ts";

/** A write the step makes to guest memory. */
export interface MemWrite {
  readonly addr: bigint;
  readonly bytes: 4 | 8;
  /** "A"/"D": a locked OR of `mask`; "store": the guest's data write of `value`. */
  readonly kind: "A" | "D" | "store";
  readonly mask: bigint;
  readonly value: bigint;
}

/** One allowed outcome of a step, with what committing it does. */
export interface AllowedOutcome {
  readonly observation: Observation;
  /** How a processor produces it: a fresh walk, a TLB hit, a paging-structure-cache hit, or an op. */
  readonly via: "walk" | "tlb" | "psc" | "op";
  /** The walk behind an access outcome (trace, rights, A/D writes). */
  readonly walk: WalkResult | null;
  readonly writes: readonly MemWrite[];
  /** The vCPU's control state afterwards, for control ops that complete. */
  readonly control: VcpuControl | null;
  readonly invalidations: readonly Invalidation[];
  readonly note: string | null;
}

/** An outcome of a non-access op (or of an access, with `more` giving its walk and writes). */
function outcomeOf(observation: Observation, more: Partial<AllowedOutcome> = {}): AllowedOutcome {
  return {
    observation,
    via: "op",
    walk: null,
    writes: [],
    control: null,
    invalidations: [],
    note: null,
    ...more,
  };
}

/** The allowed outcomes of one step, before it is committed. */
export interface StepChoices {
  /** 1-based step number (its time stamp). */
  readonly step: number;
  readonly op: Op;
  readonly vcpu: number | null;
  readonly outcomes: readonly AllowedOutcome[];
}

/** A committed step. */
export interface CommittedStep {
  readonly choices: StepChoices;
  readonly chosen: number;
  readonly outcome: AllowedOutcome;
  /** What happened to each write (dropped by MMIO or ROM, or written). */
  readonly fates: readonly WriteFate[];
}

/** Options of the reference machine: named policies for what the SDM leaves open. */
export interface MachineOptions {
  /**
   * `strictHardware` (default true, spec §5.2): a faulting access never sets A in its own leaf,
   * as on Intel/AMD silicon. False allows the SDM's "model specific" leaf A on a rights fault.
   */
  readonly strictHardware?: boolean;
  /** Where PAE PDPTEs come from (default "registers"; "memory" models AMD nested paging). */
  readonly pdpteSource?: "registers" | "memory";
}

interface VcpuState {
  ctl: VcpuControl;
  controls: [number, VcpuControl][];
  invalidations: TimedInvalidation[];
  fills: TlbFill[];
}

/** The oracle's machine: guest memory, memslots, dirty logs and one control state per vCPU. */
export class ReferenceMachine {
  readonly cpu: CpuModel;
  readonly memory: GuestMemory;
  readonly options: Required<MachineOptions>;
  #vcpus: VcpuState[];
  #step = 0;
  /** Slots with dirty logging on, and the gfns written since the last get-and-clear. */
  #dirty = new Map<number, Set<bigint>>();
  /** {@link reachableEntries} by vCPU and step ("now": since the last commit). */
  readonly #reach = new Map<string, Set<bigint>>();

  /**
   * Builds the machine in the case's initial state.
   *
   * @throws {InitialStateError} when the initial state is impossible (PAE PDPTEs with reserved bits)
   */
  constructor(c: Case, options: MachineOptions = {}) {
    this.cpu = c.cpu;
    this.options = {
      strictHardware: options.strictHardware ?? true,
      pdpteSource: options.pdpteSource ?? "registers",
    };
    this.memory = new GuestMemory(c);
    const ctl = initialControl(
      c.cpu,
      c.control,
      (a) => this.memory.readWord(a),
      this.options.pdpteSource,
    );
    this.#vcpus = Array.from(
      { length: c.vcpus },
      () => ({ ctl, controls: [[0, ctl]], invalidations: [], fills: [] }),
    );
  }

  /** Steps committed so far. */
  get steps(): number {
    return this.#step;
  }

  /** A vCPU's current control state. */
  control(vcpu = 0): VcpuControl {
    return this.#vcpu(vcpu).ctl;
  }

  #vcpu(i: number): VcpuState {
    const v = this.#vcpus[i];
    if (!v) throw new RangeError(`Cannot use vCPU ${i}: the case has ${this.#vcpus.length}`);
    return v;
  }

  /** The outcomes the architecture allows for `op` as the next step. Changes nothing. */
  allowed(op: Op): StepChoices {
    const step = this.#step + 1;
    this.memory.beginStep(step);
    const vcpu = "vcpu" in op ? op.vcpu : null;
    return { step, op, vcpu, outcomes: this.#outcomes(op) };
  }

  #outcomes(op: Op): AllowedOutcome[] {
    const done = (note: string | null = null): AllowedOutcome[] => [
      outcomeOf({ kind: "done" }, { note }),
    ];
    switch (op.op) {
      case "load":
      case "store":
      case "fetch":
        return this.#accessOutcomes(op);
      case "invlpg": {
        const v = this.#vcpu(op.vcpu);
        const mode = walkContextOf(this.cpu, v.ctl).mode;
        if (
          canonicalFault(mode, {
            la: op.la,
            kind: "read",
            cpl: 0,
            implicitSupervisor: false,
            size: 1,
          })
        ) {
          return done("non-canonical operand: INVLPG is a no-op");
        }
        const la = effectiveLa(mode, op.la);
        return [
          outcomeOf({ kind: "done" }, {
            invalidations: [{ kind: "invlpg", pcid: pcidOf(v.ctl), la }],
          }),
        ];
      }
      case "movCr3":
      case "writeCr0":
      case "writeCr4":
      case "writeEfer":
      case "writePkru":
      case "writeRflagsAc": {
        const v = this.#vcpu(op.vcpu);
        const read = (a: bigint) => this.memory.readWord(a);
        return writeControl(this.cpu, v.ctl, op, read, this.options.pdpteSource).map((w) =>
          w.kind === "gp"
            ? outcomeOf({ kind: "gp" }, { note: w.reason })
            : outcomeOf({ kind: "done" }, { control: w.next, invalidations: w.invalidations })
        );
      }
      case "dirtyLogGetAndClear": {
        const gfns = [...(this.#dirty.get(op.slot) ?? [])].sort((a, b) => (a < b ? -1 : 1));
        const note = this.#dirty.has(op.slot) ? null : "slot has no dirty logging: empty log";
        return [outcomeOf({ kind: "dirtyLog", slot: op.slot, gfns }, { note })];
      }
      case "dirtyLogEnable":
        return done(
          this.memory.slots.some((s) => s.slot === op.slot) ? null : "no such slot: ignored",
        );
      case "memslotAdd": {
        const clash = this.memory.slots.find((s) =>
          s.slot === op.slot ||
          (op.baseGfn < s.baseGfn + BigInt(s.npages) && s.baseGfn < op.baseGfn + BigInt(op.npages))
        );
        return done(clash ? `rejected: clashes with slot ${clash.slot}` : null);
      }
      case "memslotRemove":
        return done(
          this.memory.slots.some((s) => s.slot === op.slot) ? null : "no such slot: ignored",
        );
      case "hostUnmap":
      case "randomZap":
        return done("host-side only: invisible to the guest");
    }
  }

  #accessOutcomes(op: Extract<Op, { op: "load" | "store" | "fetch" }>): AllowedOutcome[] {
    const v = this.#vcpu(op.vcpu);
    const kind = op.op === "load" ? "read" : op.op === "store" ? "write" : "fetch";
    const access = { la: op.la, kind, cpl: op.cpl, implicitSupervisor: false, size: 8 } as const;
    const candidates = accessCandidates(
      this.cpu,
      this.memory,
      v,
      v.ctl,
      access,
      this.options.pdpteSource,
    );
    const pcid = pcidOf(v.ctl);
    const out: AllowedOutcome[] = [];
    for (const { via, result } of candidates) {
      if (result.kind === "gp" || result.kind === "ss") {
        out.push(outcomeOf({ kind: result.kind }, { via, walk: result }));
      } else if (result.kind === "pf") {
        for (const errorCode of [result.errorCode, ...result.alternatives]) {
          out.push(outcomeOf({ kind: "pf", errorCode, cr2: result.cr2 }, {
            via,
            walk: result,
            invalidations: [{ kind: "pf", pcid, la: result.la }],
            note: errorCode === result.errorCode
              ? null
              : "alternative error code the architecture allows",
          }));
        }
      } else {
        const writes: MemWrite[] = result.writes.map((w) => ({
          addr: w.addr,
          bytes: w.bytes,
          kind: w.bit,
          mask: w.mask,
          value: 0n,
        }));
        if (op.op === "store") {
          writes.push({ addr: result.pa, bytes: 8, kind: "store", mask: 0n, value: op.value });
        }
        const value = op.op === "store" ? null : this.#valueAfter(result.pa, writes);
        out.push(outcomeOf({ kind: "ok", gpa: result.pa, value }, { via, walk: result, writes }));
      }
    }
    return out;
  }

  /** The 8 bytes at `pa` as a load sees them: after the access's own A/D writes land. */
  #valueAfter(pa: bigint, writes: readonly MemWrite[]): bigint {
    let value = this.memory.readWord(pa);
    const slot = this.memory.slotOf(pa >> 12n);
    if (!slot || slot.readOnly) return value;
    for (const w of writes) {
      if ((w.addr & ~7n) !== (pa & ~7n)) continue;
      value |= w.bytes === 4 && (w.addr & 4n) !== 0n ? w.mask << 32n : w.mask;
    }
    return value;
  }

  /** Commits outcome `index` of `choices` (which must be the next step's choices). */
  commit(choices: StepChoices, index: number): CommittedStep {
    if (choices.step !== this.#step + 1) {
      throw new RangeError(
        `Cannot commit step ${choices.step}: the machine is at step ${this.#step}`,
      );
    }
    const outcome = choices.outcomes[index];
    if (!outcome) {
      throw new RangeError(`Cannot commit outcome ${index}: step has ${choices.outcomes.length}`);
    }
    const n = choices.step;
    for (const key of [...this.#reach.keys()]) if (key.endsWith("@now")) this.#reach.delete(key);
    this.memory.beginStep(n);
    const fates = outcome.writes.map((w) => this.#write(w));
    if (choices.vcpu !== null) {
      const v = this.#vcpu(choices.vcpu);
      const walked = outcome.walk;
      if (walked?.kind === "ok") {
        const mode = walkContextOf(this.cpu, v.ctl, this.options.pdpteSource).mode;
        v.fills.push(tlbFillOf(n, pcidOf(v.ctl), mode, walked));
      }
      if (outcome.control) {
        v.ctl = outcome.control;
        v.controls.push([n, outcome.control]);
      }
      for (const inv of outcome.invalidations) v.invalidations.push({ ...inv, t: n });
    }
    this.#host(choices.op, outcome);
    this.#step = n;
    return { choices, chosen: index, outcome, fates };
  }

  #write(w: MemWrite): WriteFate {
    const value = w.kind === "store" ? w.value : this.memory.read(w.addr, w.bytes) | w.mask;
    const fate = this.memory.write(w.addr, w.bytes, value, w.kind === "store");
    if (fate === "written") {
      const gfn = w.addr >> 12n;
      const slot = this.memory.slotOf(gfn);
      if (slot) this.#dirty.get(slot.slot)?.add(gfn);
    }
    return fate;
  }

  #host(op: Op, outcome: AllowedOutcome): void {
    if (outcome.note?.startsWith("rejected") || outcome.note?.startsWith("no such slot")) return;
    const slots = this.memory.slots;
    switch (op.op) {
      case "dirtyLogEnable":
        if (op.enable) this.#dirty.set(op.slot, this.#dirty.get(op.slot) ?? new Set());
        else this.#dirty.delete(op.slot);
        return;
      case "dirtyLogGetAndClear":
        this.#dirty.get(op.slot)?.clear();
        return;
      case "memslotAdd": {
        const slot: Memslot = {
          slot: op.slot,
          baseGfn: op.baseGfn,
          npages: op.npages,
          readOnly: op.readOnly,
        };
        this.memory.setSlots([...slots, slot].sort((a, b) => a.slot - b.slot));
        return;
      }
      case "memslotRemove":
        this.memory.setSlots(slots.filter((s) => s.slot !== op.slot));
        this.#dirty.delete(op.slot);
        return;
      default:
        return;
    }
  }

  /** The last committed step (0 before the first). */
  get committedSteps(): number {
    return this.#step;
  }

  /** Whether dirty logging is on for memslot `slot` now. */
  dirtyLogging(slot: number): boolean {
    return this.#dirty.has(slot);
  }

  /** Runs `op` and commits the first allowed outcome (the fresh walk for accesses). */
  step(op: Op): CommittedStep {
    return this.commit(this.allowed(op), 0);
  }

  /**
   * MAY_A (spec §5.2): whether the processor may have set A in the entry at `addr` during a step
   * of `vcpu`, by a speculative walk: true for any present, valid entry reachable from the current
   * root. Under `strictHardware` a rights-faulting access never sets A in its own leaf. With
   * `atStep`, the tables are read as they were at that step (a walk that started then and has not
   * finished may still set A in what it read).
   */
  accessedMayBeSet(
    vcpu: number,
    addr: bigint,
    committed?: CommittedStep,
    atStep?: number,
  ): boolean {
    const walk = committed?.outcome.walk;
    if (this.options.strictHardware && walk?.kind === "pf" && walk.reason === "rights") {
      if (walk.path[walk.path.length - 1]?.addr === addr) return false;
    }
    return this.reachableEntries(vcpu, atStep).has(addr);
  }

  /**
   * The addresses of every present, valid paging entry reachable from `vcpu`'s current root
   * (read from memory as it is, or as it was at step `atStep`): where a speculative walk may set
   * A ({@link accessedMayBeSet}). PAE PDPTE registers are not in memory and are left out.
   */
  reachableEntries(vcpu: number, atStep?: number): Set<bigint> {
    // The current tables' entries are cached until the next commit (what is written between
    // commits, A/D bits a caller adopts, does not change which entries are present); a past
    // step's for good. The control state is the current one either way.
    const key = `${vcpu}@${atStep ?? "now"}`;
    const cached = this.#reach.get(key);
    if (cached) return cached;
    const out = new Set<bigint>();
    this.#reach.set(key, out);
    const ctx = walkContextOf(this.cpu, this.#vcpu(vcpu).ctl, this.options.pdpteSource);
    const mode = ctx.mode;
    if (mode.kind === "disabled") return out;
    const bytes = mode.entryBytes;
    const seen = new Set<bigint>();
    const visit = (depth: number, base: bigint): void => {
      const level = mode.levels[depth]!;
      if (seen.has(base + BigInt(depth))) return;
      seen.add(base + BigInt(depth));
      const count = 1 << level.indexBits;
      const fromRegister = mode.kind === "pae" && depth === 0 && ctx.pdpteRegs !== null;
      // The table's page read at once; an entry whose P bit (bit 0 of its low doubleword) is
      // clear is skipped without reading it as a number.
      const page = fromRegister ? null : this.memory.pageAt(base >> 12n, atStep);
      const dwords = page ? new Uint32Array(page.buffer, page.byteOffset, 1024) : null;
      const first = Number(base & 0xfffn);
      for (let i = 0; i < count; i++) {
        const offset = first + i * bytes;
        if (dwords && (dwords[offset >> 2]! & 1) === 0) continue;
        const at = base + BigInt(i * bytes);
        const word = page ? page[offset >> 3]! : 0n;
        const value = fromRegister
          ? ctx.pdpteRegs![i]!
          : bytes === 8
          ? word
          : (offset & 4) === 0
          ? word & 0xffff_ffffn
          : word >> 32n;
        const meaning = interpretEntry(mode, level, value);
        if (!meaning.present || meaning.reservedSet !== 0n) continue;
        if (!fromRegister) out.add(at);
        if (!meaning.leaf) visit(depth + 1, meaning.base);
      }
    };
    visit(0, ctx.root);
    return out;
  }
}
