/**
 * The guest mode a corpus case is filed under: its `mode:<mode>` tag, as the fuzz generator and
 * the hand-written cases set it, or else the paging mode of its initial state.
 *
 * @module
 */
import type { Case } from "../model/case.ts";

/** The tag prefix naming a case's guest mode. */
export const MODE_TAG = "mode:";

/**
 * The paging mode of a case's initial control state (SDM 3A §4.1.1): `disabled`, `legacy32`,
 * `pae`, `ia32e4` or `ia32e5`.
 */
export function initialPagingMode(c: Case): string {
  const { cr0, cr4, efer } = c.control;
  if (!cr0.pg) return "disabled";
  if (!cr4.pae) return "legacy32";
  if (!efer.lme) return "pae";
  return cr4.la57 ? "ia32e5" : "ia32e4";
}

/** The mode of a `mode:` tag, or null when the case has none. */
export function taggedMode(c: Case): string | null {
  return c.meta.tags.find((t) => t.startsWith(MODE_TAG))?.slice(MODE_TAG.length) ?? null;
}

/** Sets the case's `mode:` tag to `mode`, in place of any other, keeping the tags' order. */
export function withModeTag(tags: readonly string[], mode: string): string[] {
  const at = tags.findIndex((t) => t.startsWith(MODE_TAG));
  const rest = tags.filter((t) => !t.startsWith(MODE_TAG));
  rest.splice(at < 0 ? 0 : at, 0, `${MODE_TAG}${mode}`);
  return rest;
}
