// Picked files that the libraries' path readers can open in the browser build: vite.config.ts aliases
// `fs/promises` to node-builtins-stub.ts, whose `open(path)` serves a Blob registered here, with positioned reads
// of slices only. @int21/io's `openFileSource` (GGUF's streamed reader: `loadGguf(path)`) needs nothing more:
// `handle.stat()` (`isFile`, `size`), `handle.read(target, offset, length, position)`, `handle.close()`.
import { type SliceReader, workerSliceReader } from "./sources";

const files = new Map<string, Blob>();
/** Bytes read through handles, for the readout. */
export const blobFileStats = { reads: 0, bytes: 0, largestRead: 0 };

/** Makes `blob` openable at `path` (e.g. `/picked/model.gguf`); returns the path. */
export function registerBlobFile(path: string, blob: Blob): string {
  files.set(path, blob);
  return path;
}

/** Forgets every registered file. */
export function clearBlobFiles(): void {
  files.clear();
  blobFileStats.reads = 0;
  blobFileStats.bytes = 0;
  blobFileStats.largestRead = 0;
}

/** The subset of node's FileHandle that @int21/io uses. */
export interface BlobFileHandle {
  stat(): Promise<{ size: number; isFile(): boolean }>;
  read(target: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** `fs/promises.open` for registered Blobs and scratch files (read-only); ENOENT-style error naming the path otherwise. */
export async function openBlobFile(path: string, flags = "r", read?: SliceReader): Promise<BlobFileHandle> {
  const w = written.get(path);
  const blob = files.get(path) ?? (w ? new Blob([w.view().slice()]) : undefined);
  if (!blob) throw new Error(`${path}: no such file (only picked files can be opened in the browser)`);
  if (flags !== "r") throw new Error(`${path}: picked files are read-only (open flags "${flags}")`);
  const slice = read ?? workerSliceReader();
  let closed = false;
  return {
    async stat() {
      return { size: blob.size, isFile: () => true };
    },
    async read(target, offset, length, position) {
      if (closed) throw new Error(`${path}: read after close`);
      const end = Math.min(blob.size, position + length);
      if (end <= position) return { bytesRead: 0 };
      const got = new Uint8Array(slice(blob.slice(position, end)));
      target.set(got, offset);
      blobFileStats.reads++;
      blobFileStats.bytes += got.length;
      blobFileStats.largestRead = Math.max(blobFileStats.largestRead, got.length);
      return { bytesRead: got.length };
    },
    async close() {
      closed = true;
    },
  };
}

/** An ENOENT error as node's fs throws it (callers test `code`). */
function notFound(path: string): Error {
  return Object.assign(
    new Error(`ENOENT: no such file, ${path} (only picked files can be opened in the browser)`),
    {
      code: "ENOENT",
    },
  );
}

/** `fs/promises.access` for registered files. */
export async function accessBlobFile(path: string): Promise<void> {
  if (!files.has(path) && !written.has(path)) throw notFound(path);
}

/** `fs/promises.readFile` for registered files: text with an encoding, else bytes (read whole: small files). */
export async function readBlobFile(
  path: string,
  encoding?: unknown,
  read?: SliceReader,
): Promise<string | Uint8Array> {
  const w = written.get(path);
  const blob = files.get(path);
  if (!blob && !w) throw notFound(path);
  const bytes = w ? w.view().slice() : new Uint8Array((read ?? workerSliceReader())(blob!));
  const enc =
    typeof encoding === "string" ? encoding : (encoding as { encoding?: string } | undefined)?.encoding;
  return enc ? new TextDecoder().decode(bytes) : bytes;
}

/** `path.join` for the registered paths: `/`-joined, `.` segments and repeated slashes removed. */
export function joinPath(...parts: string[]): string {
  const abs = parts[0]?.startsWith("/") ?? false;
  const segs = parts.flatMap((p) => p.split("/")).filter((p) => p !== "" && p !== ".");
  return (abs ? "/" : "") + segs.join("/");
}

// The scratch folder: files the libraries' writers (@int21/io's atomic writes: open `wx`, positioned writes,
// sync, close, rename; `stat`, `mkdir`, `rm`) write in the browser build, kept in memory until read back and removed.
// The studio writes a PEFT adapter with model-llama's own `saveLlamaAdapter` here (Phi-3's fused layout included).

/** A growing in-memory file. */
class ScratchFile {
  private buf = new Uint8Array(1024);
  length = 0;
  write(src: Uint8Array, at: number): void {
    const end = at + src.length;
    if (end > this.buf.length) {
      const grown = new Uint8Array(Math.max(end, 2 * this.buf.length));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    this.buf.set(src, at);
    this.length = Math.max(this.length, end);
  }
  truncate(n: number): void {
    if (n > this.buf.length) this.write(new Uint8Array(n - this.length), this.length);
    else if (n > this.length) this.buf.fill(0, this.length, n);
    this.length = n;
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const written = new Map<string, ScratchFile>();
const scratchDirs = new Set<string>();

/** The part of node's FileHandle that @int21/io's atomic writer uses. */
export interface ScratchWriteHandle {
  write(
    data: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }>;
  truncate(length: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

function parentOf(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

/** `fs/promises.open(path, "w" | "wx")`: a new file in a scratch folder (made by {@link mkdirScratch}). */
export async function openScratchFile(path: string, flags: "w" | "wx"): Promise<ScratchWriteHandle> {
  if (!scratchDirs.has(parentOf(path)))
    throw Object.assign(new Error(`ENOENT: ${parentOf(path)} is not a scratch folder (mkdir it first)`), {
      code: "ENOENT",
    });
  if (flags === "wx" && written.has(path))
    throw Object.assign(new Error(`EEXIST: ${path} exists`), { code: "EEXIST" });
  const f = new ScratchFile();
  written.set(path, f);
  let closed = false;
  const open = () => {
    if (closed) throw new Error(`${path}: write after close`);
  };
  return {
    async write(data, offset, length, position) {
      open();
      f.write(data.subarray(offset, offset + length), position);
      return { bytesWritten: length };
    },
    async truncate(n) {
      open();
      f.truncate(n);
    },
    async chmod() {},
    async sync() {},
    async close() {
      closed = true;
    },
  };
}

/** `fs/promises.mkdir` (recursive or not) of a scratch folder. */
export async function mkdirScratch(path: string): Promise<void> {
  let p = path.replace(/\/+$/, "") || "/";
  while (p !== "/") {
    scratchDirs.add(p);
    p = parentOf(p);
  }
}

/** `fs/promises.stat` of a scratch file or folder (a registered picked file too); ENOENT otherwise. */
export async function statScratch(
  path: string,
): Promise<{ size: number; mode: number; isFile(): boolean; isDirectory(): boolean }> {
  const f = written.get(path);
  const blob = files.get(path);
  if (f || blob)
    return { size: f ? f.length : blob!.size, mode: 0o644, isFile: () => true, isDirectory: () => false };
  if (scratchDirs.has(path)) return { size: 0, mode: 0o755, isFile: () => false, isDirectory: () => true };
  throw notFound(path);
}

/** `fs/promises.rename` within the scratch folder. */
export async function renameScratch(from: string, to: string): Promise<void> {
  const f = written.get(from);
  if (!f) throw notFound(from);
  written.delete(from);
  written.set(to, f);
}

/** `fs/promises.rm` of a scratch file (`force`: no error when absent). */
export async function rmScratch(path: string, opts?: { force?: boolean }): Promise<void> {
  if (!written.delete(path) && !opts?.force) throw notFound(path);
}
