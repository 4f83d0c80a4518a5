/**
 * The cases of `corpus/` for tests, selected by tag: the corpus is filed by guest mode
 * (`corpus/<mode>/<slug>.json`), and what a case is for is in its tags (`smoke` for the
 * hand-written programs, `oracle` for the oracle's own hand cases, `kvm-divergence` for the
 * places where KVM, and so the SUT, differs from the architecture).
 *
 * @module
 */
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { caseFilesIn, loadCaseFile } from "../../src/corpus/load_case.ts";
import type { Case } from "../../src/model/case.ts";

/** The corpus directory of this checkout. */
export const CORPUS_DIR = fileURLToPath(new URL("../../corpus/", import.meta.url));

/** One corpus case: its path under `corpus/` (`ia32e4/invlpg-syncs-unsync-pte.json`) and case. */
export interface CorpusCase {
  readonly name: string;
  readonly file: string;
  readonly c: Case;
}

/** Every corpus case carrying `tag` (every case when `tag` is omitted), in file order. */
export function corpusCases(tag?: string): CorpusCase[] {
  return caseFilesIn([CORPUS_DIR]).flatMap((file) => {
    const l = loadCaseFile(file);
    if (!l.ok) throw new Error(l.error.message);
    if (tag !== undefined && !l.case.meta.tags.includes(tag)) return [];
    return [{ name: relative(CORPUS_DIR, file), file, c: l.case }];
  });
}

/** The corpus case at `name` (a path under `corpus/`); throws if it does not load. */
export function corpusCase(name: string): Case {
  const l = loadCaseFile(`${CORPUS_DIR}${name}`);
  if (!l.ok) throw new Error(l.error.message);
  return l.case;
}
