/**
 * Where an oracle write lands in the 8-byte words both memories are compared by.
 *
 * @module
 */
import type { MemWrite } from "../../oracles/machine.ts";

/** The bits of `w` within its 8-byte word: a 4-byte entry at offset 4 is the high half. */
export function wordMaskOf(w: MemWrite): bigint {
  return w.bytes === 4 && (w.addr & 4n) !== 0n ? w.mask << 32n : w.mask;
}
