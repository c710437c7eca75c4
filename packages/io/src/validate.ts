// Whole-file checks for `int21 inspect --check`: the container validation the readers do on open, plus a
// scan of every float tensor for NaN and infinities, one tensor in memory at a time.

import { GGML_TYPES } from "./ggml-types";
import { type GgufFile, openGguf } from "./gguf-reader";
import { SAFETENSORS_DTYPES } from "./safetensors-format";
import { openSafetensors, type SafetensorsFile } from "./safetensors-reader";

/** One problem a validator found. `message` is a whole sentence that names the file (print it alone). */
export interface FileProblem {
  /** The file the problem is in. */
  readonly file: string;
  /** The tensor, when the problem is in one tensor. */
  readonly tensor?: string;
  readonly message: string;
}

/** Options of {@link validateSafetensors} and {@link validateGguf}. */
export interface ValidateOptions {
  /** Read every float tensor and report NaN / infinite values (default true); false checks the header only. */
  readonly scanValues?: boolean;
}

/**
 * The problem of a tensor holding NaN or infinite values (how many, and the first one), or `undefined` when
 * every value is finite. `data` is scanned once, in place.
 */
export function nonFiniteProblem(data: Float32Array, file: string, tensor: string): FileProblem | undefined {
  let count = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (count === 0) return undefined;
  return {
    file,
    tensor,
    message: `${file}: tensor "${tensor}" holds ${count} non-finite value${count === 1 ? "" : "s"} (the first, ${data[first]}, at element ${first})`,
  };
}

function thrown(file: string, e: unknown, tensor?: string): FileProblem {
  const msg = e instanceof Error ? e.message : String(e);
  return {
    file,
    ...(tensor !== undefined ? { tensor } : {}),
    message: msg.includes(file) ? msg : `${file}: ${msg}`,
  };
}

/**
 * Checks a safetensors file: the header as {@link openSafetensors} validates it (dtypes, shapes, offsets tiling
 * the file exactly), then, unless `scanValues` is false, every floating-point tensor read one at a time and
 * scanned for NaN and infinities. Never throws for a bad file: returns its problems (empty when none).
 *
 * ```ts
 * for (const p of await validateSafetensors("model.safetensors")) console.log(p.message);
 * ```
 */
export async function validateSafetensors(path: string, opts: ValidateOptions = {}): Promise<FileProblem[]> {
  let f: SafetensorsFile;
  try {
    f = await openSafetensors(path);
  } catch (e) {
    return [thrown(path, e)];
  }
  const problems: FileProblem[] = [];
  try {
    if (opts.scanValues === false) return problems;
    for (const name of f.names) {
      if (!SAFETENSORS_DTYPES[f.tensors[name].dtype].float) continue;
      try {
        const p = nonFiniteProblem(await f.readF32(name), path, name);
        if (p) problems.push(p);
      } catch (e) {
        problems.push(thrown(path, e, name));
      }
    }
    return problems;
  } finally {
    await f.close();
  }
}

/**
 * Checks a GGUF file: the header as {@link openGguf} validates it (magic, version, counts, value types, tensor
 * dims, types, offsets inside the file, no overlap), then, unless `scanValues` is false, every tensor whose type
 * this package dequantizes read one at a time and scanned for NaN and infinities (a quantized block with a
 * non-finite scale shows up here). Never throws for a bad file: returns its problems (empty when none).
 */
export async function validateGguf(path: string, opts: ValidateOptions = {}): Promise<FileProblem[]> {
  let g: GgufFile;
  try {
    g = await openGguf(path);
  } catch (e) {
    return [thrown(path, e)];
  }
  const problems: FileProblem[] = [];
  try {
    if (opts.scanValues === false) return problems;
    for (const name of g.names) {
      if (GGML_TYPES[g.tensors[name].type].dequantize === undefined) continue;
      try {
        const p = nonFiniteProblem(await g.readTensorF32(name), path, name);
        if (p) problems.push(p);
      } catch (e) {
        problems.push(thrown(path, e, name));
      }
    }
    return problems;
  } finally {
    await g.close();
  }
}
