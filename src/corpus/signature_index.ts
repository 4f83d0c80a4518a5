/**
 * The divergence signatures a corpus already holds, for deduplicating imports: each case's
 * `meta.signature`, or the signature of running it when it has none (cases that pass have
 * none), keyed together with the injected bugs the case switches on ({@link dedupeKey}): two
 * bugs of the zoo may show the same symptom, and each keeps its own reproducer. Files that are
 * not valid cases are left out (`corpus check` reports them).
 *
 * @module
 */
import { InitialStateError } from "../../oracles/control_state.ts";
import { caseFilesIn, loadCaseFile } from "./load_case.ts";
import { runCase } from "./run_case.ts";

/** Dedupe keys and the file (as shown) that holds each one, first file in path order. */
export type SignatureIndex = Map<string, string>;

/** The dedupe key of a signature seen with the bugs `inject` switched on. */
export function dedupeKey(signature: string, inject: readonly string[]): string {
  return inject.length === 0 ? signature : `${signature} with ${[...inject].sort().join(",")}`;
}

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
    const key = signature === null ? null : dedupeKey(signature, loaded.case.sut.inject);
    if (key !== null && !index.has(key)) index.set(key, show(file));
  }
  return index;
}
