import { type CheckpointAdapters, INT21_CHECKPOINT_FORMAT, loadInt21Checkpoint } from "./checkpoint";
import { loadGguf } from "./gguf-model";
import { loadHf } from "./load-hf";
import { LLAMA2C_MAGIC, loadLlama2c, parseLlama2cHeader } from "./load-llama2c";
import { fileSource } from "./load-source";
import type { LoadOptions, LlamaWeights } from "@int21/model-llama";

/** The checkpoint kinds {@link loadModel} recognises. */
export type ModelFileKind = "llama2c" | "hf" | "int21" | "gguf";

/** What {@link loadModel} returns. */
export interface LoadedModel {
  kind: ModelFileKind;
  weights: LlamaWeights;
  /** Adapters stored in an int21 checkpoint. */
  adapters?: CheckpointAdapters;
}

/**
 * Tells what `path` is, from its first bytes only: a directory holding `config.json` → `hf`; a
 * safetensors file whose metadata says `int21-llama` → `int21`; a file starting with the `ak42` magic,
 * or starting with a valid legacy llama2.c header → `llama2c`; the `GGUF` magic → `gguf`. Throws naming the path otherwise.
 */
export async function detectModelFile(path: string): Promise<ModelFileKind> {
  const { stat, access } = await import("node:fs/promises");
  const { join } = await import("node:path");
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (e) {
    throw new Error(`${path}: cannot open (${(e as Error).message})`);
  }
  if (st.isDirectory()) {
    try {
      await access(join(path, "config.json"));
      return "hf";
    } catch {
      throw new Error(`${path}: a directory without config.json is not a Hugging Face model`);
    }
  }
  const src = fileSource(path);
  try {
    const head = src.read(0, Math.min(src.size, 256));
    if (head.byteLength >= 4 && new DataView(head.buffer).getUint32(0, true) === LLAMA2C_MAGIC)
      return "llama2c";
    if (head.byteLength >= 4 && new TextDecoder().decode(head.subarray(0, 4)) === "GGUF") return "gguf";
    if (head.byteLength >= 9 && head[8] === 0x7b) {
      const dv = new DataView(head.buffer);
      const n = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
      if (n >= 2 && 8 + n <= src.size && n <= 100_000_000) {
        const text = new TextDecoder().decode(src.read(8, n));
        let meta: Record<string, unknown> | undefined;
        try {
          meta = JSON.parse(text).__metadata__;
        } catch {
          meta = undefined;
        }
        if (meta?.format === INT21_CHECKPOINT_FORMAT) return "int21";
        throw new Error(
          `${path}: a safetensors file that is not an int21 checkpoint; for Hugging Face weights pass the directory holding config.json`,
        );
      }
    }
    try {
      // A valid legacy header is taken as llama2.c even when the size is off, so that the loader
      // names the truncated tensor.
      parseLlama2cHeader(head, path);
      return "llama2c";
    } catch {
      // not a legacy llama2.c header either
    }
    throw new Error(
      `${path}: not a llama2.c checkpoint, an int21 checkpoint or a Hugging Face model directory`,
    );
  } finally {
    src.close();
  }
}

/**
 * Loads any supported checkpoint: a llama2.c `.bin`, a Hugging Face directory, a llama.cpp GGUF, or an int21 checkpoint
 * (see {@link detectModelFile}). `opts.quantize` applies to the float formats. A GGUF's block-quantized
 * tensors are kept packed (`loadGguf`'s `keepPacked`) unless `opts.quantize` is given.
 */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const kind = await detectModelFile(path);
  if (kind === "llama2c") return { kind, weights: loadLlama2c(path, opts) };
  if (kind === "hf") return { kind, weights: await loadHf(path, opts) };
  // a GGUF's block-quantized tensors stay packed (no float copy) unless the caller re-quantizes
  if (kind === "gguf")
    return {
      kind,
      weights: (await loadGguf(path, { keepPacked: opts.quantize === undefined, ...opts })).weights,
    };
  const ck = await loadInt21Checkpoint(path, opts);
  return { kind, weights: ck.weights, ...(ck.adapters ? { adapters: ck.adapters } : {}) };
}
