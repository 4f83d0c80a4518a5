/**
 * Hexadecimal helpers for 64-bit values at the JSON edge.
 *
 * JSON numbers lose bits above 2^53, so every 64-bit quantity in a case or a report travels as a
 * `"0x…"` string and becomes a `bigint` in memory.
 *
 * @module
 */

/** The pattern a 64-bit hex string must match: `0x` and 1 to 16 hex digits. */
export const HEX64_PATTERN = /^0x[0-9a-fA-F]{1,16}$/;

/** 2^64 - 1, the largest 64-bit value. */
export const U64_MAX = (1n << 64n) - 1n;

/**
 * Formats a non-negative bigint as lower-case `0x…` hex, the form every report uses.
 *
 * @example Basic usage
 * ```ts
 * import { hex } from "./hex.ts";
 * import { equal } from "node:assert/strict";
 * equal(hex(0x1000n), "0x1000");
 * ```
 */
export function hex(value: bigint): string {
  if (value < 0n) throw new RangeError(`Cannot format negative value as hex: ${value}`);
  return `0x${value.toString(16)}`;
}

/**
 * Parses a `0x…` string of at most 16 hex digits into a bigint.
 *
 * @throws {SyntaxError} when the text is not such a string
 */
export function parseHex64(text: string): bigint {
  if (!HEX64_PATTERN.test(text)) {
    throw new SyntaxError(
      `Cannot parse 64-bit hex value: "${text}" is not 0x followed by 1-16 hex digits`,
    );
  }
  return BigInt(text);
}
