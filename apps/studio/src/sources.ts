// What the user picked, sorted into a model to open, and a synchronous ByteSource over a Blob that reads
// slices (FileReaderSync, dedicated workers only), so a llama2.c file streams from disk tensor by tensor.
import type { ByteSource } from "@int21/loaders";

/** A picked file: its path inside the picked folder (or its name) and a Blob. */
export interface PickedFile {
  /** `webkitRelativePath` without the top folder, or the file name. */
  path: string;
  blob: Blob;
}

/** A model the worker can open, with the files it needs. */
export type ModelPick =
  | { kind: "llama2c"; model: PickedFile; tokenizer: PickedFile | null }
  | { kind: "gguf"; model: PickedFile }
  | { kind: "hf"; files: Record<string, PickedFile>; label: string };

/** The leaf name of a path (`a/b/config.json` → `config.json`). */
export function baseName(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? path : path.slice(i + 1);
}

/** The Hugging Face files the worker reads: config, safetensors (single or sharded), tokenizer files. */
const HF_FILES =
  /^(config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|tokenizer\.json|tokenizer_config\.json|generation_config\.json|chat_template\.jinja)$/;

/**
 * Decides what a set of picked files is: a Hugging Face folder (has `config.json`), a GGUF (`.gguf`), or a
 * llama2.c model (`.bin`, with an optional tokenizer `.bin` whose name contains `tok`). Throws naming the
 * files when it is none of these.
 */
export function classifyPick(files: readonly PickedFile[]): ModelPick {
  if (files.length === 0) throw new Error("no files picked");
  const names = files.map((f) => baseName(f.path));
  const cfg = names.indexOf("config.json");
  if (cfg >= 0) {
    const out: Record<string, PickedFile> = {};
    files.forEach((f, i) => {
      if (HF_FILES.test(names[i])) out[names[i]] = f;
    });
    if (!Object.keys(out).some((n) => n.endsWith(".safetensors")))
      throw new Error(`${files[cfg].path}: a Hugging Face folder needs model.safetensors (or its shards)`);
    if (!out["tokenizer.json"]) throw new Error(`${files[cfg].path}: the folder has no tokenizer.json`);
    const top = files[cfg].path.includes("/") ? files[cfg].path.split("/")[0] : "Hugging Face folder";
    return { kind: "hf", files: out, label: top };
  }
  const gguf = files.find((f) => /\.gguf$/i.test(f.path));
  if (gguf) return { kind: "gguf", model: gguf };
  const bins = files.filter((f) => /\.bin$/i.test(f.path));
  if (bins.length === 0)
    throw new Error(
      `${names.join(", ")}: not a model (pick a llama2.c .bin, a .gguf, or a Hugging Face folder with config.json)`,
    );
  const tok = bins.find((f) => /tok/i.test(baseName(f.path))) ?? null;
  const model = bins.find((f) => f !== tok);
  if (!model) throw new Error(`${names.join(", ")}: only a tokenizer was picked, no llama2.c model .bin`);
  return { kind: "llama2c", model, tokenizer: tok };
}

/** The slice reader a {@link blobSource} uses: FileReaderSync in a worker; injectable for tests. */
export type SliceReader = (blob: Blob) => ArrayBuffer;

interface FileReaderSyncLike {
  readAsArrayBuffer(blob: Blob): ArrayBuffer;
}

/** `FileReaderSync` (dedicated workers), or a clear error elsewhere. */
export function workerSliceReader(): SliceReader {
  const Ctor = (globalThis as { FileReaderSync?: new () => FileReaderSyncLike }).FileReaderSync;
  if (!Ctor) throw new Error("blobSource: FileReaderSync is only available in a dedicated worker");
  const r = new Ctor();
  return (b) => r.readAsArrayBuffer(b);
}

/** Counts of what a {@link blobSource} read, for the readout ("read 1.0 MiB in 42 slices of a 1.0 MiB file"). */
export interface SourceStats {
  reads: number;
  bytes: number;
  largestRead: number;
}

/**
 * A {@link ByteSource} over a Blob (a picked `File`): each `read(offset, length)` reads that slice only
 * (`blob.slice`), so the file is never held whole. Throws naming the file on a range past its end.
 */
export function blobSource(
  blob: Blob,
  name: string,
  read: SliceReader = workerSliceReader(),
): ByteSource & { stats: SourceStats } {
  const stats: SourceStats = { reads: 0, bytes: 0, largestRead: 0 };
  let open = true;
  return {
    name,
    size: blob.size,
    stats,
    read(offset, length) {
      if (!open) throw new Error(`${name}: read after close`);
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
        throw new Error(`${name}: invalid byte range offset ${offset} length ${length}`);
      if (offset + length > blob.size)
        throw new Error(
          `${name}: byte range [${offset}, ${offset + length}) is past the end of the file (${blob.size} bytes)`,
        );
      const out = new Uint8Array(read(blob.slice(offset, offset + length)));
      if (out.byteLength !== length)
        throw new Error(`${name}: read ${out.byteLength} bytes at ${offset}, expected ${length}`);
      stats.reads++;
      stats.bytes += length;
      stats.largestRead = Math.max(stats.largestRead, length);
      return out;
    },
    close() {
      open = false;
    },
  };
}
