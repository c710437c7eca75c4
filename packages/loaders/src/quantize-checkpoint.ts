// quantizeCheckpoint: model-llama's layer-at-a-time quantizer over any float checkpoint file.
import { type QuantizeModelOptions, type QuantizeModelResult, quantizeFromReader } from "@int21/model-llama";
import { openGgufReader } from "./gguf-model";
import { openHfReader } from "./load-hf";
import { openLlama2cReader } from "./load-llama2c";
import { detectModelFile } from "./model-files";

/**
 * `quantizeModel` straight from a float checkpoint (a llama2.c `.bin`, a Hugging Face directory or a GGUF
 * file), reading one layer's float weights at a time (model-llama's `quantizeFromReader`): the float model
 * never exists whole, so GPTQ fits models whose float form does not fit in memory. Gives bit-identical
 * results to `quantizeModel(await loadModel(path))`. An int21 checkpoint (already quantized) is refused.
 */
export function quantizeCheckpoint(path: string, opts: QuantizeModelOptions): Promise<QuantizeModelResult> {
  return quantizeFromReader(async () => {
    const kind = await detectModelFile(path);
    if (kind === "int21")
      throw new Error(`${path}: an int21 checkpoint is already quantized; start from a float one`);
    return kind === "hf"
      ? await openHfReader(path)
      : kind === "gguf"
        ? await openGgufReader(path)
        : openLlama2cReader(path);
  }, opts);
}
