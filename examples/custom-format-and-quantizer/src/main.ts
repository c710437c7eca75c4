// One user file: a new 3-bit codebook format and a new quantizer quantize stories260K; EMEF fine-tunes on top.
import { readFileSync } from "node:fs";
import { textDataset } from "@int21/lora";
import * as qk from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";

// the model core and its file formats (readers, tokenizers: @int21/loaders) as one namespace
const llama = { ...(await import("@int21/model-llama")), ...(await import("@int21/loaders")) };

// NF3, NF4's construction at 3 bits (normal quantiles, 0 exact): w = scale·NF3[q], an f16 scale per 64 weights.
const NF3 = [-1, -0.4786, -0.2172, 0, 0.1609, 0.3379, 0.5626, 1];
const spec = { id: 10_003, name: "nf3-g64-f16", bits: 3, groupSize: 64, scaleDtype: "f16" } as const;
qk.registerFormat(qk.defineLutFormat({ ...spec, codebook: NF3 }));

// Lloyd: from RTN's absmax scale, alternate the least-squares scale of a group's codes and the nearest codes.
function lloyd(w: Float32Array, N: number, K: number, format: qk.QuantFormat | string | number) {
  const f = qk.getFormat(format);
  if (f.decode !== "lut" || f.groupSize === -1) throw new Error(`lloyd: ${f.name} is no grouped codebook`);
  const [G, cb, nG] = [f.groupSize, f.codebook!, Math.ceil(K / f.groupSize)];
  const [codes, scales] = [new Uint8Array(N * K), new Float32Array(N * nG)];
  for (let p = 0; p < N * nG; p++) {
    const [o, len] = [Math.floor(p / nG) * K + (p % nG) * G, Math.min(G, K - (p % nG) * G)];
    scales[p] = f.quantizeGroup(w, o, len, 1, codes, o).scale;
    for (let it = 0, wc = 0, cc = 0; it < 4; it++, wc = cc = 0) {
      for (let i = o; i < o + len; i++) [wc, cc] = [wc + w[i] * cb[codes[i]], cc + cb[codes[i]] ** 2];
      scales[p] = qk.roundToF16(wc / cc) || scales[p];
      for (let i = o; i < o + len; i++) codes[i] = f.code(w[i], scales[p], 0);
    }
  }
  return qk.packQuantizedLinear(f, N, K, codes, scales, new Float32Array(N * nG));
}
qk.registerQuantizer("lloyd", () => ({ name: "lloyd", quantize: lloyd }), "least-squares codebook scales");

const backend = await (await import("@int21/quant-kernels/wasm")).createWasmBackend({ threads: 1 });
const float = llama.loadLlama2c(sharedPath(SHARED.stories260K), { backend });
const tok = llama.Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512), float.config.vocabSize);
const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
const calib = llama.calibrationWindows(tok.encode(stories.slice(0, 40).join("\n")), 8, 128, tok.bosId);
const q = llama.quantizeModel(float, { quantizer: "lloyd", format: spec.name, calib, backend });
const err = (k: "relError" | "rtnRelError") => q.report.reduce((a, e) => a + e[k]!, 0) / q.report.length;
const ppl = () => llama.evaluateStories(q.weights, tok, stories.slice(-20).join("<|endoftext|>")).perplexity;
console.log(`nf3: output error rtn ${err("rtnRelError").toFixed(4)}, lloyd ${err("relError").toFixed(4)}`);
const [p0, train] = [ppl(), textDataset(stories.slice(40, 400).join("\n"), tok, { seqLen: 128 })];
const lora = { targetModules: ["q_proj", "v_proj", "down_proj"], r: 8, alpha: 16 };
const run = await llama.finetune(q.weights, { train }, { lora, lr: 5e-3, steps: 20, batchSize: 4, backend });
const [l0, l1] = [run.history.train[0][1], run.history.train[19][1]];
console.log(`EMEF loss ${l0.toFixed(3)} → ${l1.toFixed(3)}, ppl ${p0.toFixed(3)} → ${ppl().toFixed(3)}`);
if (!(err("relError") < err("rtnRelError") && l1 < l0)) throw new Error("lloyd lost or EMEF did not learn");
