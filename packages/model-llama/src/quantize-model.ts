import {
  type Backend,
  createFloatLinear,
  type Linear,
  createQuantLinear,
  type QuantFormat,
  type QuantizedLinear,
  type QuantizeOptions,
  type Quantizer,
  createHessian,
  createReferenceBackend,
  isBlockFormat,
  makeFormat,
  needsCalibration,
  quantizerNames,
  resolveQuantizer,
  rtnQuantize,
} from "@int21/quant-kernels";
import { type LlamaConfig, headSize, kvDim, qDim } from "./config";
import {
  type TokenEmbedding,
  embeddingRows,
  isPackedEmbedding,
  isTiedClassifier,
  quantizeTokenEmbedding,
  tiedClassifier,
} from "./embedding";
import { llamaBlock, type BlockAttention } from "./block";
import { type RowBuffers, RowOps, attention, rope } from "./forward";
import {
  assertFinite,
  extraLayerSpecs,
  llamaTensorSpecs,
  resolveFormat,
  type TensorReader,
} from "./load-assemble";
import { linearParts } from "./linear-parts";
import { type RunState, createRunState } from "./run-state";
import type { LayerWeights, LinearName, LlamaWeights } from "./weights";

/** Progress of {@link quantizeModel}, reported after each projection. */
export interface QuantizeProgress {
  /** Projections quantized so far. */
  done: number;
  total: number;
  layer: number;
  name: LinearName;
  elapsedMs: number;
  /** Linear extrapolation of the remaining time. */
  etaMs: number;
}

/** Options of {@link quantizeModel}. */
export interface QuantizeModelOptions {
  /** Target format (record or registry name), or its parameters (`symmetric` false, `scaleDtype` f16 by default). */
  format:
    | QuantFormat
    | string
    | { bits: 2 | 3 | 4 | 8; groupSize: 32 | 64 | 128 | -1; symmetric?: boolean; scaleDtype?: "f16" | "f32" };
  /**
   * The quantizer of every projection: a `Quantizer` value (`gptq({ actOrder: true })`, `rtn()`, your own) or
   * the name of a registered one (`"rtn"`, `"gptq"`, or one added with `registerQuantizer`). A quantizer
   * with `needsHessian` / `needsActivations` gets the sequential calibration (needs `calib`).
   */
  quantizer?: Quantizer | string;
  /**
   * The older spelling of `quantizer` (give one of the two): `"rtn"`: round-to-nearest per projection;
   * `"gptq"`: sequential GPTQ over calibration activations; any registered name or a `Quantizer`.
   */
  method?: "rtn" | "gptq" | (string & {}) | Quantizer;
  /** With a quantizer given by name (GPTQ): quantize columns by decreasing Hessian diagonal (stores `gIdx`). */
  actOrder?: boolean;
  /** With a quantizer given by name (GPTQ): Hessian dampening as a fraction of its mean diagonal. */
  damp?: number;
  /**
   * Calibration token windows (each at most `seqLen` tokens). Required when the quantizer needs a Hessian
   * or activations (GPTQ); otherwise they are only used to measure the per-projection output error.
   */
  calib?: ArrayLike<number>[];
  /**
   * Held-out token windows: their activations go through the same (quantized) layers and every
   * projection's error is also measured on them (`heldOutRelError`, `heldOutRtnRelError`). Needs `calib`.
   */
  heldOut?: ArrayLike<number>[];
  /**
   * Also pack the token embedding, round-to-nearest, in this format (e.g. `"int8-g64-asym-f16"`; record,
   * name or parameters as for `format`). A tied classifier (`sharedClassifier`) then becomes a quantized
   * linear over the same packed record, and calibration windows start from the packed table's rows
   * (what the returned model computes). Default: the embedding is kept as given.
   */
  embedding?: QuantizeModelOptions["format"];
  /** Backend for the forward passes, Hessians and returned linears (default: a new reference backend). */
  backend?: Backend;
  onProgress?: (p: QuantizeProgress) => void;
}

/** Output error of one quantized projection over the calibration inputs it saw. */
export interface LinearErrorReport {
  layer: number;
  name: LinearName;
  /**
   * Set when the projection is not in the asked format: the format it was stored in instead (a ggml block
   * format's row was not a whole number of its blocks; see {@link fitBlockFormat}), or `"float"` when no
   * fallback format fits either (the projection is kept float, as llama-quantize keeps it F16).
   */
  fallback?: string;
  /** ‖XWᵀ − XŴᵀ‖_F / ‖XWᵀ‖_F for this method's Ŵ (absent without calibration). */
  relError?: number;
  /**
   * The same for round-to-nearest Ŵ on the same X (every quantizer but RTN itself): the baseline the
   * quantizer should beat.
   */
  rtnRelError?: number;
  /** `relError` on the held-out windows' activations (when `heldOut` is given). */
  heldOutRelError?: number;
  /** `rtnRelError` on the held-out windows' activations (with `heldOut`, every quantizer but RTN). */
  heldOutRtnRelError?: number;
}

/** What {@link quantizeModel} returns. */
export interface QuantizeModelResult {
  weights: LlamaWeights;
  report: LinearErrorReport[];
  /** Name of the quantizer that ran (`"gptq"`, …). */
  quantizer: string;
}

const ORDER: LinearName[] = ["wq", "wk", "wv", "wo", "w1", "w3", "w2"];

/** llama-quantize's fallback types for rows that are not a whole number of a k-quant's 256-weight blocks. */
const BLOCK_FALLBACK: Readonly<Record<string, string>> = {
  q2_k: "iq4_nl-ggml",
  q3_k: "iq4_nl-ggml",
  iq4_xs: "iq4_nl-ggml",
  q4_k: "q5_0",
  q5_k: "q5_1",
  q6_k: "q8_0",
};

/**
 * The format a projection with `K` input columns is stored in when `format` is asked for. Only ggml
 * block formats constrain K (a row is whole blocks): as `llama-quantize` does, a k-quant whose 256-weight
 * block does not divide K falls back to Q2_K/Q3_K/IQ4_XS → IQ4_NL, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0
 * (32-weight blocks); when that does not divide K either, `undefined`: keep the projection float
 * (llama-quantize writes it F16). Every other format is returned as it is.
 */
export function fitBlockFormat(format: QuantFormat, K: number): QuantFormat | undefined {
  if (!isBlockFormat(format) || K % format.groupSize === 0) return format;
  const next = BLOCK_FALLBACK[format.name];
  if (next === undefined) return undefined;
  const f = resolveFormat(next);
  return K % f.groupSize === 0 ? f : undefined;
}

function toFormat(f: QuantizeModelOptions["format"]): QuantFormat {
  if (typeof f === "string" || "id" in f) return resolveFormat(f as QuantFormat | string);
  return makeFormat({
    bits: f.bits,
    groupSize: f.groupSize,
    symmetric: f.symmetric ?? false,
    scaleDtype: f.scaleDtype ?? "f16",
  });
}

/**
 * Quantizes every layer projection of a float model (norms and an untied classifier stay as they are;
 * the embedding too unless `opts.embedding` asks for it to be packed).
 *
 * `opts.quantizer` quantizes each projection. Without calibration windows (RTN), each projection
 * independently. With `calib` (required when the quantizer `needsHessian` or `needsActivations`), "true
 * sequential" as in GPTQ's LLaMA script (Frantar et al. 2022): the calibration windows run through the
 * model layer by layer; inside a layer the inputs of q/k/v, then o, then gate/up, then down are captured
 * (a Hessian `H = 2XᵀX/n` is built only for a quantizer that needs one), the projections are quantized, and
 * the *quantized* sub-block's outputs feed the next capture and the next layer. The report gives each
 * projection's relative output error on the inputs it was calibrated on and, for every quantizer but RTN,
 * round-to-nearest's error on the same inputs.
 *
 * ```ts
 * quantizeModel(w, { quantizer: gptq({ actOrder: true }), format: "int4-g128-asym-f16", calib });
 * quantizeModel(w, { quantizer: "rtn", format: { bits: 4, groupSize: 64 } });
 * ```
 *
 * Memory: the float model, plus the calibration activations of all windows at once, about
 * `rows · (4·dim + 2·kvDim + 3·hiddenDim) · 4` bytes for `rows` = total calibration tokens (stories260K
 * with 1,024 tokens: 3.4 MB; a 7B shape with 16 × 512 tokens: about 1.9 GB), plus one K×K Hessian.
 */
export function quantizeModel(weights: LlamaWeights, opts: QuantizeModelOptions): QuantizeModelResult {
  const backend = opts.backend ?? createReferenceBackend();
  const { tokenEmbedding, classifier } = packEmbedding(
    weights.config,
    weights.tokenEmbedding,
    weights.classifier,
    opts,
    backend,
    "quantizeModel",
  );
  const lq = new LayerQuantizer(weights.config, tokenEmbedding, { ...opts, backend });
  const layers = weights.layers.map((L, l) => lq.quantizeLayer(l, L));
  return {
    weights: { ...weights, tokenEmbedding, classifier, layers },
    report: lq.report,
    quantizer: lq.quantizer.name,
  };
}

/**
 * The embedding (and tied classifier) of the quantized model: unchanged without `opts.embedding`,
 * else the RTN-packed table and, with `sharedClassifier`, a quantized linear over that same record.
 */
function packEmbedding(
  config: LlamaConfig,
  tokenEmbedding: TokenEmbedding,
  classifier: Linear,
  opts: QuantizeModelOptions,
  backend: Backend,
  source: string,
): { tokenEmbedding: TokenEmbedding; classifier: Linear } {
  if (opts.embedding === undefined) return { tokenEmbedding, classifier };
  if (isPackedEmbedding(tokenEmbedding))
    throw new Error(`${source}: tokenEmbedding is already packed; omit the embedding option`);
  if (config.sharedClassifier && !isTiedClassifier(classifier, tokenEmbedding))
    throw new Error(
      `${source}: sharedClassifier is set but the classifier is not the float linear over tokenEmbedding (LoRA-wrapped?); cannot pack the shared table`,
    );
  const packed = quantizeTokenEmbedding(tokenEmbedding, config, toFormat(opts.embedding));
  return {
    tokenEmbedding: packed,
    classifier: config.sharedClassifier ? tiedClassifier(packed, config, backend) : classifier,
  };
}

/**
 * {@link quantizeModel} straight from a float checkpoint's {@link TensorReader} (`quantizeCheckpoint(path)` of
 * `@int21/loaders` opens a llama2.c `.bin`, a Hugging Face directory or a GGUF file), reading one layer's float
 * weights at a time: the float model never exists whole, so GPTQ fits models whose float form does not fit in
 * memory. The embedding, norms and classifier are read once and kept float (the embedding is packed when
 * `opts.embedding` asks). Gives bit-identical results to `quantizeModel` of the whole loaded model. `open` is
 * called after the quantizer is checked (a bad one fails before any file is read); the reader is closed.
 */
export async function quantizeFromReader(
  open: () => TensorReader | Promise<TensorReader>,
  opts: QuantizeModelOptions,
): Promise<QuantizeModelResult> {
  const quantizer = pickQuantizer(opts); // before any reading: a bad quantizer fails at once
  const reader = await open();
  try {
    const { config, source } = reader;
    const backend = opts.backend ?? createReferenceBackend();
    const read = async (name: string, n: number) => {
      const data = await reader.read(name);
      if (data.length !== n)
        throw new Error(`${reader.fileOf(name)}: tensor ${name} has ${data.length} values, expected ${n}`);
      assertFinite(data, reader.fileOf(name), name);
      return data;
    };
    const { dim, vocabSize } = config;
    const floatEmbedding = await read("tokenEmbedding", vocabSize * dim);
    const finalNorm = await read("finalNorm", dim);
    const { tokenEmbedding, classifier } = packEmbedding(
      config,
      floatEmbedding,
      createFloatLinear({
        weight: config.sharedClassifier ? floatEmbedding : await read("classifier", vocabSize * dim),
        outFeatures: vocabSize,
        inFeatures: dim,
        backend,
      }),
      opts,
      backend,
      reader.source,
    );
    const specs = new Map(llamaTensorSpecs(config).map((t) => [t.name, t.shape]));
    const lq = new LayerQuantizer(config, tokenEmbedding, { ...opts, backend }, source, quantizer);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < config.nLayers; l++) {
      const p = `layers.${l}.`;
      const norm = (n: string) => read(p + n, dim);
      const lin = async (n: LinearName) => {
        const [N, K] = specs.get(p + n)!;
        return createFloatLinear({
          weight: await read(p + n, N * K),
          outFeatures: N,
          inFeatures: K,
          backend,
        });
      };
      const float: LayerWeights = {
        attnNorm: await norm("attnNorm"),
        wq: await lin("wq"),
        wk: await lin("wk"),
        wv: await lin("wv"),
        wo: await lin("wo"),
        ffnNorm: await norm("ffnNorm"),
        w1: await lin("w1"),
        w2: await lin("w2"),
        w3: await lin("w3"),
      };
      for (const e of extraLayerSpecs(config)) float[e.name] = await read(p + e.name, e.shape[0]);
      layers.push(lq.quantizeLayer(l, float));
    }
    return {
      weights: { config, tokenEmbedding, layers, finalNorm, classifier },
      report: lq.report,
      quantizer: lq.quantizer.name,
    };
  } finally {
    await reader.close();
  }
}

/**
 * The quantizer `opts` asks for: `opts.quantizer` or the older `opts.method` (a value, or a registered name
 * made with `actOrder` / `damp`). Throws listing the registered names for anything else, and when the
 * quantizer needs calibration and `opts.calib` is empty.
 */
function pickQuantizer(opts: QuantizeModelOptions): Quantizer {
  if (opts.quantizer !== undefined && opts.method !== undefined)
    throw new Error("quantizeModel: give opts.quantizer or opts.method (its older name), not both");
  const spec = opts.quantizer ?? opts.method;
  if (spec === undefined)
    throw new Error(
      `quantizeModel: opts.quantizer is required: a Quantizer or a registered name (${quantizerNames().join(", ")})`,
    );
  const q = resolveQuantizer("quantizeModel", spec, {
    actOrder: opts.actOrder === true ? true : undefined,
    dampening: opts.damp,
  });
  if (needsCalibration(q) && (opts.calib ?? []).length === 0)
    throw new Error(
      `quantizeModel: ${q.name === "gptq" ? "GPTQ" : `the ${q.name} quantizer`} needs calibration windows (opts.calib) for its ${q.needsHessian === true ? "Hessian" : "activations"}`,
    );
  return q;
}

/** Quantizes one layer at a time, carrying the calibration activations from layer to layer. */
class LayerQuantizer {
  readonly report: LinearErrorReport[] = [];
  private readonly format: QuantFormat;
  private readonly backend: Backend;
  private readonly ref = createReferenceBackend();
  readonly quantizer: Quantizer;
  private readonly cal?: Calibration;
  private readonly heldOut?: Calibration;
  private readonly total: number;
  private readonly t0 = Date.now();
  private done = 0;

  constructor(
    config: LlamaConfig,
    tokenEmbedding: TokenEmbedding,
    private readonly opts: QuantizeModelOptions,
    private readonly source = "quantizeModel",
    quantizer?: Quantizer,
  ) {
    this.format = toFormat(opts.format);
    this.backend = opts.backend ?? createReferenceBackend();
    this.total = config.nLayers * ORDER.length;
    const calib = opts.calib ?? [];
    this.quantizer = quantizer ?? pickQuantizer(opts);
    if (calib.length > 0) this.cal = new Calibration(config, tokenEmbedding, calib);
    if (opts.heldOut && opts.heldOut.length > 0) {
      if (!this.cal)
        throw new Error("quantizeModel: heldOut windows need calibration windows (opts.calib) too");
      this.heldOut = new Calibration(config, tokenEmbedding, opts.heldOut);
    }
  }

  private tick(layer: number, name: LinearName): void {
    this.done++;
    const elapsedMs = Date.now() - this.t0;
    const etaMs = (elapsedMs / this.done) * (this.total - this.done);
    this.opts.onProgress?.({ done: this.done, total: this.total, layer, name, elapsedMs, etaMs });
  }

  /** Float32 values of a dequantized record, as a float linear (the calibration's view of Ŵ). */
  private dense(q: QuantizedLinear, N: number, K: number): Linear {
    const w = new Float32Array(N * K);
    (this.backend.supports("dequantize", q.format) ? this.backend : this.ref).dequantize(q, w);
    return createFloatLinear({ weight: w, outFeatures: N, inFeatures: K, backend: this.backend });
  }

  /** Quantizes layer `l` (float projections) and advances the calibration past it; returns the packed layer. */
  quantizeLayer(l: number, floatLayer: LayerWeights): LayerWeights {
    const { backend, format, quantizer } = this;
    const floatOf = (n: LinearName) => {
      const p = linearParts(floatLayer[n], `layers.${l}.${n}`);
      if (p.kind !== "float") {
        throw new Error(`${this.source}: layers.${l}.${n} is already quantized; start from a float model`);
      }
      return p.weight;
    };
    const out: LayerWeights = { ...floatLayer };
    const cal = this.cal;
    if (!cal) {
      for (const n of ORDER) {
        const L = floatLayer[n];
        const f = fitBlockFormat(format, L.inFeatures);
        const entry: LinearErrorReport = { layer: l, name: n };
        if (f !== format) entry.fallback = f?.name ?? "float";
        if (f !== undefined) {
          const q = quantizer.quantize(floatOf(n), L.outFeatures, L.inFeatures, f, { backend });
          out[n] = createQuantLinear({ q, backend });
        } else floatOf(n); // checks it is float; the float projection stays as it is
        this.report.push(entry);
        this.tick(l, n);
      }
      return out;
    }
    // Calibration runs on a float twin of the layer: the original float projections, replaced by
    // their dequantized weights as they are quantized (the values the packed kernels compute, at
    // float-GEMM speed). The returned layer holds the packed projections.
    const twin: LayerWeights = { ...floatLayer };
    const baseline = quantizer.name !== "rtn";
    const held = this.heldOut !== undefined;
    /** Per projection: its report entry and the format it was quantized in (held-out errors come later). */
    const done = new Map<LinearName, { entry: LinearErrorReport; fmt: QuantFormat }>();
    const quantizeGroup = (names: readonly LinearName[], X: Float32Array, K: number) => {
      // Only what the quantizer asks for: the Hessian (a K×K accumulation) and/or the inputs themselves.
      const qopts: QuantizeOptions = { backend };
      if (quantizer.needsHessian === true) {
        const H = createHessian(K, { backend });
        H.add(X, cal.rows);
        qopts.hessian = H;
      }
      if (quantizer.needsActivations === true) qopts.activations = { data: X, rows: cal.rows };
      for (const n of names) {
        const w = floatOf(n);
        const N = floatLayer[n].outFeatures;
        const fmt = fitBlockFormat(format, K);
        if (fmt === undefined) {
          // No block of the asked format (or its fallback) fits K: the projection stays float, exactly.
          this.report.push({ layer: l, name: n, fallback: "float", relError: 0 });
          this.tick(l, n);
          continue;
        }
        const q = quantizer.quantize(w, N, K, fmt, qopts);
        const f = createFloatLinear({ weight: w, outFeatures: N, inFeatures: K, backend });
        twin[n] = this.dense(q, N, K);
        const entry: LinearErrorReport = {
          layer: l,
          name: n,
          relError: relOutputError(f, twin[n], X, cal.rows),
        };
        if (fmt !== format) entry.fallback = fmt.name;
        // Held-out errors are measured after the layer (below); their keys keep the report's field order.
        if (held) entry.heldOutRelError = Number.NaN;
        if (baseline) {
          const r = this.dense(rtnQuantize(w, N, K, fmt), N, K);
          entry.rtnRelError = relOutputError(f, r, X, cal.rows);
          if (held) entry.heldOutRtnRelError = Number.NaN;
        }
        out[n] = createQuantLinear({ q, backend });
        this.report.push(entry);
        done.set(n, { entry, fmt });
        this.tick(l, n);
      }
    };
    // The calibration windows run through the layer's block; the first projection of each group
    // quantizes the group on its inputs, and the block goes on with the quantized (dense) weights.
    cal.runLayer(twin, (name, X) => {
      const group = GROUPS[name];
      if (group !== undefined) quantizeGroup(group, X, floatLayer[name].inFeatures);
    });
    const ev = this.heldOut;
    if (ev) {
      // The held-out windows through the quantized layer: each projection's input is what it was
      // while quantizing (every projection before it in the block is quantized by then).
      ev.runLayer(twin, (n, Xe) => {
        const d = done.get(n);
        if (d === undefined) return;
        const w = floatOf(n);
        const { outFeatures: N, inFeatures: K } = floatLayer[n];
        const f = createFloatLinear({ weight: w, outFeatures: N, inFeatures: K, backend });
        d.entry.heldOutRelError = relOutputError(f, twin[n], Xe, ev.rows);
        if (baseline) {
          const r = this.dense(rtnQuantize(w, N, K, d.fmt), N, K);
          d.entry.heldOutRtnRelError = relOutputError(f, r, Xe, ev.rows);
        }
      });
    }
    return out;
  }
}

/** `‖X·Aᵀ − X·Bᵀ‖_F / ‖X·Aᵀ‖_F` over `rows` rows of X. */
export function relOutputError(a: Linear, b: Linear, X: Float32Array, rows: number): number {
  const ya = new Float32Array(rows * a.outFeatures);
  const yb = new Float32Array(rows * b.outFeatures);
  a.forward(X, rows, ya);
  b.forward(X, rows, yb);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ya.length; i++) {
    const d = ya[i] - yb[i];
    num += d * d;
    den += ya[i] * ya[i];
  }
  return Math.sqrt(num / den);
}

/** The projection groups of sequential GPTQ, by their first projection in the block: each group shares its input. */
const GROUPS: Partial<Record<LinearName, readonly LinearName[]>> = {
  wq: ["wq", "wk", "wv"],
  wo: ["wo"],
  w1: ["w1", "w3"],
  w2: ["w2"],
};

/** Called with each projection's input `[rows × inFeatures]` before the projection runs. */
type BeforeLinear = (name: LinearName, X: Float32Array) => void;

/**
 * The block's {@link RowOps} over every calibration window stacked into one `[rows × width]` matrix
 * (so each projection is one GEMM, through `Linear.forward`); RoPE and attention run window by window,
 * each window from position 0, through a one-layer run state's cache.
 */
class WindowOps extends RowOps {
  /** Called before each projection (GPTQ captures its input here and may replace the weights). */
  before: BeforeLinear | undefined;

  constructor(
    config: LlamaConfig,
    buf: RowBuffers,
    rows: number,
    private readonly starts: readonly number[],
    private readonly lengths: readonly number[],
    private readonly state: RunState,
  ) {
    super(config, buf);
    this.rows = rows;
  }

  override linear(x: Float32Array, L: LayerWeights, name: LinearName, layer: number): Float32Array {
    this.before?.(
      name,
      x.length === this.rows * L[name].inFeatures ? x : x.subarray(0, this.rows * L[name].inFeatures),
    );
    return super.linear(x, L, name, layer);
  }

  protected override project(lin: Linear, x: Float32Array, out: Float32Array): void {
    lin.forward(x, this.rows, out);
  }

  rope(t: Float32Array, heads: number): Float32Array {
    const hs = headSize(this.config);
    const width = heads * hs;
    for (let i = 0; i < this.starts.length; i++)
      rope(t.subarray(this.starts[i] * width), this.lengths[i], width, hs, 0, this.state);
    return t;
  }

  attention(q: Float32Array, k: Float32Array, v: Float32Array, at: BlockAttention): Float32Array {
    const qd = qDim(this.config);
    const kv = kvDim(this.config);
    const s = this.state;
    const out = this.buf.xb;
    for (let i = 0; i < this.starts.length; i++) {
      const r0 = this.starts[i];
      const T = this.lengths[i];
      s.q.set(q.subarray(r0 * qd, (r0 + T) * qd));
      s.keyCache.set(k.subarray(r0 * kv, (r0 + T) * kv));
      s.valueCache.set(v.subarray(r0 * kv, (r0 + T) * kv));
      attention(s, 0, T, 0, out.subarray(r0 * qd, (r0 + T) * qd), at.window);
    }
    return out;
  }
}

/**
 * The calibration activations of every window, advanced one layer at a time by {@link llamaBlock}
 * (the block inference and training run), all windows stacked so each projection is one GEMM.
 */
class Calibration {
  readonly rows: number;
  /** `[rows × dim]` residual stream of every window, at the current layer boundary. */
  readonly x: Float32Array;
  private readonly ops: WindowOps;
  /** Index of the layer the activations are at (advanced by {@link runLayer}). */
  private layer = 0;

  constructor(c: LlamaConfig, tokenEmbedding: TokenEmbedding, windows: ArrayLike<number>[]) {
    const starts: number[] = [];
    const lengths: number[] = [];
    let rows = 0;
    let maxLen = 0;
    windows.forEach((w, i) => {
      if (w.length < 1 || w.length > c.seqLen)
        throw new Error(
          `quantizeModel: calibration window ${i} has ${w.length} tokens, expected 1..${c.seqLen}`,
        );
      for (let j = 0; j < w.length; j++) {
        const t = w[j];
        if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
          throw new Error(
            `quantizeModel: calibration window ${i} token ${j} = ${t} is outside [0, ${c.vocabSize})`,
          );
      }
      starts.push(rows);
      lengths.push(w.length);
      rows += w.length;
      maxLen = Math.max(maxLen, w.length);
    });
    this.rows = rows;
    this.x = new Float32Array(rows * c.dim);
    windows.forEach((w, i) => {
      const r0 = starts[i];
      embeddingRows({ config: c, tokenEmbedding }, w, this.x.subarray(r0 * c.dim, (r0 + w.length) * c.dim));
    });
    if (c.embedScale !== undefined) {
      const e = Math.fround(c.embedScale);
      for (let i = 0; i < this.x.length; i++) this.x[i] *= e;
    }
    const qd = qDim(c);
    const kv = kvDim(c);
    const buf: RowBuffers = {
      x: this.x,
      xb: new Float32Array(rows * Math.max(c.dim, qd)),
      xb2: new Float32Array(rows * c.dim),
      hb: new Float32Array(rows * c.hiddenDim),
      hb2: new Float32Array(rows * c.hiddenDim),
      q: new Float32Array(rows * qd),
      k: new Float32Array(rows * kv),
      v: new Float32Array(rows * kv),
    };
    // A one-layer run state, one window high: its KV cache holds one window of one layer at a time
    // (every window from slot 0; the layer's sliding window comes from the block).
    const one: LlamaConfig = { ...c, nLayers: 1, vocabSize: 1, seqLen: maxLen };
    delete one.slidingWindow;
    delete one.slidingLayers;
    const state = createRunState(one, { maxRows: maxLen, ctx: maxLen });
    this.ops = new WindowOps(c, buf, rows, starts, lengths, state);
  }

  /** Runs the next layer's block with weights `L`, calling `before` with each projection's input. */
  runLayer(L: LayerWeights, before?: BeforeLinear): void {
    this.ops.before = before;
    llamaBlock(this.ops, L, this.layer, this.x);
    this.ops.before = undefined;
    this.layer++;
  }
}

/**
 * The residual stream after the last layer for each calibration window, stacked `[Σ lengths × dim]`,
 * computed by the same batched forward GPTQ calibrates with (float weights as given). Tests compare it
 * with the inference forward.
 */
export function calibrationHiddenStates(weights: LlamaWeights, windows: ArrayLike<number>[]): Float32Array {
  const cal = new Calibration(weights.config, weights.tokenEmbedding, windows);
  for (const L of weights.layers) cal.runLayer(L);
  return cal.x;
}

/**
 * `count` calibration windows of `length` tokens cut from one long token stream at evenly spaced
 * offsets (deterministic), each starting with `bos` when given (as llama2.c training windows do not,
 * but inference from BOS does).
 */
export function calibrationWindows(
  tokens: ArrayLike<number>,
  count: number,
  length: number,
  bos?: number,
): Int32Array[] {
  const body = bos === undefined ? length : length - 1;
  if (!Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(length) || body < 1) {
    throw new Error(
      `calibrationWindows: need count ≥ 1 and length ≥ ${bos === undefined ? 1 : 2}, got ${count}, ${length}`,
    );
  }
  if (tokens.length < body)
    throw new Error(`calibrationWindows: ${tokens.length} tokens is shorter than one window (${body})`);
  const span = tokens.length - body;
  const out: Int32Array[] = [];
  for (let i = 0; i < count; i++) {
    const start = count === 1 ? 0 : Math.floor((i * span) / (count - 1));
    const w = new Int32Array(length);
    let o = 0;
    if (bos !== undefined) w[o++] = bos;
    for (let j = 0; j < body; j++) w[o++] = tokens[start + j];
    out.push(w);
  }
  return out;
}
