/**
 * The oracle's guest memory with history: reading a whole page at a time gives what reading
 * each word at that time gives (the reachable-entries scan of the TLB model relies on it).
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory } from "../../oracles/guest_memory.ts";

const SLOTS = [{ slot: 0, baseGfn: 0x10n, npages: 2, readOnly: false }];

Deno.test("guest memory: pageAt(gfn, t) is readWordAt of each word at t, now and in the past", () => {
  const write = fc.record({
    gfn: fc.constantFrom(0x10n, 0x11n, 0x12n),
    word: fc.integer({ min: 0, max: 7 }),
    half: fc.constantFrom(0, 4, 8),
    value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  });
  fc.assert(
    fc.property(fc.array(fc.array(write, { maxLength: 3 }), { maxLength: 6 }), (steps) => {
      const m = new GuestMemory({
        memory: [{ gfn: 0x10n, words: { 1: 0x1234n } }],
        memslots: SLOTS,
      });
      steps.forEach((writes, i) => {
        m.beginStep(i + 1);
        for (const w of writes) {
          const addr = (w.gfn << 12n) + BigInt(w.word * 8 + (w.half === 4 ? 4 : 0));
          m.write(
            addr,
            w.half === 8 ? 8 : 4,
            w.value & (w.half === 8 ? 2n ** 64n - 1n : 0xffff_ffffn),
          );
        }
      });
      for (const gfn of [0x10n, 0x11n, 0x12n]) {
        for (const t of [undefined, ...steps.map((_, i) => i), steps.length]) {
          const page = m.pageAt(gfn, t);
          for (let i = 0; i < 8; i++) {
            const addr = (gfn << 12n) + BigInt(i * 8);
            equal(page[i], t === undefined ? m.readWord(addr) : m.readWordAt(addr, t));
          }
        }
      }
    }),
  );
});

Deno.test("guest memory: a page outside every memslot reads as zeros, as its words do", () => {
  const m = new GuestMemory({ memory: [{ gfn: 0x20n, words: { 0: 0x21n } }], memslots: SLOTS });
  deepStrictEqual([...m.pageAt(0x20n).slice(0, 2)], [0n, 0n]);
  equal(m.readWord(0x20000n), 0n);
  equal(m.pageAt(0x10n, 0)[1], 0n);
});
