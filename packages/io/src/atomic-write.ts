// Atomic file writes: every file int21 writes goes through here, so that a crash, a kill or a full disk never
// leaves a half-written file under the target's name. The bytes go to a temporary file in the target's own folder
// (`.<name>.int21-tmp-<pid>-<random>`), which is flushed to disk (fsync), renamed over the target and the folder
// flushed too. Temporary files left behind by a killed process are removed by the next write into that folder.
// `node:fs/promises` is imported lazily, so browser bundles that never write files never load it.

import type { FileHandle } from "node:fs/promises";

/** The marker in the name of a temporary file: `.<name>` + marker + `<pid>-<random hex>`. */
export const ATOMIC_TEMP_MARKER = ".int21-tmp-";

const TEMP_RE = /^\.(.+)\.int21-tmp-(\d+)-[0-9a-f]+$/;
/** The temporary name earlier int21 versions used (`<name>.<pid>.tmp`); cleaned for the file being written. */
const LEGACY_TEMP_RE = /^(.+)\.(\d+)\.tmp$/;

/** Temporary files this process is writing right now (never cleaned as stale). */
const inFlight = new Set<string>();

/**
 * A failed file write. `path` is the file that was being written (never the temporary file), `operation` the step
 * that failed (`open`, `write`, `fsync`, `rename`, …) and `code` the system error code (`ENOSPC`, `EISDIR`,
 * `ENOTDIR`, `EACCES`, `EROFS`, …) when there is one; the original error is the `cause`.
 */
export class FileWriteError extends Error {
  /** The file that was being written. */
  readonly path: string;
  /** The step that failed. */
  readonly operation: string;
  /** The system error code, e.g. `ENOSPC`, when the failure came from the OS. */
  readonly code: string | undefined;

  constructor(path: string, operation: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    const reason = cause instanceof Error ? cause.message : String(cause);
    const plain = describe(code, operation);
    super(`io: cannot write ${path} (${operation}): ${plain ?? reason}${plain ? ` [${reason}]` : ""}`, {
      cause,
    });
    this.name = "FileWriteError";
    this.path = path;
    this.operation = operation;
    this.code = code;
  }
}

function describe(code: string | undefined, operation: string): string | undefined {
  switch (code) {
    case "ENOSPC":
      return "no space left on the device";
    case "EDQUOT":
      return "disk quota exceeded";
    case "EISDIR":
      return "the path is a directory";
    case "ENOTDIR":
      return "a component of the path is not a directory";
    case "ENOENT":
      // opening the temporary file: its folder is missing; later steps: the temporary file vanished
      return operation === "open" ? "the folder does not exist" : undefined;
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EROFS":
      return "the file system is read-only";
    default:
      return undefined;
  }
}

/** Sequential and positioned writes into the temporary file of {@link writeFileAtomicStream}. */
export interface AtomicWriter {
  /** The file being written (the target, not the temporary file). */
  readonly path: string;
  /** The temporary file the bytes go to until the write completes. */
  readonly tempPath: string;
  /**
   * Writes all of `data` at byte `position`, or, without one, after the last byte written sequentially so far
   * (a positioned write does not move that cursor).
   */
  write(data: Uint8Array | string, position?: number): Promise<void>;
  /** Sets the file's length (zero-filling when it grows). */
  truncate(length: number): Promise<void>;
}

function splitPath(path: string): { dir: string; name: string } {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return cut < 0
    ? { dir: ".", name: path }
    : { dir: cut === 0 ? path.slice(0, 1) : path.slice(0, cut), name: path.slice(cut + 1) };
}

function joinDir(dir: string, name: string): string {
  return dir.endsWith("/") || dir.endsWith("\\") ? `${dir}${name}` : `${dir}/${name}`;
}

/** The name of a fresh temporary file for `path`, in the same folder: `.<name>.int21-tmp-<pid>-<random>`. */
export function atomicTempPath(path: string): string {
  const { dir, name } = splitPath(path);
  const rand = Math.floor(Math.random() * 0x100000000)
    .toString(16)
    .padStart(8, "0");
  return joinDir(dir, `.${name}${ATOMIC_TEMP_MARKER}${process.pid}-${rand}`);
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/**
 * Removes the temporary files that interrupted atomic writes left in folder `dir`: every
 * `.<name>.int21-tmp-<pid>-<random>` whose process is no longer running, or that belongs to this process but is
 * not being written now. With `target` (a file name in `dir`), also removes `<target>.<pid>.tmp` files of dead
 * processes (the temporary name of earlier versions). Returns the paths removed. A folder that cannot be listed is
 * skipped silently (the write that follows reports the real problem).
 *
 * Every {@link writeFileAtomic} / {@link writeFileAtomicStream} calls this for the target's folder first, so a
 * killed run's leftovers disappear the next time anything is written beside them.
 */
export async function cleanStaleAtomicTemps(dir: string, target?: string): Promise<string[]> {
  const { readdir, rm } = await import("node:fs/promises");
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const full = joinDir(dir, name);
    let stale = false;
    const m = TEMP_RE.exec(name);
    if (m) {
      const pid = Number(m[2]);
      stale = pid === process.pid ? !inFlight.has(full) : !processAlive(pid);
    } else if (target !== undefined) {
      const legacy = LEGACY_TEMP_RE.exec(name);
      stale = legacy !== null && legacy[1] === target && !processAlive(Number(legacy[2]));
    }
    if (!stale) continue;
    try {
      await rm(full, { force: true });
      removed.push(full);
    } catch {
      // another process removed or replaced it first; nothing to do
    }
  }
  return removed;
}

async function fsyncDir(dir: string): Promise<void> {
  const { open } = await import("node:fs/promises");
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch {
    // not supported here (Windows, some network file systems): the rename itself is still atomic
  } finally {
    await fh?.close().catch(() => {});
  }
}

/**
 * Writes a file atomically, filling it through `fill` (sequential or positioned writes, so multi-GB files are
 * written one piece at a time). The bytes go to a temporary file beside `path` (see {@link atomicTempPath}); when
 * `fill` resolves, the file is fsynced, renamed over `path` and the folder fsynced. If `fill` throws or the process
 * dies, `path` keeps its previous contents (or stays absent); the temporary file is removed at once on a throw, or
 * by the next atomic write into the same folder after a kill. A replaced file keeps its permission bits.
 *
 * File-system failures throw {@link FileWriteError} naming `path` and the failed step; errors thrown by `fill`
 * propagate unchanged. The folder must exist.
 */
export async function writeFileAtomicStream(
  path: string,
  fill: (w: AtomicWriter) => Promise<void>,
): Promise<void> {
  const fs = await import("node:fs/promises");
  const { dir, name } = splitPath(path);
  if (name === "" || name === "." || name === "..")
    throw new FileWriteError(path, "check", new Error("not a file name"));
  let mode: number | undefined;
  try {
    const st = await fs.stat(path);
    if (st.isDirectory()) {
      const e = Object.assign(new Error(`EISDIR: illegal operation on a directory, '${path}'`), {
        code: "EISDIR",
      });
      throw new FileWriteError(path, "check", e);
    }
    mode = st.mode & 0o7777;
  } catch (e) {
    if (e instanceof FileWriteError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") throw new FileWriteError(path, "check", e);
  }
  await cleanStaleAtomicTemps(dir, name);

  const tempPath = atomicTempPath(path);
  inFlight.add(tempPath);
  let fh: FileHandle | undefined;
  let done = false;
  const fsStep = async <T>(s: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      throw new FileWriteError(path, s, e);
    }
  };
  try {
    const handle = await fsStep("open", () => fs.open(tempPath, "wx", mode ?? 0o666));
    fh = handle;
    if (mode !== undefined) await fsStep("chmod", () => handle.chmod(mode));
    let cursor = 0;
    const writer: AtomicWriter = {
      path,
      tempPath,
      async write(data, position) {
        const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
        const at = position ?? cursor;
        if (!Number.isSafeInteger(at) || at < 0) {
          throw new FileWriteError(path, "write", new Error(`bad position ${position}`));
        }
        let off = 0;
        while (off < bytes.length) {
          const { bytesWritten } = await fsStep("write", () =>
            handle.write(bytes, off, bytes.length - off, at + off),
          );
          if (bytesWritten === 0) throw new FileWriteError(path, "write", new Error("the OS wrote 0 bytes"));
          off += bytesWritten;
        }
        if (position === undefined) cursor = at + bytes.length;
      },
      async truncate(length) {
        await fsStep("truncate", () => handle.truncate(length));
      },
    };
    await fill(writer);
    await fsStep("fsync", () => handle.sync());
    fh = undefined;
    await fsStep("close", () => handle.close());
    await fsStep("rename", () => fs.rename(tempPath, path));
    done = true;
  } finally {
    inFlight.delete(tempPath);
    if (!done) {
      await fh?.close().catch(() => {});
      await fs.rm(tempPath, { force: true }).catch(() => {});
    }
  }
  await fsyncDir(dir);
}

/**
 * Writes `data` (a string is written as UTF-8) to `path` atomically: a temporary file beside it, fsync, rename
 * over `path`, fsync of the folder. Never leaves a partial `path`; failures throw {@link FileWriteError} naming
 * `path`. See {@link writeFileAtomicStream} for the details and for writing large files piece by piece.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await writeFileAtomicStream(path, (w) => w.write(data));
}
