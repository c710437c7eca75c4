// One EMEF training step in a fresh plain-Node process (no TypeScript loader in the measured RSS):
// the child of emef-memory.bench.ts. Argument: a JSON case {shape, fmt, seq}. Prints `RESULT {json}`.
// It imports the built packages (run `npm run build` first; `npm run bench` does).
import { AdamW, backward, memory, setBackend, tidy } from "@int21/autograd";
import { loraParameters } from "@int21/lora";
import { addLlamaLoRA, llamaLoss, syntheticConfig, syntheticWeights } from "@int21/model-llama";
import { bitsPerWeight, createWasmBackend } from "@int21/quant-kernels";

const FORMATS = {
  f32: undefined,
  int4: "int4-g128-asym-f16",
  int2: "int2-g64-asym-f16",
  int2g128: "int2-g128-asym-f16",
};

const gc = globalThis.gc;
let calls = 0;
/** With `--expose-gc`, collects garbage about once per transformer layer (every 7 kernel calls). */
function maybeGc() {
  if (gc && ++calls % 7 === 0) gc();
}

/**
 * Drops the wasm backend's resident copy of a packed layer / constant float weight after each call,
 * and (with `--expose-gc`) collects the JS garbage of finished layers.
 */
function evicting(be) {
  return {
    name: `${be.name}+evict`,
    supports: (k, f) => be.supports(k, f),
    sgemm(args) {
      be.sgemm(args);
      if (args.bConst === true) {
        be.evict(args.B);
        maybeGc();
      }
    },
    dequantize(q, out) {
      be.dequantize(q, out);
      be.evict(q);
    },
    qmatmul(x, rows, q, y) {
      be.qmatmul(x, rows, q, y);
      be.evict(q);
      maybeGc();
    },
    qmatmulT(g, rows, q, dx) {
      be.qmatmulT(g, rows, q, dx);
      be.evict(q);
      maybeGc();
    },
    dispose: () => be.dispose(),
  };
}

const c = JSON.parse(process.argv[2]);
const wasm = await createWasmBackend();
const backend = evicting(wasm);
setBackend(backend);
const config = syntheticConfig(c.shape);
const format = FORMATS[c.fmt];
const t0 = performance.now();
const w = syntheticWeights(config, { backend, seed: 1, ...(format ? { format } : {}) });
const genMs = performance.now() - t0;
let weightBytes = w.tokenEmbedding.byteLength + w.finalNorm.byteLength;
for (const L of w.layers) {
  weightBytes += L.attnNorm.byteLength + L.ffnNorm.byteLength;
  for (const l of [L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3]) weightBytes += l.bytes();
}
if (!config.sharedClassifier) weightBytes += w.classifier.bytes();
const rssAfterWeights = process.memoryUsage().rss;
const bpw = format ? bitsPerWeight(w.layers[0].wq.q) : null;
const model = addLlamaLoRA(w, { targetModules: ["q_proj", "v_proj"], r: 8, alpha: 16, seed: 1 });
const opt = new AdamW(loraParameters(model), { lr: 1e-4 });
const T = c.seq;
const input = new Int32Array(T);
const target = new Int32Array(T);
for (let t = 0; t <= T; t++) {
  const id = ((1 + Math.imul(t + 1, 2654435761)) >>> 0) % config.vocabSize;
  if (t < T) input[t] = id;
  if (t > 0) target[t - 1] = id;
}
const loss = llamaLoss(w, { checkpoint: true });
const t1 = performance.now();
opt.zeroGrad();
const value = tidy(() => {
  const l = loss({ batch: 1, seqLen: T, input, target, tokens: T, inputTokens: T }, { training: true });
  backward(l);
  return l.item();
});
opt.step();
const stepMs = performance.now() - t1;
if (!Number.isFinite(value)) throw new Error(`emef-step: loss is ${value} for ${c.shape} ${c.fmt}`);
const result = {
  ...c,
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  rssAfterWeights,
  stepMs,
  genMs,
  weightBytes,
  bitsPerWeight: bpw,
  ledgerPeakBytes: memory().peakBytes,
  loss: value,
  threads: wasm.threads,
};
wasm.dispose();
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
