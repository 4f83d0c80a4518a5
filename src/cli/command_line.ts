/**
 * The common start of every command: parse the flags (positionals allowed, `--help` added),
 * print a usage error with exit status 2, or the usage text with exit status 0 for `--help`.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/**
 * Parses `args` with `options` plus `--help`. Returns the parsed flags and positionals, or the
 * exit status when the command is already done (2 after a usage error, 0 after `--help`).
 */
export function parseCommandLine<const T extends ParseArgsOptionsConfig>(
  command: string,
  usage: string,
  args: string[],
  options: T,
) {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { ...options, help: { type: "boolean" } } as T & { help: { type: "boolean" } },
    });
  } catch (e: unknown) {
    console.error(`${command}: ${e instanceof Error ? e.message : String(e)}\n${usage}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage);
    return 0;
  }
  return parsed;
}
