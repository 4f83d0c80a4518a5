/**
 * The divergence signatures a corpus already holds, for deduplicating imports: each case's
 * `meta.signature`, or the signature of running it when it has none (cases that pass have
 * none). Files that are not valid cases are left out (`corpus check` reports them).
 *
 * @module
 */
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, loadCaseFile } from "./load_case.ts";
import { runCase } from "./run_case.ts";

/** Signatures and the file (as shown) that holds each one, first file in path order. */
export type SignatureIndex = Map<string, string>;

/** The signatures of the cases under `dir` (see the module doc). */
export function signatureIndex(
  dir: string,
  show: (path: string) => string = (p) => p,
): SignatureIndex {
  const index: SignatureIndex = new Map();
  for (const file of caseFilesIn([dir])) {
    const loaded = loadCaseFile(file);
    if (!loaded.ok) continue;
    let signature = loaded.case.meta.signature ?? null;
    if (signature === null) {
      try {
        const v = runCase(loaded.case);
        if (v.status === "divergence") signature = v.signature;
      } catch (e: unknown) {
        if (!(e instanceof InitialStateError)) throw e;
      }
    }
    if (signature !== null && !index.has(signature)) index.set(signature, show(file));
  }
  return index;
}
