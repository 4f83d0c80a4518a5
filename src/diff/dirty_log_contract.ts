/**
 * The dirty-log rule of a concurrent case. In a sequential case the oracle names the gfns a
 * harvest must report: those written since the last one. With threads, a write that completes
 * while a harvest is in flight may land before or after the harvest takes the bitmap, and a
 * write whose KVM-side marking (a gpte A/D update, a fast-path W) happened before a harvest may
 * complete after it. So each write W (the pages the oracle committed for it, in a slot logged at
 * its completion) is owed by an interval rule:
 *
 * - a harvest H of W's slot that ends after W started and reports W's page settles it;
 * - a harvest H that starts after W completed must report it, unless it was settled already.
 *
 * This is KVM's promise to userspace: a page written before `KVM_GET_DIRTY_LOG` is called is
 * in that log or in an earlier one taken while the write was in flight.
 *
 * @module
 */
import type { CommittedStep, ReferenceMachine } from "../../oracles/machine.ts";
import { hex } from "../model/hex.ts";
import type { Op } from "../model/op.ts";
import type { Completion } from "../shadow/scheduler.ts";
import { wordMaskOf } from "./mem_write.ts";

interface Owed {
  readonly slot: number;
  readonly gfn: bigint;
  /** For an A/D write: the 8-byte word and the bits (a store: null). */
  readonly bits: { readonly word: bigint; readonly mask: bigint } | null;
  readonly index: number;
  readonly started: number;
  readonly completed: number;
}

/** The pages owed to future harvests. */
export class DirtyLogContract {
  #owed: Owed[] = [];

  /** Records what op `done` wrote (after the oracle committed it). */
  note(oracle: ReferenceMachine, op: Op, committed: CommittedStep, done: Completion): void {
    if (op.op === "dirtyLogEnable" && !op.enable) this.#drop(op.slot);
    if (op.op === "memslotRemove") this.#drop(op.slot);
    committed.outcome.writes.forEach((w, i) => {
      if (committed.fates[i] !== "written") return;
      const gfn = w.addr >> 12n;
      const slot = oracle.memory.slotOf(gfn);
      if (!slot || !oracle.dirtyLogging(slot.slot)) return;
      const { index, started, completed } = done;
      const bits = w.kind === "store" ? null : { word: w.addr & ~7n, mask: wordMaskOf(w) };
      this.#owed.push({ slot: slot.slot, gfn, bits, index, started, completed });
    });
  }

  /**
   * Judges harvest `done` of `slot` that reported `gfns`: null, or what it misses. An A/D write
   * the oracle committed but the SUT's memory (`sutWord`) does not show is not owed here: the
   * SUT did not make it, and the memory comparison reports that.
   */
  harvest(
    slot: number,
    gfns: readonly bigint[],
    done: Completion,
    sutWord: (gpa: bigint) => bigint,
  ): string | null {
    const reported = new Set(gfns);
    this.#owed = this.#owed.filter((w) =>
      !(w.slot === slot && reported.has(w.gfn) && done.completed > w.started)
    );
    const made = (w: Owed) => !w.bits || (sutWord(w.bits.word) & w.bits.mask) === w.bits.mask;
    const missed = this.#owed.filter((w) =>
      w.slot === slot && w.completed < done.started && made(w)
    );
    if (missed.length === 0) return null;
    const what = missed.map((w) => `gfn ${hex(w.gfn)} (op ${w.index + 1})`).join(", ");
    return `the dirty log misses ${what}, written before the harvest started`;
  }

  #drop(slot: number): void {
    this.#owed = this.#owed.filter((w) => w.slot !== slot);
  }
}
