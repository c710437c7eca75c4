// Positioned reads from a local file, so that a multi-GB checkpoint is never read whole.
// `node:fs/promises` is imported lazily, so browser bundles that only use the from-bytes parsers never load it.

import type { FileHandle } from "node:fs/promises";

/** Largest single read issued to the OS (reads of larger tensors are split). */
const MAX_READ = 1 << 30;

/** A local file opened for positioned reads. */
export interface FileSource {
  /** The path the file was opened with (used in every error message). */
  readonly path: string;
  /** The file's length in bytes, taken once at open. */
  readonly size: number;
  /**
   * Reads exactly `target.length` bytes starting at byte `offset` into `target`.
   * Throws an Error naming the file when the file is shorter than that (it shrank after open).
   */
  readInto(offset: number, target: Uint8Array): Promise<void>;
  /** Reads exactly `length` bytes at `offset` into a fresh (hence 8-byte aligned) buffer. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Closes the file handle. Safe to call twice. */
  close(): Promise<void>;
}

/** Opens `path` read-only and returns a {@link FileSource} over it. */
export async function openFileSource(path: string): Promise<FileSource> {
  const { open } = await import("node:fs/promises");
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (e) {
    throw new Error(`io: cannot open ${path}: ${(e as Error).message}`);
  }
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    throw new Error(`io: ${path} is not a regular file`);
  }
  let closed = false;
  const size = stat.size;
  const readInto = async (offset: number, target: Uint8Array): Promise<void> => {
    if (closed) throw new Error(`io: ${path}: read after close`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + target.length > size) {
      throw new Error(
        `io: ${path}: read of ${target.length} bytes at offset ${offset} is past the end of the file (${size} bytes)`,
      );
    }
    let done = 0;
    while (done < target.length) {
      const want = Math.min(MAX_READ, target.length - done);
      const { bytesRead } = await handle.read(target, done, want, offset + done);
      if (bytesRead === 0) {
        throw new Error(`io: ${path}: unexpected end of file at byte ${offset + done} (file was truncated?)`);
      }
      done += bytesRead;
    }
  };
  return {
    path,
    size,
    readInto,
    async read(offset, length) {
      const out = new Uint8Array(length);
      await readInto(offset, out);
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}
