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

/** `fs/promises.open` for registered Blobs (read-only); ENOENT-style error naming the path otherwise. */
export async function openBlobFile(path: string, flags = "r", read?: SliceReader): Promise<BlobFileHandle> {
  const blob = files.get(path);
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
  if (!files.has(path)) throw notFound(path);
}

/** `fs/promises.readFile` for registered files: text with an encoding, else bytes (read whole: small files). */
export async function readBlobFile(
  path: string,
  encoding?: unknown,
  read?: SliceReader,
): Promise<string | Uint8Array> {
  const blob = files.get(path);
  if (!blob) throw notFound(path);
  const bytes = new Uint8Array((read ?? workerSliceReader())(blob));
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
