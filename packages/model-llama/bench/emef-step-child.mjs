// One EMEF training step in a fresh plain-Node process (no TypeScript loader in the measured RSS):
// the child of emef-memory.bench.ts. Argument: a JSON case {shape, fmt, seq, emb?}. Prints `RESULT {json}`.
// `emb` is the packed token embedding's format for packed cases: a key of EMB_FORMATS (int8, int4,
// int2) or a registry name; default int8 (int8-g64-asym-f16); `f32` keeps a float32 table. Float
// cases always keep a float32 table (and take no `emb`).
// It imports the built packages (run `npm run build` first; `npm run bench` does).
import { AdamW, backward, memory, setBackend, tidy } from "@int21/autograd";
import { loraParameters } from "@int21/lora";
import {
  addLlamaLoRA,
  llamaLoss,
  syntheticConfig,
  syntheticWeights,
  tokenEmbeddingBytes,
} from "@int21/model-llama";
import { bitsPerWeight, getFormat } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";

const FORMATS = {
  f32: undefined,
  int4: "int4-g128-asym-f16",
  int2: "int2-g64-asym-f16",
  int2g128: "int2-g128-asym-f16",
};

/** Token embedding formats of packed cases (`emb` in the case JSON); default int8. */
const EMB_FORMATS = {
  f32: undefined,
  int8: "int8-g64-asym-f16",
  int4: "int4-g64-asym-f16",
  int2: "int2-g64-asym-f16",
};
const DEFAULT_EMB = "int8";

const gc = globalThis.gc;
let calls = 0;
/**
 * With `--expose-gc`, collects garbage after every weight kernel call (qmatmul, qmatmulT, sgemm on a
 * constant weight; INT21_EMEF_GC_EVERY=n: every n such calls),
 * so the peak measures what the step holds, not how long V8 lets dead activation buffers wait. At
 * 1.1B a collection after every call costs no measurable step time (the JS heap is a few MB; the
 * buffers are external) and lowers the INT2 peak by about 30 MB against once per layer (every 7).
 */
const GC_EVERY = Number(process.env.INT21_EMEF_GC_EVERY ?? 1);
function maybeGc() {
  if (gc && ++calls % GC_EVERY === 0) gc();
}

/**
 * The backend with (with `--expose-gc`) a garbage collection after every weight kernel call. The
 * resident copies are bounded by the backend itself (`maxResidentBytes: 0`, what a user training near
 * the memory limit sets), not here.
 */
function collecting(be) {
  return {
    name: `${be.name}+gc`,
    supports: (k, f) => be.supports(k, f),
    sgemm(args) {
      be.sgemm(args);
      if (args.bConst === true) maybeGc();
    },
    dequantize: (q, out) => be.dequantize(q, out),
    qmatmul(x, rows, q, y) {
      be.qmatmul(x, rows, q, y);
      maybeGc();
    },
    qmatmulT(g, rows, q, dx) {
      be.qmatmulT(g, rows, q, dx);
      maybeGc();
    },
    dispose: () => be.dispose(),
  };
}

/**
 * LLaMA weights of `config` with every projection (and the unshared classifier) packed in `format`, and
 * the token embedding packed in `embFormat` (float32 when undefined), written straight into packed words
 * (model-llama's syntheticWeights with codes "random": no float matrix is built; RTN of float blocks takes
 * minutes at 7B).
 */
function packedWeights(config, format, embFormat, backend, seed) {
  return syntheticWeights(config, { codes: "random", format, embeddingFormat: embFormat, backend, seed });
}

const c = JSON.parse(process.argv[2]);
// INT21_EMEF_THREADS: wasm threads (default: the backend's, min(cores, 4)); 1 avoids spinning waits on a busy machine
const threads = process.env.INT21_EMEF_THREADS ? Number(process.env.INT21_EMEF_THREADS) : undefined;
// maxResidentBytes 0: only the layer in use has a re-packed copy in wasm memory (a packed model is
// held once, in JavaScript, not twice)
const wasm = await createWasmBackend({ ...(threads ? { threads } : {}), maxResidentBytes: 0 });
const backend = collecting(wasm);
setBackend(backend);
const config = syntheticConfig(c.shape);
if (!(c.fmt in FORMATS))
  throw new Error(`emef-step: fmt ${c.fmt} is not one of ${Object.keys(FORMATS).join(", ")}`);
const format = FORMATS[c.fmt];
if (!format && c.emb !== undefined && c.emb !== "f32")
  throw new Error(
    `emef-step: the float case ${c.shape}:${c.fmt} keeps a float32 embedding; drop emb ${c.emb}`,
  );
const embKey = format ? (c.emb ?? DEFAULT_EMB) : "f32";
const embFormat = embKey in EMB_FORMATS ? EMB_FORMATS[embKey] : getFormat(embKey).name;
const t0 = performance.now();
// float cases: model-llama's syntheticWeights; packed cases: random codes straight into packed words
const w = format
  ? packedWeights(config, format, embFormat, backend, 1)
  : syntheticWeights(config, { backend, seed: 1 });
const genMs = performance.now() - t0;
const embeddingBytes = tokenEmbeddingBytes(w.tokenEmbedding);
let weightBytes = embeddingBytes + w.finalNorm.byteLength;
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
  embFormat: embFormat ?? "f32",
  embeddingBytes,
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
