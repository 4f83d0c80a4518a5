/**
 * The program a case runs: guest operations, control-register writes and host events.
 *
 * Every op names the vCPU that executes it (`vcpu`, default 0). Host events act on the VM and
 * have no vCPU. Linear addresses are 64-bit hex strings; outside IA-32e mode only their low 32
 * bits are used (SDM 3A §4.1: linear addresses are 32 bits wide there).
 *
 * @module
 */
import { z } from "zod";
import { hex, HEX64_PATTERN } from "./hex.ts";

/** A 64-bit value carried as a `"0x…"` string in JSON and as a `bigint` in memory. */
export const Hex64 = z.codec(
  z.string().regex(HEX64_PATTERN, 'expected a 64-bit hex string such as "0x1000"'),
  z.bigint(),
  { decode: (text) => BigInt(text), encode: (value) => hex(value) },
);

/** A linear address of an 8-byte access: 64-bit hex, 8-byte aligned (so no access crosses a page). */
export const AccessAddress = Hex64.refine((la) => (la & 7n) === 0n, {
  message: "expected an 8-byte aligned linear address",
});

/** The vCPU that executes an op. */
const Vcpu = z.int().min(0).max(63).default(0);
/** Current privilege level of an access: 0 (supervisor) or 3 (user). */
export const Cpl = z.union([z.literal(0), z.literal(3)]);
/** A memslot id. */
const SlotId = z.int().min(0).max(32767);
/** A guest frame number: a guest-physical address shifted right by 12 (at most 40 bits). */
export const Gfn = Hex64.refine((gfn) => gfn < 1n << 40n, {
  message: "expected a guest frame number below 2^40 (MAXPHYADDR 52)",
});

/** Guest data read of 8 bytes at `la`. */
export const LoadOp = z.strictObject({
  op: z.literal("load"),
  vcpu: Vcpu,
  la: AccessAddress,
  cpl: Cpl,
});
/** Guest data write of the 8-byte `value` at `la`. */
export const StoreOp = z.strictObject({
  op: z.literal("store"),
  vcpu: Vcpu,
  la: AccessAddress,
  cpl: Cpl,
  value: Hex64,
});
/** Guest instruction fetch of 8 bytes at `la`. */
export const FetchOp = z.strictObject({
  op: z.literal("fetch"),
  vcpu: Vcpu,
  la: AccessAddress,
  cpl: Cpl,
});
/** INVLPG `la` (any address; a non-canonical operand is a no-op). */
export const InvlpgOp = z.strictObject({ op: z.literal("invlpg"), vcpu: Vcpu, la: Hex64 });
/**
 * MOV to CR3. With CR4.PCIDE=1, bits 11:0 of `cr3` are the PCID and `noFlush` is the operand's
 * bit 63 (not stored in CR3). With PCIDE=0 `noFlush` must be false: bit 63 is then reserved.
 */
export const MovCr3Op = z.strictObject({
  op: z.literal("movCr3"),
  vcpu: Vcpu,
  cr3: Hex64,
  noFlush: z.boolean().default(false),
});
/** MOV to CR0: the bits given change, the others keep their value. */
export const WriteCr0Op = z.strictObject({
  op: z.literal("writeCr0"),
  vcpu: Vcpu,
  pg: z.boolean().optional(),
  wp: z.boolean().optional(),
});
/** MOV to CR4: the bits given change, the others keep their value. */
export const WriteCr4Op = z.strictObject({
  op: z.literal("writeCr4"),
  vcpu: Vcpu,
  pse: z.boolean().optional(),
  pae: z.boolean().optional(),
  pge: z.boolean().optional(),
  smep: z.boolean().optional(),
  smap: z.boolean().optional(),
  pke: z.boolean().optional(),
  la57: z.boolean().optional(),
  pcide: z.boolean().optional(),
});
/** WRMSR to IA32_EFER: the bits given change, the others keep their value. LMA is derived. */
export const WriteEferOp = z.strictObject({
  op: z.literal("writeEfer"),
  vcpu: Vcpu,
  lme: z.boolean().optional(),
  nxe: z.boolean().optional(),
});
/** A write of the 32-bit PKRU register (as WRPKRU or XRSTOR would do it). */
export const WritePkruOp = z.strictObject({
  op: z.literal("writePkru"),
  vcpu: Vcpu,
  pkru: z.int().min(0).max(0xffff_ffff),
});
/** STAC/CLAC/POPF: set RFLAGS.AC. */
export const WriteRflagsAcOp = z.strictObject({
  op: z.literal("writeRflagsAc"),
  vcpu: Vcpu,
  ac: z.boolean(),
});

/** Host: turn dirty logging of a memslot on or off. */
export const DirtyLogEnableOp = z.strictObject({
  op: z.literal("dirtyLogEnable"),
  slot: SlotId,
  enable: z.boolean().default(true),
});
/** Host: KVM_GET_DIRTY_LOG with clear: returns the slot's dirty bitmap and re-protects it. */
export const DirtyLogGetAndClearOp = z.strictObject({
  op: z.literal("dirtyLogGetAndClear"),
  slot: SlotId,
});
/** Host: add a memslot (gfns it covers stop being MMIO). */
export const MemslotAddOp = z.strictObject({
  op: z.literal("memslotAdd"),
  slot: SlotId,
  baseGfn: Gfn,
  npages: z.int().min(1).max(1 << 20),
  readOnly: z.boolean().default(false),
});
/** Host: remove a memslot (its gfns become MMIO). */
export const MemslotRemoveOp = z.strictObject({ op: z.literal("memslotRemove"), slot: SlotId });
/** Host: unmap a gfn range from the host side (an mmu-notifier invalidation). */
export const HostUnmapOp = z.strictObject({
  op: z.literal("hostUnmap"),
  gfn: Gfn,
  npages: z.int().min(1).max(1 << 20),
});
/** Host: zap one shadow page chosen by `pick` modulo the number of shadow pages. */
export const RandomZapOp = z.strictObject({
  op: z.literal("randomZap"),
  pick: z.int().min(0).max(0xffff_ffff),
});

/** One step of a program. */
export const Op = z.discriminatedUnion("op", [
  LoadOp,
  StoreOp,
  FetchOp,
  InvlpgOp,
  MovCr3Op,
  WriteCr0Op,
  WriteCr4Op,
  WriteEferOp,
  WritePkruOp,
  WriteRflagsAcOp,
  DirtyLogEnableOp,
  DirtyLogGetAndClearOp,
  MemslotAddOp,
  MemslotRemoveOp,
  HostUnmapOp,
  RandomZapOp,
]);

/** A decoded op. */
export type Op = z.output<typeof Op>;
/** The op kinds. */
export type OpKind = Op["op"];
/** The guest accesses. */
export type AccessOp = Extract<Op, { op: "load" | "store" | "fetch" }>;
/** Every op kind, in schema order. */
export const OP_KINDS: readonly OpKind[] = Op.options.map((o) => o.shape.op.value);
/** Op kinds that are host events (no vCPU). */
export const HOST_EVENT_KINDS: readonly OpKind[] = [
  "dirtyLogEnable",
  "dirtyLogGetAndClear",
  "memslotAdd",
  "memslotRemove",
  "hostUnmap",
  "randomZap",
];
