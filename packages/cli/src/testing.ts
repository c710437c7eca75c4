// Test helpers (not exported from the package): temp dirs and running the CLI into buffers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bufferIo, type CliIo } from "./cli-io";
import { runCli } from "./cli";

const dirs: string[] = [];

/** A fresh temporary directory, removed by {@link removeTempDirs}. */
export function tempDir(prefix = "int21-cli-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Removes every directory made by {@link tempDir}. */
export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Runs `int21 <argv>` into string buffers. */
export async function cli(
  argv: string[],
  opts: Omit<CliIo, "stdout" | "stderr"> = {},
): Promise<{ code: number; out: string; err: string }> {
  const io = bufferIo({ env: {}, ...opts });
  const code = await runCli(argv, io);
  return { code, out: io.out(), err: io.err() };
}
