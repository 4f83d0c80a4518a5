/**
 * Architectural bit positions and masks, named as in the Intel SDM vol. 3A ch. 4.
 *
 * These are the oracle's own copies. The system under test keeps KVM-named copies in
 * `src/shadow/`; the two are written twice on purpose (the independence rule).
 *
 * @module
 */

/** `bit(n)`: the 64-bit value with only bit n set. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

/** `bits(h, l)`: the mask with bits h..l set; 0 when h < l (spec §0.1). */
export function bits(h: number, l: number): bigint {
  if (h < l) return 0n;
  return ((1n << BigInt(h - l + 1)) - 1n) << BigInt(l);
}

/** Present (bit 0). */
export const PTE_P = bit(0);
/** Read/write (bit 1). */
export const PTE_RW = bit(1);
/** User/supervisor (bit 2). */
export const PTE_US = bit(2);
/** Accessed (bit 5). */
export const PTE_A = bit(5);
/** Dirty (bit 6, leaves only). */
export const PTE_D = bit(6);
/** Page size (bit 7 of a PDE or PDPTE). */
export const PTE_PS = bit(7);
/** Global (bit 8, leaves only). */
export const PTE_G = bit(8);
/** Execute-disable (bit 63, with EFER.NXE in PAE and IA-32e paging). */
export const PTE_XD = bit(63);

/** #PF error code: the fault was not caused by a non-present page. */
export const PFEC_P = 1 << 0;
/** #PF error code: the access was a write. */
export const PFEC_W = 1 << 1;
/** #PF error code: the access was a user-mode access. */
export const PFEC_U = 1 << 2;
/** #PF error code: a reserved bit was set in a paging-structure entry. */
export const PFEC_RSVD = 1 << 3;
/** #PF error code: the access was an instruction fetch (I/D). */
export const PFEC_ID = 1 << 4;
/** #PF error code: protection-key violation. */
export const PFEC_PK = 1 << 5;

/** Page-size log2 of the page a leaf maps. */
export type PageShift = 12 | 21 | 22 | 30;
