/**
 * `deno task schema`: writes the JSON Schema of the case format to `corpus/case.schema.json`.
 *
 * The schema is generated from the zod definition in `src/model/case.ts` (input side: what a
 * case file holds, so 64-bit values are `"0x…"` strings and fields with defaults are optional).
 * It describes the shape of a case for editors and other tools; what JSON Schema cannot say
 * (8-byte aligned addresses, gfns below 2^40, word indices below 512, and the semantic checks
 * such as non-overlapping memslots) is left to the harness, which stays the authority.
 * `tests/corpus/schema_test.ts` fails when the committed file is out of date.
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { Case, CASE_FORMAT, CASE_VERSION } from "../model/case.ts";

/** Where the generated schema lives, relative to the repository root. */
export const CASE_SCHEMA_PATH = "corpus/case.schema.json";

/** The JSON Schema (draft 2020-12) of a case file, as `deno task schema` writes it. */
export function caseJsonSchema(): object {
  const { $schema, ...rest } = z.toJSONSchema(Case, { io: "input" });
  return {
    $schema,
    $id: `urn:shadow-mmu-harness:${CASE_FORMAT}:v${CASE_VERSION}`,
    title: `${CASE_FORMAT} version ${CASE_VERSION}`,
    description: "One differential test case for x86 shadow MMUs: CPU model, initial control " +
      'state, sparse guest memory, memslots and program. Every 64-bit value is a "0x…" hex ' +
      "string. Generated from src/model/case.ts by `deno task schema`; do not edit. Checks " +
      "JSON Schema cannot express (8-byte aligned access addresses, gfns below 2^40, word " +
      "indices below 512, non-overlapping memslots, control bits the CPU model has, vCPU " +
      "indices in range) are made by the harness when it loads a case.",
    ...rest,
  };
}

/** The schema as file text: 2-space indent, trailing newline. */
export function caseJsonSchemaText(): string {
  return JSON.stringify(caseJsonSchema(), null, 2) + "\n";
}

if (import.meta.main) {
  const out = fileURLToPath(new URL(`../../${CASE_SCHEMA_PATH}`, import.meta.url));
  writeFileSync(out, caseJsonSchemaText());
  console.log(`wrote ${CASE_SCHEMA_PATH}`);
}
