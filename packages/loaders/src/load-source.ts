import { closeSync, fstatSync, openSync, readSync } from "node:fs";

/**
 * Random access to the bytes of one checkpoint file, without holding the whole file in memory.
 * Loaders read tensor by tensor through this, so a 7B file can be streamed; `bytesSource` is the
 * in-memory variant for browsers and tests.
 */
export interface ByteSource {
  /** File name (or the caller's label) used in every error message. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Copies `length` bytes starting at `offset` into a fresh buffer. Throws past the end. */
  read(offset: number, length: number): Uint8Array;
  /** Releases the file handle (no-op for in-memory sources). */
  close(): void;
}

/** A {@link ByteSource} over bytes already in memory (browser `fetch`, tests). */
export function bytesSource(bytes: Uint8Array, name = "<bytes>"): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    read(offset, length) {
      checkRange(name, bytes.byteLength, offset, length);
      return bytes.slice(offset, offset + length);
    },
    close() {},
  };
}

/** A {@link ByteSource} reading a file with positional reads (`fs.readSync`). Call `close()` when done. */
export function fileSource(path: string): ByteSource {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new Error(`${path}: cannot open (${(e as Error).message})`);
  }
  const size = fstatSync(fd).size;
  let open = true;
  return {
    name: path,
    size,
    read(offset, length) {
      if (!open) throw new Error(`${path}: read after close`);
      checkRange(path, size, offset, length);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        // readSync moves at most ~2 GiB per call; loop until the range is filled.
        const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        if (n <= 0) throw new Error(`${path}: unexpected end of file at byte ${offset + done}`);
        done += n;
      }
      return out;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

function checkRange(name: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new Error(`${name}: invalid byte range offset ${offset} length ${length}`);
  }
  if (offset + length > size) {
    throw new Error(
      `${name}: byte range [${offset}, ${offset + length}) is past the end of the file (${size} bytes)`,
    );
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Throws naming `file` on a big-endian platform (checkpoint floats are little-endian and read in place). */
export function assertLittleEndianHost(file: string): void {
  if (!LITTLE_ENDIAN) throw new Error(`${file}: big-endian platforms are not supported`);
}
