// A custom quantizer behind quant-kernels' public `Quantizer` interface: for every group it searches
// the clipping range [lo·s, hi·s] over a grid of shrink factors s and keeps the one with the least
// squared error (s = 1 is the plain min/max range that round-to-nearest uses). The example swaps it
// for the built-in RTN quantizer across every projection of stories260K and compares the results.
import { packMatrix } from "@int21/bitpack";
import {
  LINEAR_NAMES,
  type LinearName,
  Llama2cTokenizer,
  type LlamaWeights,
  evaluateStories,
  linearParts,
  loadLlama2c,
} from "@int21/model-llama";
import {
  type Backend,
  type Quantizer,
  checkWeight,
  createQuantLinear,
  createQuantizedLinear,
  createRtnQuantizer,
  createWasmBackend,
  getFormat,
  referenceDequantize,
  roundUpToF16,
} from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import { readFileSync } from "node:fs";

/** Grid-searched clipping: per group, the shrink factor in `grid` with the least squared error. */
function createClipSearchQuantizer(grid: readonly number[]): Quantizer {
  return {
    name: "clip-search",
    quantize(weight, N, K, formatKey) {
      checkWeight("clip-search", weight, N, K);
      const f = getFormat(formatKey);
      if (f.symmetric || f.groupSize === -1)
        throw new Error(`clip-search: needs an asymmetric grouped format, got ${f.name}`);
      const G = f.groupSize;
      const nGroups = Math.ceil(K / G);
      const codes = new Uint8Array(N * K);
      const scales = new Float32Array(N * nGroups);
      const zeros = new Float32Array(N * nGroups);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < nGroups; g++) {
          const k0 = g * G;
          const k1 = Math.min(K, k0 + G);
          let lo = 0;
          let hi = 0;
          for (let k = k0; k < k1; k++) {
            lo = Math.min(lo, weight[n * K + k]);
            hi = Math.max(hi, weight[n * K + k]);
          }
          let best = { err: Number.POSITIVE_INFINITY, scale: 1, zero: 0 };
          for (const s of grid) {
            const range = (hi - lo) * s;
            const scale = roundUpToF16(range > 0 ? range / f.qmax : 1); // f16 scales, as the format stores
            const zero = Math.min(f.qmax, Math.max(0, Math.round((-lo * s) / scale)));
            let err = 0;
            for (let k = k0; k < k1; k++) {
              const w = weight[n * K + k];
              const q = Math.min(f.qmax, Math.max(0, Math.round(w / scale) + zero));
              err += (scale * (q - zero) - w) ** 2;
            }
            if (err < best.err) best = { err, scale, zero };
          }
          scales[n * nGroups + g] = best.scale;
          zeros[n * nGroups + g] = best.zero;
          for (let k = k0; k < k1; k++)
            codes[n * K + k] = Math.min(
              f.qmax,
              Math.max(0, Math.round(weight[n * K + k] / best.scale) + best.zero),
            );
        }
      }
      return createQuantizedLinear({
        format: f,
        outFeatures: N,
        inFeatures: K,
        qweight: packMatrix(codes, N, K, f.bits),
        scales,
        zeros,
      });
    },
  };
}

/** The pipeline step: every layer projection of a float model through `quantizer`. */
function quantizeWith(w: LlamaWeights, quantizer: Quantizer, format: string, backend: Backend) {
  let sq = 0;
  let total = 0;
  const layers = w.layers.map((L, l) => {
    const out = { ...L };
    for (const name of Object.keys(LINEAR_NAMES) as LinearName[]) {
      const parts = linearParts(L[name], `layers.${l}.${name}`);
      if (parts.kind !== "float") throw new Error("expected a float model");
      const { outFeatures: N, inFeatures: K } = L[name];
      const q = quantizer.quantize(parts.weight, N, K, format);
      const deq = new Float32Array(N * K);
      referenceDequantize(q, deq);
      for (let i = 0; i < deq.length; i++) sq += (deq[i] - parts.weight[i]) ** 2;
      total += deq.length;
      out[name] = createQuantLinear({ q, backend });
    }
    return out;
  });
  return { weights: { ...w, layers }, rmse: Math.sqrt(sq / total) };
}

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const backend = await createWasmBackend({ threads: 1 });
try {
  const float = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), float.config.vocabSize);
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8")
    .split("<|endoftext|>")
    .slice(quick ? -20 : -100)
    .join("<|endoftext|>");
  const ppl = (w: LlamaWeights) => evaluateStories(w, tok, text, { ctx: 256 }).perplexity;
  const grid = quick ? [1, 0.95, 0.9, 0.85, 0.8] : Array.from({ length: 20 }, (_, i) => 1 - i * 0.025);
  const quantizers = [createRtnQuantizer(), createClipSearchQuantizer(grid)];
  console.log(
    `stories260K, perplexity on ${quick ? 20 : 100} held-out stories; float32: ${ppl(float).toFixed(3)}`,
  );
  console.log("format              quantizer     weight RMSE   perplexity");
  let failed = false;
  for (const format of ["int4-g64-asym-f16", "int3-g64-asym-f16", "int2-g64-asym-f16"]) {
    const res = quantizers.map((qz) => ({ qz, ...quantizeWith(float, qz, format, backend) }));
    for (const r of res)
      console.log(
        `${format.padEnd(20)}${r.qz.name.padEnd(14)}${r.rmse.toFixed(5).padStart(11)}   ${ppl(r.weights).toFixed(3).padStart(10)}`,
      );
    // the search includes s = 1 (the min/max range), so its weight error should not exceed RTN.s
    if (!(res[1].rmse <= res[0].rmse)) failed = true;
  }
  console.log(
    failed
      ? "FAIL: clip-search had a larger weight error than RTN"
      : "ok: clip-search never has a larger weight error than RTN",
  );
  if (failed) process.exitCode = 1;
} finally {
  backend.dispose();
}
