import {
  type Backend,
  createFloatLinear,
  type Linear,
  createQuantLinear,
  type QuantFormat,
  type QuantizedLinear,
  type Quantizer,
  createReferenceBackend,
  getFormat,
  needsCalibration,
  resolveQuantizer,
  rtnQuantize,
} from "@int21/quant-kernels";
import { type LlamaConfig, headSize, kvDim, qDim } from "./config";
import { type TokenEmbedding, tiedClassifier } from "./embedding";
import {
  type ExtraLayerTensor,
  LINEAR_NAMES,
  type LayerWeights,
  type LinearName,
  type LlamaWeights,
} from "./weights";

/** Quantize every layer projection while loading (round-to-nearest by default, tensor by tensor). */
export interface QuantizeSpec {
  /** A format record or its registry name, e.g. `"int4-g128-asym-f16"`. */
  format: QuantFormat | string;
  /**
   * The quantizer of each projection: a `Quantizer` value or a registered name (default `"rtn"`). Loading has
   * no calibration data, so a quantizer that needs a Hessian or activations (GPTQ) is refused: use
   * `quantizeModel` / `quantizeFromReader` with calibration windows for it.
   */
  quantizer?: Quantizer | string;
  /** Also quantize a separate (unshared) classifier; default false (lm_head stays float, as in GPTQ). */
  classifier?: boolean;
  /**
   * Also pack the token embedding (RTN, one packed row per token) in this format, e.g.
   * `"int8-g64-asym-f16"`; a tied classifier then runs over the same packed record. Default: float32.
   */
  embedding?: QuantFormat | string;
}

/** Options every loader takes. */
export interface LoadOptions {
  /** Backend the returned linears run on (default: a new reference backend). */
  backend?: Backend;
  /** Quantize each projection as soon as it is read, dropping its float copy. */
  quantize?: QuantizeSpec;
  /** Called after each tensor is added (`done` of `total` model tensors), e.g. for a progress bar. */
  onProgress?: (p: { tensor: string; done: number; total: number }) => void;
}

/** The field names of a layer's norms. */
export const NORM_NAMES = ["attnNorm", "ffnNorm"] as const;

/** Shape of one model tensor under its int21 name (`tokenEmbedding`, `layers.3.wq`, …). */
export interface TensorSpec {
  name: string;
  /** `[rows, cols]` for matrices (weights `[out, in]`), `[n]` for norms. */
  shape: number[];
}

/**
 * The extra per-layer float vectors a model of `config` has (biases, q/k norms, Gemma 2's post norms),
 * with their shapes; empty for LLaMA 2.
 */
export function extraLayerSpecs(config: LlamaConfig): { name: ExtraLayerTensor; shape: number[] }[] {
  const { dim } = config;
  const kv = kvDim(config);
  const out: { name: ExtraLayerTensor; shape: number[] }[] = [];
  if (config.qkvBias) {
    out.push({ name: "bq", shape: [qDim(config)] }, { name: "bk", shape: [kv] }, { name: "bv", shape: [kv] });
  }
  if (config.oBias) out.push({ name: "bo", shape: [dim] });
  if (config.qkNorm) {
    const hs = headSize(config);
    out.push({ name: "qNorm", shape: [hs] }, { name: "kNorm", shape: [hs] });
  }
  if (config.postNorms)
    out.push({ name: "postAttnNorm", shape: [dim] }, { name: "postFfnNorm", shape: [dim] });
  return out;
}

/**
 * Every tensor a model of `config` has, in llama2.c order, named as the {@link LlamaWeights} fields
 * (`tokenEmbedding`, `layers.{i}.attnNorm`, `layers.{i}.wq` … `layers.{i}.w3`, then the layer's
 * {@link extraLayerSpecs} when the family has them, `finalNorm`, and `classifier` only when it is not
 * shared).
 */
export function llamaTensorSpecs(config: LlamaConfig): TensorSpec[] {
  const { dim, hiddenDim, vocabSize, nLayers } = config;
  const kv = kvDim(config);
  const qd = qDim(config);
  const shapes: Record<LinearName, number[]> = {
    wq: [qd, dim],
    wk: [kv, dim],
    wv: [kv, dim],
    wo: [dim, qd],
    w1: [hiddenDim, dim],
    w2: [dim, hiddenDim],
    w3: [hiddenDim, dim],
  };
  const extras = extraLayerSpecs(config);
  const out: TensorSpec[] = [{ name: "tokenEmbedding", shape: [vocabSize, dim] }];
  for (let l = 0; l < nLayers; l++) {
    for (const n of NORM_NAMES) out.push({ name: `layers.${l}.${n}`, shape: [dim] });
    for (const n of Object.keys(LINEAR_NAMES) as LinearName[])
      out.push({ name: `layers.${l}.${n}`, shape: shapes[n] });
    for (const e of extras) out.push({ name: `layers.${l}.${e.name}`, shape: e.shape });
  }
  out.push({ name: "finalNorm", shape: [dim] });
  if (!config.sharedClassifier) out.push({ name: "classifier", shape: [vocabSize, dim] });
  return out;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Resolves a format name or record through the quant-kernels registry. */
export function resolveFormat(format: QuantFormat | string): QuantFormat {
  if (typeof format !== "string") return format;
  return getFormat(format);
}

/** Throws naming `source` and `tensor` when `data` holds a NaN or an infinity. */
export function assertFinite(data: Float32Array, source: string, tensor: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0)
      throw new Error(`${source}: tensor ${tensor} holds a non-finite value (${v}) at element ${i}`);
  }
}

/**
 * Collects float tensors (in any order) into a {@link LlamaWeights}, wrapping each projection as a
 * `FloatLinear` or, with `opts.quantize`, quantizing it at once (its quantizer, RTN by default) so that its float copy can be
 * dropped. Every tensor is checked for name, shape and finiteness; `finish()` checks that none is missing.
 * Loaders throw before returning anything, so a failed load leaves nothing half-built behind.
 */
export class WeightAssembler {
  readonly config: LlamaConfig;
  readonly source: string;
  readonly backend: Backend;
  private readonly specs = new Map<string, number[]>();
  private readonly seen = new Map<string, Float32Array | Linear | QuantizedLinear>();
  private readonly format?: QuantFormat;
  private readonly quantizer?: Quantizer;
  private readonly quantizeClassifier: boolean;
  private readonly embeddingFormat?: QuantFormat;
  private readonly onProgress?: LoadOptions["onProgress"];

  constructor(config: LlamaConfig, source: string, opts: LoadOptions = {}) {
    this.config = config;
    this.source = source;
    this.backend = opts.backend ?? createReferenceBackend();
    if (opts.quantize) {
      this.format = resolveFormat(opts.quantize.format);
      const q = resolveQuantizer(`${source}: quantize.quantizer`, opts.quantize.quantizer ?? "rtn");
      if (needsCalibration(q))
        throw new Error(
          `${source}: the ${q.name} quantizer needs calibration data, which loading does not have; load the float model and use quantizeModel (or quantizeCheckpoint of @int21/loaders) with calib`,
        );
      this.quantizer = q;
    }
    this.quantizeClassifier = opts.quantize?.classifier ?? false;
    if (opts.quantize?.embedding !== undefined) this.embeddingFormat = resolveFormat(opts.quantize.embedding);
    this.onProgress = opts.onProgress;
    for (const s of llamaTensorSpecs(config)) this.specs.set(s.name, s.shape);
  }

  /** Shape expected for `name`; throws naming the source when the model has no such tensor. */
  shapeOf(name: string): number[] {
    const s = this.specs.get(name);
    if (!s) throw new Error(`${this.source}: unexpected tensor ${name} for this model config`);
    return s;
  }

  /** Whether `name` is a projection (a `Linear`) rather than a norm or the embedding. */
  static isLinear(name: string): boolean {
    if (name === "classifier") return true;
    const m = /^layers\.\d+\.(\w+)$/.exec(name);
    return m !== null && m[1] in LINEAR_NAMES;
  }

  /**
   * Adds a float tensor (row-major); `file` names it in errors (default: the assembler's source).
   * The array is kept (norms, embedding, float linears) or dropped after quantizing.
   */
  put(name: string, data: Float32Array, file = this.source): void {
    const shape = this.checkNew(name);
    if (data.length !== numel(shape)) {
      throw new Error(
        `${file}: tensor ${name} has ${data.length} elements, expected [${shape.join("×")}] = ${numel(shape)}`,
      );
    }
    assertFinite(data, file, name);
    if (name === "tokenEmbedding" && this.embeddingFormat) {
      const [V, D] = shape;
      this.seen.set(name, rtnQuantize(data, V, D, this.embeddingFormat));
    } else if (!WeightAssembler.isLinear(name)) {
      this.seen.set(name, data);
    } else {
      const [N, K] = shape;
      const quantize = this.format !== undefined && (name !== "classifier" || this.quantizeClassifier);
      const lin = quantize
        ? createQuantLinear({
            q: this.quantizer!.quantize(data, N, K, this.format!, { backend: this.backend }),
            backend: this.backend,
          })
        : createFloatLinear({ weight: data, outFeatures: N, inFeatures: K, backend: this.backend });
      this.seen.set(name, lin);
    }
    this.progress(name);
  }

  private progress(tensor: string): void {
    this.onProgress?.({ tensor, done: this.seen.size, total: this.specs.size });
  }

  /** Adds an already-quantized projection or a packed token embedding (int21 checkpoints). */
  putQuantized(name: string, q: QuantizedLinear): void {
    const [N, K] = this.checkNew(name);
    if (!WeightAssembler.isLinear(name) && name !== "tokenEmbedding")
      throw new Error(`${this.source}: tensor ${name} cannot be quantized`);
    if (q.outFeatures !== N || q.inFeatures !== K) {
      throw new Error(
        `${this.source}: tensor ${name} is ${q.outFeatures}×${q.inFeatures}, expected ${N}×${K}`,
      );
    }
    this.seen.set(name, name === "tokenEmbedding" ? q : createQuantLinear({ q, backend: this.backend }));
    this.progress(name);
  }

  /** Names expected but not yet added. */
  missing(): string[] {
    return [...this.specs.keys()].filter((n) => !this.seen.has(n));
  }

  /** Builds the weights; throws listing the missing tensors when any is absent. */
  finish(): LlamaWeights {
    const missing = this.missing();
    if (missing.length > 0) {
      const more = missing.length > 5 ? ` and ${missing.length - 5} more` : "";
      throw new Error(`${this.source}: missing tensor(s) ${missing.slice(0, 5).join(", ")}${more}`);
    }
    const get = (n: string) => this.seen.get(n)!;
    const layers: LayerWeights[] = [];
    const extras = extraLayerSpecs(this.config);
    for (let l = 0; l < this.config.nLayers; l++) {
      const p = `layers.${l}.`;
      const layer: LayerWeights = {
        attnNorm: get(`${p}attnNorm`) as Float32Array,
        wq: get(`${p}wq`) as Linear,
        wk: get(`${p}wk`) as Linear,
        wv: get(`${p}wv`) as Linear,
        wo: get(`${p}wo`) as Linear,
        ffnNorm: get(`${p}ffnNorm`) as Float32Array,
        w1: get(`${p}w1`) as Linear,
        w2: get(`${p}w2`) as Linear,
        w3: get(`${p}w3`) as Linear,
      };
      for (const e of extras) layer[e.name] = get(`${p}${e.name}`) as Float32Array;
      layers.push(layer);
    }
    const tokenEmbedding = get("tokenEmbedding") as TokenEmbedding;
    const classifier = this.config.sharedClassifier
      ? tiedClassifier(tokenEmbedding, this.config, this.backend)
      : (get("classifier") as Linear);
    return {
      config: this.config,
      tokenEmbedding,
      layers,
      finalNorm: get("finalNorm") as Float32Array,
      classifier,
    };
  }

  private checkNew(name: string): number[] {
    const shape = this.shapeOf(name);
    if (this.seen.has(name)) throw new Error(`${this.source}: tensor ${name} appears twice`);
    return shape;
  }
}

/**
 * A validated checkpoint opened for reading one tensor at a time, under int21 names and in llama2.c's
 * layout (HF q/k rows already un-permuted). Shapes, dtypes and sizes were checked when it was opened.
 */
export interface TensorReader {
  readonly config: LlamaConfig;
  /** The checkpoint's path or label. */
  readonly source: string;
  /** Every model tensor (see {@link llamaTensorSpecs}) in the order that reads the files front to back. */
  readonly order: readonly string[];
  /** The file holding `name`, for messages. */
  fileOf(name: string): string;
  /** A fresh float32 array of `name` (not yet checked for finiteness). */
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Reads every tensor of `reader` in file order into a {@link WeightAssembler}; closes the reader. */
export async function assembleFromReader(
  reader: TensorReader,
  opts: LoadOptions = {},
): Promise<LlamaWeights> {
  try {
    const asm = new WeightAssembler(reader.config, reader.source, opts);
    for (const name of reader.order) asm.put(name, await reader.read(name), reader.fileOf(name));
    return asm.finish();
  } finally {
    await reader.close();
  }
}
