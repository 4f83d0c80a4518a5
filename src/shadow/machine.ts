/**
 * The system under test as one object: a VM (`Kvm`) with its vCPUs built from a case, running
 * the case's program op by op on the simulated CPU and reporting each step in the vocabulary
 * the oracle uses (`Observation`). Guest accesses run on the hardware model (`cpu.ts`), control
 * ops go through KVM's `kvm_set_*`, host events through `host_events.ts`.
 *
 * KVM hides PKU from the guest under shadow paging (`kvm_set_cpu_caps` clears it without TDP),
 * so a case that uses CR4.PKE is outside what this SUT runs: {@link unsupportedReason}.
 *
 * @module
 */
import type { Case } from "../model/case.ts";
import type { Observation } from "../model/observation.ts";
import type { Op } from "../model/op.ts";
import { Kvm, type KvmCpuid, SchedulerInterrupt } from "./kvm.ts";
import { KvmVcpu, type VcpuArch } from "./kvm_vcpu.ts";
import { KvmMemorySlot } from "./kvm_memslots.ts";
import {
  kvm_init_mmu,
  kvm_set_cr0,
  kvm_set_cr3,
  kvm_set_cr4,
  kvm_set_efer,
  load_pdptrs,
  vcpu_enter_guest,
} from "./x86.ts";
import { cpu_access, type CpuFailureReason, hw_linear_address } from "./cpu.ts";
import { kvm_mmu_invlpg } from "./mmu_roots.ts";
import {
  kvm_get_dirty_log_protect,
  kvm_mmu_notifier_invalidate_range,
  kvm_mmu_slot_apply_flags,
  kvm_mmu_zap_random_sp,
  kvm_set_memslot_create,
  kvm_set_memslot_delete,
} from "./host_events.ts";

/** Guest instructions shadow paging intercepts: each is a VM exit, then a VM entry. */
const INTERCEPTED: ReadonlySet<string> = new Set([
  "movCr3",
  "writeCr0",
  "writeCr4",
  "writeEfer",
  "invlpg",
]);

/** One step of the SUT: an observation, or a failure of the model to produce one. */
export type SutStep =
  | { readonly kind: "observation"; readonly observation: Observation }
  | {
    readonly kind: "failure";
    /** A CPU failure, or "exception": the model threw (a KVM BUG_ON/WARN or a model bug). */
    readonly reason: CpuFailureReason | "exception";
    readonly detail: string;
  };

/** Options of the SUT machine. */
export interface ShadowMachineOptions {
  /** Seed of the host's gfn → pfn placement (default 1). */
  readonly hostSeed?: number;
  /** Record the event log (default true; counters are always kept). */
  readonly logEvents?: boolean;
}

/** Why the SUT cannot run `c`, or null when it can. */
export function unsupportedReason(c: Case): string | null {
  const pke = c.control.cr4.pke ||
    c.program.some((op) => op.op === "writeCr4" && op.pke === true);
  if (c.cpu.features.pku && pke) {
    return "CR4.PKE: KVM hides PKU from the guest when it shadows page tables";
  }
  return null;
}

/** The initial `vcpu->arch` of a case (KVM_SET_SREGS/KVM_SET_MSRS state). */
function archOf(c: Case): VcpuArch {
  const k = c.control;
  return {
    cr0_pg: k.cr0.pg,
    cr0_wp: k.cr0.wp,
    cr3: k.cr3,
    cr4_pse: k.cr4.pse,
    cr4_pae: k.cr4.pae,
    cr4_pge: k.cr4.pge,
    cr4_smep: k.cr4.smep,
    cr4_smap: k.cr4.smap,
    cr4_pke: k.cr4.pke,
    cr4_la57: k.cr4.la57,
    cr4_pcide: k.cr4.pcide,
    efer_lme: k.efer.lme,
    efer_nx: k.efer.nxe,
    pkru: k.pkru,
    rflags_ac: k.rflagsAc,
  };
}

/** The VM and vCPUs of a case, stepping its program. */
export class ShadowMachine {
  readonly kvm: Kvm;
  #step = 0;
  /**
   * Set by the scheduler of a concurrent case: called when an op's result is final before the
   * op returns (see `Kvm.retire`; here: an op the machine runs under `mmu_lock`, before the
   * unlock).
   */
  retireHook: ((step: SutStep) => void) | null = null;

  /**
   * Builds the VM: memslots, guest RAM contents, and the vCPUs in the case's state.
   *
   * @throws {RangeError} on an unknown injected bug name, or when the SUT cannot run the case
   * @throws {Error} when the initial PAE PDPTEs cannot be loaded
   */
  constructor(c: Case, options: ShadowMachineOptions = {}) {
    const why = unsupportedReason(c);
    if (why) throw new RangeError(`the SUT cannot run this case: ${why}`);
    const f = c.cpu.features;
    const cpuid: KvmCpuid = {
      maxphyaddr: c.cpu.maxPhyAddr,
      vendor: c.cpu.vendor,
      nx: f.nx,
      pse: f.pse,
      pse36: f.pse36,
      gbpages: f.gbPages,
      smep: f.smep,
      smap: f.smap,
      la57: f.la57,
      pcid: f.pcid,
    };
    this.kvm = new Kvm({
      cpuid,
      features: c.sut.features,
      bugs: c.sut.inject,
      seed: options.hostSeed ?? 1,
      logEvents: options.logEvents ?? true,
    });
    const kvm = this.kvm;
    for (const s of c.memslots) {
      kvm.memslots.install(new KvmMemorySlot(s.slot, Number(s.baseGfn), s.npages, s.readOnly));
    }
    for (const page of c.memory) {
      const words = kvm.host.page(kvm.ram.pfnOf(Number(page.gfn)));
      for (const [index, value] of Object.entries(page.words)) words[Number(index)] = value;
    }
    for (let i = 0; i < c.vcpus; i++) {
      const vcpu = new KvmVcpu(kvm, i, archOf(c));
      kvm.vcpus.push(vcpu);
      kvm_init_mmu(vcpu);
      if (vcpu.is_pae_paging && !load_pdptrs(vcpu, vcpu.arch.cr3)) {
        throw new Error("the initial PAE PDPTEs cannot be loaded (KVM_SET_SREGS fails)");
      }
    }
  }

  /** Steps run so far. */
  get steps(): number {
    return this.#step;
  }

  #vcpu(i: number): KvmVcpu {
    const v = this.kvm.vcpus[i];
    if (!v) throw new RangeError(`Cannot use vCPU ${i}: the VM has ${this.kvm.vcpus.length}`);
    return v;
  }

  /** Runs one op; an exception inside the model becomes a failure, not a crash. */
  step(op: Op): SutStep {
    try {
      return this.#run(op);
    } catch (e: unknown) {
      if (e instanceof SchedulerInterrupt) throw e; // the scheduler's own (a retry, a stop)

      const detail = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e);
      return { kind: "failure", reason: "exception", detail };
    }
  }

  #run(op: Op): SutStep {
    // Control-register writes and host events other than the dirty-log harvest run under
    // mmu_lock as one critical section (KVM takes it inside them, around everything that
    // touches shadow state; the rest is vCPU-private state and guest memory reads). INVLPG
    // and the harvest take it where KVM does.
    const locked = op.op !== "dirtyLogGetAndClear" && op.op !== "invlpg" &&
      ("vcpu" in op ? INTERCEPTED.has(op.op) : true);
    // Such an op takes effect before the unlock (another thread may run right after it). INVLPG
    // takes effect as it starts: its per-address sync then reads gptes at least that new.
    if (op.op === "invlpg") {
      this.retireHook?.({ kind: "observation", observation: { kind: "done" } });
    }
    const r = locked
      ? this.kvm.locked(() => {
        const r = this.#execute(op);
        this.retireHook?.(r);
        return r;
      })
      : this.#execute(op);
    // MOV CR3, CR0/CR4/EFER writes and INVLPG exit to KVM (shadow paging intercepts them); the
    // VM entry after the exit services the requests they made (vcpu_enter_guest) before the
    // vCPU's next instruction, whatever that is.
    if ("vcpu" in op && INTERCEPTED.has(op.op) && r.kind !== "failure") {
      vcpu_enter_guest(this.#vcpu(op.vcpu));
    }
    return r;
  }

  #execute(op: Op): SutStep {
    this.#step++;
    this.kvm.stats.step = this.#step;
    const seen = (observation: Observation): SutStep => ({ kind: "observation", observation });
    const done = seen({ kind: "done" });
    const control = (r: "ok" | "gp"): SutStep => (r === "gp" ? seen({ kind: "gp" }) : done);
    switch (op.op) {
      case "load":
      case "store":
      case "fetch": {
        const kind = op.op === "load" ? "read" : op.op === "store" ? "write" : "fetch";
        const value = op.op === "store" ? op.value : 0n;
        const r = cpu_access(this.#vcpu(op.vcpu), { la: op.la, kind, cpl: op.cpl, value });
        switch (r.kind) {
          case "ok":
            return seen({ kind: "ok", gpa: BigInt(r.gpa), value: r.value });
          case "pf":
            return seen({ kind: "pf", errorCode: r.error_code, cr2: r.cr2 });
          case "gp":
            return seen({ kind: "gp" });
          case "failure":
            return { kind: "failure", reason: r.reason, detail: r.detail };
        }
        break;
      }
      case "invlpg": {
        const vcpu = this.#vcpu(op.vcpu);
        const gva = hw_linear_address(vcpu, op.la);
        if (gva !== null) kvm_mmu_invlpg(vcpu, gva); // is_noncanonical_invlpg_address: no-op
        return done;
      }
      case "movCr3":
        return control(kvm_set_cr3(this.#vcpu(op.vcpu), op.cr3, op.noFlush));
      case "writeCr0": {
        const a = this.#vcpu(op.vcpu).arch;
        return control(kvm_set_cr0(this.#vcpu(op.vcpu), op.pg ?? a.cr0_pg, op.wp ?? a.cr0_wp));
      }
      case "writeCr4": {
        const a = this.#vcpu(op.vcpu).arch;
        return control(kvm_set_cr4(this.#vcpu(op.vcpu), {
          pse: op.pse ?? a.cr4_pse,
          pae: op.pae ?? a.cr4_pae,
          pge: op.pge ?? a.cr4_pge,
          smep: op.smep ?? a.cr4_smep,
          smap: op.smap ?? a.cr4_smap,
          pke: op.pke ?? a.cr4_pke,
          la57: op.la57 ?? a.cr4_la57,
          pcide: op.pcide ?? a.cr4_pcide,
        }));
      }
      case "writeEfer": {
        const a = this.#vcpu(op.vcpu).arch;
        return control(
          kvm_set_efer(this.#vcpu(op.vcpu), op.lme ?? a.efer_lme, op.nxe ?? a.efer_nx),
        );
      }
      case "writePkru":
        this.#vcpu(op.vcpu).arch.pkru = op.pkru;
        return done;
      case "writeRflagsAc":
        this.#vcpu(op.vcpu).arch.rflags_ac = op.ac;
        return done;
      case "dirtyLogEnable":
        kvm_mmu_slot_apply_flags(this.kvm, op.slot, op.enable);
        return done;
      case "dirtyLogGetAndClear": {
        const gfns = kvm_get_dirty_log_protect(this.kvm, op.slot).map(BigInt);
        return seen({ kind: "dirtyLog", slot: op.slot, gfns });
      }
      case "memslotAdd":
        kvm_set_memslot_create(this.kvm, op.slot, Number(op.baseGfn), op.npages, op.readOnly);
        return done;
      case "memslotRemove":
        kvm_set_memslot_delete(this.kvm, op.slot);
        return done;
      case "hostUnmap":
        kvm_mmu_notifier_invalidate_range(this.kvm, Number(op.gfn), op.npages);
        return done;
      case "randomZap":
        kvm_mmu_zap_random_sp(this.kvm, op.pick);
        return done;
    }
  }

  /** The guest page `gfn` through the VMM's RAM backing, or null when it has none yet. */
  guestPage(gfn: number): Readonly<BigUint64Array> | null {
    if (!this.kvm.ram.isBacked(gfn)) return null;
    return this.kvm.host.page(this.kvm.ram.pfnOf(gfn));
  }

  /**
   * The guest's view of the 8 bytes at `gpa` (through the VMM's RAM backing, whatever the
   * memslots say), for comparing guest memory with the oracle's.
   */
  readGuestWord(gpa: bigint): bigint {
    const gfn = Number(gpa >> 12n);
    if (!this.kvm.ram.isBacked(gfn)) return 0n;
    return this.kvm.host.page(this.kvm.ram.pfnOf(gfn))[Number(gpa & 0xfffn) >>> 3]!;
  }
}
