// A 7B-shape INT2 EMEF training step, DOM-free (the worker runs it in the tab; the unit test at a small width in
// Node). The weights are synthetic and generated straight into packed words — random 2-bit codes, per-group f16
// scales spreading them over ±√(3/K), mid-range zeros: model-llama's syntheticWeights with codes "random", which the Node
// EMEF benchmark uses too (bench/emef-step-child.mjs) — so no float matrix and no float 7B model is ever built, and a 32-layer model is
// generated in seconds (syntheticWeights' RTN of float blocks takes about 35 s per 7B layer in the tab).
import { AdamW, backward, memory, resetPeak, tidy } from "@int21/autograd";
import { type Batch, loraParameters } from "@int21/lora";
import {
  addLlamaLoRA,
  type LlamaConfig,
  type LlamaWeights,
  llamaLoss,
  syntheticConfig,
  syntheticWeights,
  tokenEmbeddingBytes,
} from "@int21/model-llama";
import { getFormat, type QuantizedLinear } from "@int21/quant-kernels";
import type { WasmBackend } from "@int21/quant-kernels/wasm";

/** What to measure. */
export interface Measure7bOptions {
  /** Layers of the 7B shape to build (1–32). */
  layers: number;
  /** AdamW steps (each one forward + backward + update). */
  steps: number;
  /** Tokens in the one training row. */
  seq: number;
  /** LoRA rank (alpha 2·rank). */
  rank: number;
  /** LoRA targets (default q_proj, v_proj: the EMEF benchmark's). */
  targets?: string[];
  /** Overrides of the 7B shape (the CI-sized variant: a narrower model); default LLaMA-2-7B's. */
  dim?: number;
  hiddenDim?: number;
  nHeads?: number;
  vocabSize?: number;
  /** Format of the projections and the classifier (default int2-g64-asym-f16) and of the embedding (int8-g64-asym-f16). */
  format?: string;
  embeddingFormat?: string;
}

/** One measured step. */
export interface Measure7bStep {
  ms: number;
  loss: number;
  /** autograd's ledger peak during the step (activations, gradients, AdamW state). */
  ledgerPeakBytes: number;
  /** wasm memory in use after the step, and the wasm memory's size (it only grows: the high-water mark). */
  wasmInUseBytes: number;
  wasmMemoryBytes: number;
}

/** What {@link measure7bStep} returns. */
export interface Measure7bResult {
  config: Pick<LlamaConfig, "dim" | "hiddenDim" | "nLayers" | "nHeads" | "vocabSize">;
  format: string;
  embeddingFormat: string;
  targets: string[];
  rank: number;
  seq: number;
  backend: string;
  threads: number;
  /** The backend's resident budget (0: only the layer in use is re-packed into wasm memory). */
  maxResidentBytes: number | null;
  generateMs: number;
  /** Packed bytes the model holds: projections, classifier, embedding (bits + f16 scales/zeros). */
  packedProjectionBytes: number;
  classifierBytes: number;
  embeddingBytes: number;
  /** The same model's projections + classifier as float32 (what EMEF never builds). */
  float32Bytes: number;
  wasmMemoryAfterGenerateBytes: number;
  steps: Measure7bStep[];
}

/** The wasm memory's current size (views of it span the whole memory; it never shrinks). */
export function wasmMemorySize(be: WasmBackend): number {
  const v = be.allocF32(1);
  const n = v.buffer.byteLength;
  be.freeF32(v);
  return n;
}

/** Packed bytes of a quantized layer: its codes plus f16 scales and zeros (what the model needs). */
function packedBytes(q: QuantizedLinear): number {
  const f16 = q.format.scaleDtype === "f16" ? 2 : 4;
  return q.qweight.words.byteLength + (q.scales.length + q.zeros.length) * f16;
}

/**
 * Synthetic LLaMA weights of `config`, every projection and the (unshared) classifier packed in `format`, the
 * token embedding in `embeddingFormat`, generated layer by layer straight into packed words. `onLayer` is told
 * after each layer.
 */
export function packedSyntheticWeights(
  config: LlamaConfig,
  format: string,
  embeddingFormat: string,
  backend: WasmBackend,
  onLayer?: (done: number) => void,
  seed = 1,
): LlamaWeights {
  if (config.sharedClassifier) throw new Error("measure7b: the 7B shape has an unshared classifier");
  return syntheticWeights(config, { codes: "random", format, embeddingFormat, backend, onLayer, seed });
}

/** Progress of a measurement: `phase` generate (done = layers) or step (done = steps). */
export type Measure7bProgress = { phase: "generate" | "step"; done: number; total: number; detail: string };

/**
 * Generates the packed 7B-shape model (with `opts.layers` layers) on `backend` — which must be autograd's backend
 * (setBackend) — puts a rank-`rank` LoRA on `targets`, and runs `steps` EMEF steps (llamaLoss with per-layer
 * checkpointing, backward, AdamW) on one row of `seq` deterministic pseudo-random tokens. Throws if a loss is not
 * finite.
 */
export function measure7bStep(
  opts: Measure7bOptions,
  backend: WasmBackend,
  onProgress: (p: Measure7bProgress) => void = () => {},
  opt: { maxResidentBytes?: number | null } = {},
): Measure7bResult {
  const base = syntheticConfig("7B");
  const check = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isSafeInteger(v) || v < lo || v > hi)
      throw new Error(`measure7b: ${name} must be an integer in ${lo}..${hi}, got ${String(v)}`);
  };
  check("layers", opts.layers, 1, 32);
  check("steps", opts.steps, 1, 1000);
  check("seq", opts.seq, 2, base.seqLen);
  check("rank", opts.rank, 1, 1024);
  const nHeads = opts.nHeads ?? base.nHeads;
  const config: LlamaConfig = {
    ...base,
    nLayers: opts.layers,
    dim: opts.dim ?? base.dim,
    hiddenDim: opts.hiddenDim ?? base.hiddenDim,
    nHeads,
    nKvHeads: nHeads,
    vocabSize: opts.vocabSize ?? base.vocabSize,
  };
  if (config.dim % nHeads !== 0 || (config.dim / nHeads) % 2 !== 0)
    throw new Error(`measure7b: dim ${config.dim} must split into ${nHeads} heads of an even size`);
  const format = getFormat(opts.format ?? "int2-g64-asym-f16").name;
  const embeddingFormat = getFormat(opts.embeddingFormat ?? "int8-g64-asym-f16").name;
  const targets = opts.targets ?? ["q_proj", "v_proj"];
  const t0 = performance.now();
  const w = packedSyntheticWeights(config, format, embeddingFormat, backend, (done) =>
    onProgress({ phase: "generate", done, total: config.nLayers, detail: `layer ${done} generated` }),
  );
  const generateMs = performance.now() - t0;
  let packed = 0;
  for (const L of w.layers)
    for (const k of ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const)
      packed += packedBytes((L[k] as unknown as { q: QuantizedLinear }).q);
  const classifierBytes = packedBytes((w.classifier as unknown as { q: QuantizedLinear }).q);
  const { dim, hiddenDim, vocabSize } = config;
  const float32Bytes = 4 * (config.nLayers * (4 * dim * dim + 3 * dim * hiddenDim) + vocabSize * dim);
  const wasmMemoryAfterGenerateBytes = wasmMemorySize(backend);
  const model = addLlamaLoRA(w, { targetModules: targets, r: opts.rank, alpha: 2 * opts.rank, seed: 1 });
  const adamw = new AdamW(loraParameters(model), { lr: 1e-4, weightDecay: 0 });
  const loss = llamaLoss(w, { checkpoint: true });
  const T = opts.seq;
  const input = new Int32Array(T);
  const target = new Int32Array(T);
  for (let t = 0; t <= T; t++) {
    const id = ((1 + Math.imul(t + 1, 2654435761)) >>> 0) % vocabSize;
    if (t < T) input[t] = id;
    if (t > 0) target[t - 1] = id;
  }
  const batch: Batch = { batch: 1, seqLen: T, input, target, tokens: T, inputTokens: T };
  const steps: Measure7bStep[] = [];
  for (let s = 0; s < opts.steps; s++) {
    const t = performance.now();
    resetPeak();
    adamw.zeroGrad();
    const l = tidy(() => {
      const v = loss(batch, { training: true });
      backward(v);
      return v.item();
    });
    adamw.step();
    if (!Number.isFinite(l)) throw new Error(`measure7b: step ${s + 1}: the loss is ${l}`);
    steps.push({
      ms: performance.now() - t,
      loss: l,
      ledgerPeakBytes: memory().peakBytes,
      wasmInUseBytes: backend.memoryBytes(),
      wasmMemoryBytes: wasmMemorySize(backend),
    });
    onProgress({
      phase: "step",
      done: s + 1,
      total: opts.steps,
      detail: `step ${s + 1}: ${(steps[s].ms / 1000).toFixed(1)} s, loss ${l.toFixed(3)}`,
    });
  }
  return {
    config: { dim, hiddenDim, nLayers: config.nLayers, nHeads, vocabSize },
    format,
    embeddingFormat,
    targets,
    rank: opts.rank,
    seq: T,
    backend: backend.name,
    threads: backend.threads,
    maxResidentBytes: opt.maxResidentBytes ?? null,
    generateMs,
    packedProjectionBytes: packed,
    classifierBytes,
    embeddingBytes: tokenEmbeddingBytes(w.tokenEmbedding),
    float32Bytes,
    wasmMemoryAfterGenerateBytes,
    steps,
  };
}
