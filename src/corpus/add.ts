/**
 * `corpus add`: imports findings (the case files `deno task fuzz` writes) into the corpus.
 *
 * Each input, in order: it is validated; run on both sides to get its divergence signature (an
 * input that does not diverge is skipped: there is nothing to keep); skipped as a duplicate when
 * the corpus (`signature_index.ts`) or an earlier input already has that signature; minimized
 * with the same signature (`minimizeCase`, a budget per file), and rid of injected bugs it does
 * not need; given its provenance (`meta.found`: `by` "minimize" when minimizing changed a found
 * case, the seed and generator it came with, the import date in UTC, the fast-check version),
 * its signature, a `mode:<mode>` tag and notes on the divergence; and written to
 * `<corpus>/<mode>/<slug>.json` atomically, never over an existing file (a numeric suffix
 * instead).
 *
 * A finding from an unmodified SUT diverges, so it is a regression case only when the
 * divergence is documented: a signature of a triaged KVM divergence (`knownDivergenceOf`) gets
 * the tags `kvm-divergence` and `expect:divergence`; any other is imported all the same, with a warning that it fails
 * `corpus check` until the bug is fixed. The new case is checked as `corpus check` would.
 *
 * @module
 */
import { basename, join } from "node:path";
import { InitialStateError } from "../../oracles/control_state.ts";
import {
  type KnownDivergence,
  knownDivergenceOf,
  KVM_DIVERGENCE,
} from "../diff/known_divergences.ts";
import { EXPECT_DIVERGENCE } from "../diff/replay.ts";
import { FAST_CHECK_VERSION, FUZZ_GENERATOR } from "../gen/fuzz_case.ts";
import type { Case } from "../model/case.ts";
import { type CaseSize, minimizeCase, signatureOf } from "../minimize/minimize.ts";
import { checkCase, failureLine } from "./check.ts";
import { type CaseProblem, encodeCase, loadCaseFile, parseCase } from "./load_case.ts";
import { initialPagingMode, withModeTag } from "./mode.ts";
import { runCase } from "./run_case.ts";
import { dedupeKey, signatureIndex } from "./signature_index.ts";
import { candidateName, slugOf } from "./slug.ts";
import { writeNewFile } from "./write_new.ts";

/** Options of {@link addFindings}. */
export interface AddOptions {
  /** The corpus directory (cases are written to `<to>/<mode>/`). */
  readonly to: string;
  /** Minimizer budget per file, in milliseconds. */
  readonly budgetMs: number;
  /** The import date, `yyyy-mm-dd` (default: today in UTC). */
  readonly today?: string;
  /** The triaged divergence a signature belongs to (default `knownDivergenceOf`). */
  readonly knownOf?: (signature: string) => KnownDivergence | null;
  /** How a path is shown in results (default: as is). */
  readonly show?: (path: string) => string;
  /** Called with each result as soon as it is known. */
  readonly onResult?: (r: AddResult) => void;
}

/** What happened to one input. */
export type AddResult =
  | {
    readonly file: string;
    readonly status: "added";
    /** The corpus file written, as shown. */
    readonly to: string;
    readonly signature: string;
    /** The key it is deduplicated by: the signature and the injected bugs it keeps. */
    readonly key: string;
    /** The triaged divergence it shows (then tagged `kvm-divergence`, `expect:divergence`), or null. */
    readonly known: string | null;
    readonly before: CaseSize;
    readonly after: CaseSize;
    /** The minimizer ran out of budget before a fixed point. */
    readonly exhausted: boolean;
    /** Why `corpus check` will not accept the case (null: it will). */
    readonly warning: string | null;
  }
  | {
    readonly file: string;
    readonly status: "duplicate";
    readonly signature: string;
    /** The corpus file or earlier input that has the signature, as shown. */
    readonly of: string;
  }
  | { readonly file: string; readonly status: "skipped"; readonly reason: string }
  /** The harness failed on it (a harness bug): nothing was written. */
  | { readonly file: string; readonly status: "failed"; readonly reason: string }
  | { readonly file: string; readonly status: "invalid"; readonly problems: CaseProblem[] };

/** Today's date in UTC, `yyyy-mm-dd`. */
export function todayUtc(): string {
  return new Date().toISOString().slice(0, 10);
}

/** Imports the findings `files` into the corpus (see the module doc). */
export function addFindings(files: readonly string[], options: AddOptions): AddResult[] {
  const show = options.show ?? ((p: string) => p);
  const knownOf = options.knownOf ?? knownDivergenceOf;
  const today = options.today ?? todayUtc();
  const index = signatureIndex(options.to, show);
  const results: AddResult[] = [];
  for (const path of files) {
    let r: AddResult;
    try {
      r = addOne(path, show(path), { ...options, today, knownOf }, index);
    } catch (e: unknown) {
      // A harness failure while minimizing or writing: report it, go on with the others.
      const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
      r = { file: show(path), status: "failed", reason: why ?? "" };
    }
    results.push(r);
    if (r.status === "added") index.set(r.key, r.to);
    options.onResult?.(r);
  }
  return results;
}

interface Resolved {
  readonly to: string;
  readonly budgetMs: number;
  readonly today: string;
  readonly knownOf: (signature: string) => KnownDivergence | null;
  readonly show?: (path: string) => string;
}

function addOne(
  path: string,
  file: string,
  options: Resolved,
  index: Map<string, string>,
): AddResult {
  const loaded = loadCaseFile(path);
  if (!loaded.ok) return { file, status: "invalid", problems: [...loaded.error.problems] };
  const input = loaded.case;
  let signature: string;
  try {
    const v = runCase(input);
    if (v.status === "pass" || v.status === "unsupported") {
      const why = v.status === "pass" ? "passes" : `is unsupported (${v.reason})`;
      return { file, status: "skipped", reason: `does not diverge: it ${why} on this SUT` };
    }
    signature = v.status === "divergence" ? v.signature : signatureOf(input);
  } catch (e: unknown) {
    if (!(e instanceof InitialStateError)) throw e;
    return { file, status: "invalid", problems: [{ path: e.path, message: e.message }] };
  }
  const of = index.get(dedupeKey(signature, input.sut.inject));
  if (of !== undefined) return { file, status: "duplicate", signature, of };

  const m = minimizeCase(input, { budgetMs: options.budgetMs, signature });
  const known = options.knownOf(signature);
  const c = withProvenance(
    withoutIdleBugs(m.case, signature),
    input,
    signature,
    known,
    options.today,
  );
  const after = runCase(c);
  c.meta.notes = notesOf(basename(path), m, known, after.status === "divergence" ? after : null);
  const text = encodeCase(c);
  const reparsed = parseCase(text, file);
  if (!reparsed.ok) throw new Error(`the imported case does not load:\n${reparsed.error.message}`);
  const check = checkCase(reparsed.case, file);
  const warning = check.status === "pass" || check.status === "expected"
    ? null
    : `${failureLine(check) ?? check.status}: it fails \`corpus check\` until the bug is fixed` +
      (known === null ? " (not a known divergence)" : "");
  const mode = initialPagingMode(c);
  const written = writeNewFile(
    join(options.to, mode),
    (n) => candidateName(slugOf(signature), n),
    text,
  );
  return {
    file,
    status: "added",
    to: (options.show ?? ((p: string) => p))(written),
    signature,
    key: dedupeKey(signature, c.sut.inject),
    known: known?.id ?? null,
    before: m.before,
    after: m.after,
    exhausted: m.exhausted,
    warning,
  };
}

/**
 * The case without the injected bugs it does not need to diverge with `signature` (a fuzz run
 * with `--inject A --inject B` puts both in every case; most findings need one).
 */
function withoutIdleBugs(c: Case, signature: string): Case {
  let inject = [...c.sut.inject];
  for (const bug of c.sut.inject) {
    const fewer = inject.filter((b) => b !== bug);
    if (signatureOf({ ...c, sut: { ...c.sut, inject: fewer } }) === signature) inject = fewer;
  }
  return inject.length === c.sut.inject.length ? c : { ...c, sut: { ...c.sut, inject } };
}

/** The minimized case with its provenance, signature and tags (see the module doc). */
function withProvenance(
  minimized: Case,
  input: Case,
  signature: string,
  known: KnownDivergence | null,
  today: string,
): Case {
  const c = structuredClone(minimized);
  const changed = encodeCase(minimized) !== encodeCase(input);
  const found = input.meta.found;
  const fastCheck = found.fastCheck ??
    (found.generator === FUZZ_GENERATOR ? FAST_CHECK_VERSION : undefined);
  c.meta.found = {
    by: changed && found.by !== "hand" ? "minimize" : found.by,
    ...(found.seed === undefined ? {} : { seed: found.seed }),
    ...(found.generator === undefined ? {} : { generator: found.generator }),
    date: found.date ?? today,
    ...(fastCheck === undefined ? {} : { fastCheck }),
  };
  c.meta.signature = signature;
  const tags = withModeTag(input.meta.tags, initialPagingMode(c));
  // A triaged KVM divergence: documented (and checked to diverge) like the hand-made ones.
  for (const t of known === null ? [] : [KVM_DIVERGENCE, EXPECT_DIVERGENCE]) {
    if (!tags.includes(t)) tags.push(t);
  }
  c.meta.tags = tags;
  if (c.meta.title === "") c.meta.title = signature;
  return c;
}

function notesOf(
  source: string,
  m: { before: CaseSize; after: CaseSize; exhausted: boolean },
  known: KnownDivergence | null,
  divergence: { step: number; kind: string; detail: string } | null,
): string {
  const { before: b, after: a } = m;
  const parts = [
    `Imported from ${source}: minimized from ${b.ops} ops to ${a.ops}, ${b.pages} pages to ` +
    `${a.pages}, ${b.words} entries to ${a.words}${
      m.exhausted ? " (budget spent before a fixed point)" : ""
    }.`,
  ];
  if (divergence !== null) {
    parts.push(
      `${divergence.kind} divergence at step ${divergence.step}: ${divergence.detail}`,
    );
  }
  if (known !== null) parts.push(`Known divergence ${known.id}: ${known.explanation}.`);
  return parts.join(" ");
}
