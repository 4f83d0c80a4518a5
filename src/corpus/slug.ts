/**
 * File names for imported corpus cases: a slug of the divergence signature (readable, bounded,
 * filesystem-safe on every platform) and, when that name is taken, a numeric suffix.
 *
 * @module
 */

/** The longest slug, in characters (the suffix and `.json` come on top). */
export const SLUG_MAX = 80;

/**
 * A slug of a signature: lower-case ASCII letters, digits, `.`, `_` and `-`, no leading or
 * trailing separator, no `..`, at most {@link SLUG_MAX} characters (cut at a `-` when one is
 * near); `finding` when nothing is left.
 *
 * @example Usage
 * ```ts
 * import { slugOf } from "./slug.ts";
 * import { equal } from "node:assert/strict";
 * equal(slugOf("observation:pae:load:ok-vs-pf:reserved@PT|mech=none@walk"),
 *   "observation-pae-load-ok-vs-pf-reserved-pt-mech-none-walk");
 * equal(slugOf("::"), "finding");
 * ```
 */
export function slugOf(signature: string): string {
  const full = signature.toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/\.{2,}/g, ".")
    .replace(/^[-_.]+/, "");
  let slug = full.slice(0, SLUG_MAX);
  // Cut at a separator rather than inside a word, unless that loses too much.
  const cut = slug.lastIndexOf("-");
  if (full.length > SLUG_MAX && full[SLUG_MAX] !== "-" && cut >= SLUG_MAX / 2) {
    slug = slug.slice(0, cut);
  }
  slug = slug.replace(/[-_.]+$/, "");
  return slug === "" ? "finding" : slug;
}

/** The `n`-th candidate file name for a slug: `slug.json`, then `slug-2.json`, `slug-3.json`… */
export function candidateName(slug: string, n: number): string {
  return n <= 1 ? `${slug}.json` : `${slug}-${n}.json`;
}
