// A new quantizer is one object: `{ name, quantize(weight, N, K, format) }`. This one is HQQ-style (half-quadratic
// quantization, Badri & Shaji 2023): per group it keeps RTN's scale and moves the zero point to minimise an
// lp error (p < 1, robust to outliers) by alternating a shrinkage step and a closed-form zero update. Passed
// to quantizeModel it gets the sequential calibration pipeline and the per-layer error report (with RTN's
// error on the same activations) without a line of pipeline code here.
import { type LlamaWeights, calibrationWindows, evaluateStories, quantizeModel } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import {
  type Quantizer,
  checkWeight,
  getFormat,
  packQuantizedLinear,
  roundToF16,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { readFileSync } from "node:fs";

/** HQQ-style: fixed min/max scale, zero point optimised for Σ|w − ŵ|^p by half-quadratic splitting. */
function hqq({ iters = 20, p = 0.7, beta = 10, kappa = 1.01 } = {}): Quantizer {
  return {
    name: "hqq",
    quantize(weight, N, K, format) {
      checkWeight("hqq", weight, N, K);
      const f = getFormat(format);
      if (f.decode !== "affine" || f.symmetric || f.groupSize === -1)
        throw new Error(`hqq: needs an asymmetric grouped affine format, got ${f.name}`);
      const G = f.groupSize;
      const nG = Math.ceil(K / G);
      const [codes, scales, zeros] = [
        new Uint8Array(N * K),
        new Float32Array(N * nG),
        new Float32Array(N * nG),
      ];
      const code = (w: number, s: number, z: number) => Math.min(f.qmax, Math.max(0, Math.round(w / s + z)));
      const sqErr = (w: Float32Array, s: number, z: number) =>
        w.reduce((a, x) => a + (x - Math.fround(s * (code(x, s, z) - z))) ** 2, 0);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < nG; g++) {
          const w = weight.subarray(n * K + g * G, n * K + Math.min(K, (g + 1) * G));
          const rtn = f.params(Math.min(...w), Math.max(...w));
          const s = rtn.scale;
          let z = rtn.zero;
          let b = beta;
          for (let it = 0; it < iters; it++, b *= kappa) {
            let sum = 0; // e = shrink_p(w − ŵ), then z = mean(q − (w − e)/s)
            for (const x of w) {
              const q = code(x, s, z);
              const r = x - s * (q - z);
              const e = Math.sign(r) * Math.max(0, Math.abs(r) - Math.abs(r) ** (p - 1) / b);
              sum += q - (x - e) / s;
            }
            z = Math.min(f.qmax, Math.max(0, sum / w.length));
          }
          z = Math.min(f.qmax, f.paramBytes === 2 ? roundToF16(z) : Math.fround(z));
          if (sqErr(w, s, rtn.zero) < sqErr(w, s, z)) z = rtn.zero; // never worse than RTN on the weights
          [scales[n * nG + g], zeros[n * nG + g]] = [s, z];
          w.forEach((x, i) => {
            codes[n * K + g * G + i] = code(x, s, z);
          });
        }
      }
      return packQuantizedLinear(f, N, K, codes, scales, zeros);
    },
  };
}

const quick = process.env.INT21_EXAMPLE_QUICK === "1";
const backend = await createWasmBackend({ threads: 1 });
try {
  const float = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
  const tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), float.config.vocabSize);
  const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
  const heldOut = stories.slice(quick ? -20 : -100).join("<|endoftext|>");
  const calib = calibrationWindows(tok.encode(stories.slice(0, 40).join("\n")), 8, 128, tok.bosId);
  const ppl = (w: LlamaWeights) => evaluateStories(w, tok, heldOut, { ctx: 256 }).perplexity.toFixed(3);
  console.log(`stories260K, perplexity on ${quick ? 20 : 100} held-out stories; float32: ${ppl(float)}`);
  console.log("format              quantizer  output error (mean of 35)  beats RTN  perplexity");
  let failed = false;
  for (const format of ["int4-g64-asym-f16", "int3-g64-asym-f16", "int2-g64-asym-f16"]) {
    const rtn = quantizeModel(float, { quantizer: "rtn", format, calib, backend });
    const mine = quantizeModel(float, { quantizer: hqq({ iters: quick ? 5 : 20 }), format, calib, backend });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const [eRtn, eMine] = [
      mean(rtn.report.map((r) => r.relError!)),
      mean(mine.report.map((r) => r.relError!)),
    ];
    const wins = mine.report.filter((r) => r.relError! < r.rtnRelError!).length;
    console.log(
      `${format.padEnd(20)}rtn        ${eRtn.toFixed(4).padStart(25)}  ${"".padStart(9)}  ${ppl(rtn.weights).padStart(10)}`,
    );
    console.log(
      `${format.padEnd(20)}hqq        ${eMine.toFixed(4).padStart(25)}  ${`${wins}/35`.padStart(9)}  ${ppl(mine.weights).padStart(10)}`,
    );
    // the report's RTN baseline is measured on the same (sequentially propagated) activations as hqq's error
    if (!(eMine <= mean(mine.report.map((r) => r.rtnRelError!)))) failed = true;
  }
  console.log(
    failed
      ? "FAIL: hqq had a larger mean output error than RTN"
      : "ok: hqq's mean output error is at most RTN's at every width",
  );
  if (failed) process.exitCode = 1;
} finally {
  backend.dispose();
}
