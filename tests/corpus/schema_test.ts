/**
 * The committed JSON Schema of the case format (`corpus/case.schema.json`) matches the zod
 * definition, and says the essentials: the required top-level fields and hex-string patterns.
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { CASE_SCHEMA_PATH, caseJsonSchema } from "../../src/cli/schema.ts";
import { HEX64_PATTERN } from "../../src/model/hex.ts";

const SCHEMA_FILE = fileURLToPath(new URL(`../../${CASE_SCHEMA_PATH}`, import.meta.url));

interface JsonSchemaNode {
  type?: string;
  pattern?: string;
  required?: string[];
  properties?: Record<string, JsonSchemaNode>;
  [key: string]: unknown;
}

Deno.test("corpus/case.schema.json is up to date with src/model/case.ts", () => {
  const committed: unknown = JSON.parse(readFileSync(SCHEMA_FILE, "utf8"));
  deepStrictEqual(
    committed,
    caseJsonSchema(),
    `${CASE_SCHEMA_PATH} is out of date with the case format: run \`deno task schema\``,
  );
});

Deno.test("the case schema requires the core fields and describes hex strings by pattern", () => {
  const schema = caseJsonSchema() as JsonSchemaNode;
  ok(typeof schema.$schema === "string" && schema.$schema.includes("json-schema.org"));
  ok(typeof schema.$id === "string" && schema.$id.length > 0, "schema has an $id");
  ok(typeof schema.title === "string" && schema.title.length > 0, "schema has a title");
  ok(typeof schema.description === "string" && schema.description.length > 0);
  deepStrictEqual(schema.type, "object");
  for (const field of ["format", "version", "cpu", "control", "memslots", "program"]) {
    ok(schema.required?.includes(field), `schema requires ${field}`);
  }
  // Fields with defaults are optional on the input side.
  for (const field of ["vcpus", "memory", "sut", "meta"]) {
    ok(!schema.required?.includes(field), `${field} has a default, so it is optional`);
  }
  const cr3 = schema.properties?.control?.properties?.cr3;
  deepStrictEqual(cr3?.type, "string");
  deepStrictEqual(cr3?.pattern, HEX64_PATTERN.source);

  // Every pattern in the schema is a valid regular expression, and the hex one is everywhere a
  // 64-bit value is (cr3, gfns, words, addresses, store values).
  let hexPatterns = 0;
  const visit = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== "object") return;
    const pattern = (node as JsonSchemaNode).pattern;
    if (typeof pattern === "string") {
      new RegExp(pattern);
      if (pattern === HEX64_PATTERN.source) hexPatterns++;
    }
    Object.values(node).forEach(visit);
  };
  visit(schema);
  ok(hexPatterns >= 10, `expected many hex-string patterns, found ${hexPatterns}`);
  ok(new RegExp(HEX64_PATTERN.source).test("0xffffffffffffffff"));
  ok(!new RegExp(HEX64_PATTERN.source).test("0x1ffffffffffffffff"));
});
