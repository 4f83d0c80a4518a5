/**
 * Runs a command's `main` in-process with `console.log`/`console.error` captured, for CLI tests.
 *
 * @module
 */

/** What a captured run printed and returned. */
export interface Captured {
  readonly status: number;
  readonly out: string;
  readonly err: string;
}

/** Runs `run` (sync or async) with console output captured. */
export async function captureAsync(run: () => number | Promise<number>): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const status = await run();
    return { status, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Runs a synchronous `run` with console output captured. */
export function capture(run: () => number): Captured {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    return { status: run(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}
