// `validateModelFiles`: every check a loader makes, plus a NaN/Inf scan of every weight, one tensor in memory
// at a time, reported as a list of problems instead of the first exception.

import { type FileProblem, nonFiniteProblem, openGguf, validateGguf } from "@int21/io";
import { validateInt21Checkpoint } from "./checkpoint";
import { openGgufReader } from "./gguf-model";
import { openHfReader } from "./load-hf";
import { openLlama2cReader } from "./load-llama2c";
import { problemOf } from "./validate-config";
import { detectModelFile } from "./model-files";
import type { TensorReader } from "@int21/model-llama";

/** Options of {@link validateModelFiles}. */
export interface ValidateModelOptions {
  /** Read every weight and report NaN / infinite values (default true); false checks structure only. */
  scanValues?: boolean;
}

async function scanReader(reader: TensorReader, scan: boolean): Promise<FileProblem[]> {
  const problems: FileProblem[] = [];
  try {
    if (!scan) return problems;
    for (const name of reader.order) {
      const file = reader.fileOf(name);
      try {
        const p = nonFiniteProblem(await reader.read(name), file, name);
        if (p) problems.push(p);
      } catch (e) {
        problems.push(problemOf(file, e, name));
      }
    }
    return problems;
  } finally {
    await reader.close();
  }
}

/**
 * Checks a model checkpoint as the loaders would — a llama2.c `.bin`, a Hugging Face directory, a GGUF file or an
 * int21 checkpoint (see `detectModelFile`; a GGUF LoRA adapter or vocabulary-only GGUF gets the container checks only) — and, unless `scanValues` is false, reads every weight one tensor at a
 * time and reports NaN and infinite values. Structural problems (a bad header, an invalid config field, a missing
 * or misshapen tensor) stop the check at the first one; value problems are listed per tensor. Never throws for a
 * bad file: returns the problems, each naming the file (empty when there are none).
 *
 * ```ts
 * const problems = await validateModelFiles("stories260K.bin");
 * if (problems.length > 0) for (const p of problems) console.error(p.message);
 * ```
 */
export async function validateModelFiles(
  path: string,
  opts: ValidateModelOptions = {},
): Promise<FileProblem[]> {
  const scan = opts.scanValues !== false;
  let kind: Awaited<ReturnType<typeof detectModelFile>>;
  try {
    kind = await detectModelFile(path);
  } catch (e) {
    return [problemOf(path, e)];
  }
  try {
    if (kind === "llama2c") return await scanReader(openLlama2cReader(path), scan);
    if (kind === "hf") return await scanReader(await openHfReader(path), scan);
    if (kind === "int21") return await validateInt21Checkpoint(path, { scanValues: scan });
    // GGUF: the container and every dequantizable tensor, then the mapping to a LLaMA.
    const problems = await validateGguf(path, { scanValues: scan });
    if (problems.some((p) => p.tensor === undefined)) return problems;
    try {
      // A GGUF LoRA adapter (general.type "adapter") or a vocabulary-only file (no tensors) is not a model:
      // its container checks are all there is.
      const g = await openGguf(path);
      const notModel = g.get("general.type") === "adapter" || g.names.length === 0;
      await g.close();
      if (notModel) return problems;
      await (await openGgufReader(path)).close();
    } catch (e) {
      problems.unshift(problemOf(path, e));
    }
    return problems;
  } catch (e) {
    return [problemOf(path, e)];
  }
}
