/**
 * Writing a new file atomically without ever replacing an existing one: the text goes to a
 * temporary file in the target's directory, which is then hard-linked to the target name (the
 * link fails if the name exists: no race with another writer) and removed. A reader never sees
 * half a file, and nothing already in the corpus is overwritten.
 *
 * @module
 */
import { linkSync, mkdirSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/**
 * Writes `text` to the first free name `name(1)`, `name(2)`… in `dir` (created if needed);
 * returns the path written.
 *
 * @throws when writing fails for another reason than a name already taken
 */
export function writeNewFile(dir: string, name: (n: number) => string, text: string): string {
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${crypto.randomUUID()}.tmp`);
  writeFileSync(tmp, text);
  try {
    for (let n = 1;; n++) {
      const path = join(dir, name(n));
      if (dirname(path) !== dir) throw new RangeError(`not a file name in ${dir}: ${name(n)}`);
      try {
        linkSync(tmp, path);
        return path;
      } catch (e: unknown) {
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      }
    }
  } finally {
    unlinkSync(tmp);
  }
}
