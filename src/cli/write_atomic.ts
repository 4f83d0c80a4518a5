/**
 * Atomic file writes: write a temporary file next to the target, then rename it into place, so a
 * reader (or a crash) never sees half a file.
 *
 * @module
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Writes `text` to `path` atomically, creating the directory if needed. */
export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${crypto.randomUUID()}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
