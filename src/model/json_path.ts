/**
 * JSON paths in the `$.a.b[3]["odd key"]` form that error messages use.
 *
 * @module
 */

/**
 * Renders a path of object keys and array indices as a JSONPath expression.
 *
 * @example Basic usage
 * ```ts
 * import { jsonPath } from "./json_path.ts";
 * import { equal } from "node:assert/strict";
 * equal(jsonPath(["program", 3, "la"]), "$.program[3].la");
 * equal(jsonPath(["memory", 0, "words", "12"]), '$.memory[0].words["12"]');
 * ```
 */
export function jsonPath(path: readonly PropertyKey[]): string {
  let out = "$";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}
