/**
 * What a corpus case says about its own verdict, and the runs that check it.
 *
 * A case must pass, unless it documents a divergence: it carries the tag `expect:divergence` (a
 * place where KVM, and so the SUT, differs from the architecture), or it switches on injected
 * bugs (`sut.inject`), and then it must diverge. A case tied to an injected bug must also show
 * that the bug is what makes it diverge:
 *
 * - with `sut.inject` non-empty, the case with `sut.inject` emptied must pass (or diverge, when
 *   it is also tagged `expect:divergence`);
 * - a tag `bug:NAME` (a program aimed at an injected bug, run without it) means the case with
 *   bug `NAME` switched on must diverge.
 *
 * @module
 */
import type { Case } from "../model/case.ts";
import { jsonPath } from "../model/json_path.ts";
import { EXPECT_DIVERGENCE } from "../diff/replay.ts";
import { INJECTED_BUGS } from "../shadow/bugs.ts";
import type { CaseProblem } from "./load_case.ts";

/** The tag prefix that ties a case to an injected bug it is aimed at. */
export const BUG_TAG = "bug:";

/** One run that checks a case: which bugs are on, and what the run must give. */
export interface PlannedRun {
  /** What the run is, for a reader: "as written", "without sut.inject", "with bug NAME". */
  readonly label: string;
  /** `sut.inject` for the run. */
  readonly inject: readonly string[];
  /** The verdict the run must give. */
  readonly expect: "pass" | "divergence";
}

/** The runs a case needs, or the problems with its tags. */
export type Expectation =
  | { ok: true; runs: readonly PlannedRun[] }
  | { ok: false; problems: readonly CaseProblem[] };

/** True if the case as written must diverge (tagged `expect:divergence`, or bugs injected). */
export function expectsDivergence(c: Case): boolean {
  return c.sut.inject.length > 0 || c.meta.tags.includes(EXPECT_DIVERGENCE);
}

/** Names of the bugs a case is tied to: its `sut.inject` and its `bug:NAME` tags, sorted. */
export function bugsOf(c: Case): string[] {
  const tagged = c.meta.tags.filter((t) => t.startsWith(BUG_TAG)).map((t) => t.slice(4));
  return [...new Set([...c.sut.inject, ...tagged])].sort();
}

/**
 * The runs that check a case (the first is always the case as written; see the module doc).
 * A `bug:NAME` tag naming no injected bug is a problem at its JSON path.
 *
 * @example An injected bug is checked on and off
 * ```ts
 * import { expectationOf } from "./expectation.ts";
 * import { Case } from "../model/case.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const c = Case.parse({
 *   format: "shadow-mmu-case", version: 1,
 *   cpu: { maxPhyAddr: 36, features: { nx: false, pse: false, pse36: false, gbPages: false,
 *     smep: false, smap: false, pku: false, la57: false, pcid: false } },
 *   control: { cr0: { pg: false, wp: false }, cr3: "0x0", cr4: { pse: false, pae: false,
 *     pge: false, smep: false, smap: false, pke: false, la57: false, pcide: false },
 *     efer: { lme: false, nxe: false } },
 *   memslots: [], program: [], sut: { inject: ["invlpg_no_sync"] },
 * });
 * const e = expectationOf(c);
 * deepStrictEqual(e.ok && e.runs.map((r) => [r.label, r.expect]), [
 *   ["as written", "divergence"],
 *   ["without sut.inject", "pass"],
 * ]);
 * ```
 */
export function expectationOf(c: Case): Expectation {
  const known = new Set<string>(INJECTED_BUGS.map((b) => b.name));
  const problems: CaseProblem[] = [];
  const tagged: string[] = [];
  c.meta.tags.forEach((tag, i) => {
    if (!tag.startsWith(BUG_TAG)) return;
    const name = tag.slice(BUG_TAG.length);
    if (known.has(name)) tagged.push(name);
    else {
      problems.push({
        path: jsonPath(["meta", "tags", i]),
        message: `tag names an unknown injected bug "${name}"; known: ${[...known].join(", ")}`,
      });
    }
  });
  if (problems.length > 0) return { ok: false, problems };
  const documented = c.meta.tags.includes(EXPECT_DIVERGENCE);
  const runs: PlannedRun[] = [{
    label: "as written",
    inject: c.sut.inject,
    expect: expectsDivergence(c) ? "divergence" : "pass",
  }];
  if (c.sut.inject.length > 0) {
    runs.push({
      label: "without sut.inject",
      inject: [],
      expect: documented ? "divergence" : "pass",
    });
  }
  for (const name of [...new Set(tagged)].sort()) {
    if (c.sut.inject.includes(name)) continue; // the as-written run has it on already
    runs.push({ label: `with bug ${name}`, inject: [...c.sut.inject, name], expect: "divergence" });
  }
  return { ok: true, runs };
}
