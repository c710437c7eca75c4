// The streams, environment and network a command sees, injected so that every command is a testable function.

/** A text sink (a stream or a test buffer). */
export interface TextSink {
  write(text: string): void;
}

/** What a command reads and writes besides files: its output streams, environment and `fetch`. */
export interface CliIo {
  /** Results: the generated text, tables, or one JSON document with `--json`. */
  stdout: TextSink;
  /** Progress bars, statistics and error messages. */
  stderr: TextSink;
  /** Whether stderr is a terminal (progress bars redraw in place) or a log (one line per 10%). */
  stderrIsTTY?: boolean;
  /** Environment variables (`INT21_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`). Default: none. */
  env?: Readonly<Record<string, string | undefined>>;
  /** The `fetch` used to download Hugging Face models. Default: the global `fetch`. */
  fetch?: typeof fetch;
}

/** The process's own streams and environment. */
export function processIo(): CliIo {
  return {
    stdout: { write: (s) => void process.stdout.write(s) },
    stderr: { write: (s) => void process.stderr.write(s) },
    stderrIsTTY: process.stderr.isTTY === true,
    env: process.env,
    fetch: globalThis.fetch,
  };
}

/** A {@link CliIo} that collects everything in strings (tests, embedding). */
export function bufferIo(opts: Omit<CliIo, "stdout" | "stderr"> = {}): CliIo & {
  out: () => string;
  err: () => string;
} {
  let out = "";
  let err = "";
  return {
    ...opts,
    stdout: { write: (s) => void (out += s) },
    stderr: { write: (s) => void (err += s) },
    out: () => out,
    err: () => err,
  };
}

/**
 * Exit codes: `0` success; `1` the work failed (a missing, truncated or unsupported file, a failed
 * download, a check that did not pass); `2` a bad command line (unknown command or option, a value out
 * of range, a missing required option).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** An error that ends a command with its own exit code (a {@link UsageError} is code 2). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** A bad command line: exit code 2, the message names the argument. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = "UsageError";
  }
}
