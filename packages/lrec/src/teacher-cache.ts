// Teacher logits cached to disk as top-k (log-probabilities + token ids + residual mass) per position,
// together with the batches they belong to, so LREC can train later without running the teacher.
import { noGrad, tidy } from "@int21/autograd";
import { openSafetensors, writeSafetensors } from "@int21/io";
import { type LlamaWeights, trainForward } from "@int21/model-llama";
import type { LrecBatch, LrecData } from "./data";
import { type TopKLogits, topKFromLogits } from "./loss";

const FORMAT = "int21-lrec-teacher-cache";

/** Options of {@link TeacherCache.build}. */
export interface TeacherCacheBuildOptions {
  /** Steps (batches) to cache: steps `0 … steps − 1` of the data source. */
  steps: number;
  /** Entries kept per position. */
  k: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * A teacher cache: for steps `0 … steps − 1`, the batch and the teacher's top-k per position. The file
 * is safetensors (written atomically): `input` I32 `[S, B, T]`, `target` I32 `[S, B·T]`, `logprobs` F32
 * `[S, B·T, k]`, `indices` I32 `[S, B·T, k]`, `residual` F32 `[S, B·T]`; metadata `format`, `k`,
 * `vocabSize`. Size: `S·B·T·(8k + 12)` bytes instead of `4·V` per position for full logits.
 *
 * **Approximation.** Training against a cache uses {@link topKKl}: the KL between teacher and student
 * coarsened to {the teacher's top k tokens, one "rest" bucket}. It is a lower bound of the full KL,
 * exact when the teacher's tail has the student's shape, and its error is at most the residual mass's
 * share of the divergence; the test measures it on stories260K (k = 32 of 512 tokens).
 */
export class TeacherCache {
  private constructor(
    readonly path: string,
    readonly steps: number,
    readonly batch: number,
    readonly seq: number,
    readonly k: number,
    readonly vocabSize: number,
    private readonly inputs: Int32Array,
    private readonly targets: Int32Array,
    private readonly logprobs: Float32Array,
    private readonly indices: Int32Array,
    private readonly residual: Float32Array,
  ) {}

  /** Runs the teacher over steps `0 … steps − 1` of `data` and writes the cache to `path`. */
  static async build(
    path: string,
    teacher: LlamaWeights,
    data: LrecData,
    opts: TeacherCacheBuildOptions,
  ): Promise<TeacherCache> {
    const { steps, k } = opts;
    const V = teacher.config.vocabSize;
    if (!Number.isSafeInteger(steps) || steps < 1)
      throw new Error(`lrec: TeacherCache.build: steps must be a positive integer, got ${steps}`);
    if (!Number.isSafeInteger(k) || k < 1 || k > V)
      throw new Error(`lrec: TeacherCache.build: k must be an integer in [1, ${V}], got ${k}`);
    const first = data(0);
    const B = first.input.length;
    const T = first.input[0]?.length ?? 0;
    if (B < 1 || T < 1) throw new Error("lrec: TeacherCache.build: the data source gave an empty batch");
    const rows = B * T;
    const inputs = new Int32Array(steps * rows);
    const targets = new Int32Array(steps * rows);
    const logprobs = new Float32Array(steps * rows * k);
    const indices = new Int32Array(steps * rows * k);
    const residual = new Float32Array(steps * rows);
    for (let s = 0; s < steps; s++) {
      const b: LrecBatch = s === 0 ? first : data(s);
      if (b.input.length !== B || b.input.some((r) => r.length !== T) || b.target.length !== rows)
        throw new Error(`lrec: TeacherCache.build: step ${s} has a batch of another shape than [${B}, ${T}]`);
      b.input.forEach((r, i) => {
        inputs.set(r, s * rows + i * T);
      });
      targets.set(b.target, s * rows);
      const top = noGrad(() =>
        tidy(() => {
          const logits = trainForward(teacher, b.input, { checkpoint: false });
          return topKFromLogits(logits.toFloat32Array(), rows, V, k);
        }),
      );
      logprobs.set(top.logprobs, s * rows * k);
      indices.set(top.indices, s * rows * k);
      residual.set(top.residual, s * rows);
      opts.onProgress?.(s + 1, steps);
    }
    await writeSafetensors(
      path,
      {
        input: { dtype: "I32", shape: [steps, B, T], data: inputs },
        target: { dtype: "I32", shape: [steps, rows], data: targets },
        logprobs: { dtype: "F32", shape: [steps, rows, k], data: logprobs },
        indices: { dtype: "I32", shape: [steps, rows, k], data: indices },
        residual: { dtype: "F32", shape: [steps, rows], data: residual },
      },
      { format: FORMAT, k: String(k), vocabSize: String(V) },
    );
    return new TeacherCache(path, steps, B, T, k, V, inputs, targets, logprobs, indices, residual);
  }

  /** Reads a cache written by {@link build}; checks its format and every shape before reading data. */
  static async open(path: string): Promise<TeacherCache> {
    const f = await openSafetensors(path);
    try {
      if (f.metadata.format !== FORMAT)
        throw new Error(`lrec: TeacherCache.open: ${path} is not an LREC teacher cache`);
      const k = Number(f.metadata.k);
      const V = Number(f.metadata.vocabSize);
      const shape = (n: string, dtype: string) => {
        const t = f.tensors[n];
        if (!t) throw new Error(`lrec: TeacherCache.open: ${path} has no tensor "${n}"`);
        if (t.dtype !== dtype)
          throw new Error(`lrec: TeacherCache.open: ${path}: "${n}" is ${t.dtype}, expected ${dtype}`);
        return t.shape;
      };
      const [S, B, T] = shape("input", "I32");
      const rows = B * T;
      const expect: [string, string, number[]][] = [
        ["target", "I32", [S, rows]],
        ["logprobs", "F32", [S, rows, k]],
        ["indices", "I32", [S, rows, k]],
        ["residual", "F32", [S, rows]],
      ];
      for (const [n, dt, sh] of expect) {
        const got = shape(n, dt);
        if (got.join(",") !== sh.join(","))
          throw new Error(`lrec: TeacherCache.open: ${path}: "${n}" is [${got}], expected [${sh}]`);
      }
      if (!(k >= 1 && V >= k))
        throw new Error(`lrec: TeacherCache.open: ${path}: bad k ${k} / vocabSize ${V}`);
      const i32 = async (n: string) => (await f.readRaw(n)).data as Int32Array;
      const inputs = await i32("input");
      const targets = await i32("target");
      const indices = await i32("indices");
      for (const v of indices)
        if (v < 0 || v >= V) throw new Error(`lrec: TeacherCache.open: ${path}: token id ${v} out of range`);
      return new TeacherCache(
        path,
        S,
        B,
        T,
        k,
        V,
        inputs,
        targets,
        await f.readF32("logprobs"),
        indices,
        await f.readF32("residual"),
      );
    } finally {
      await f.close();
    }
  }

  private check(step: number): void {
    if (!Number.isSafeInteger(step) || step < 0 || step >= this.steps)
      throw new Error(
        `lrec: TeacherCache: step ${step} is not cached (the cache holds steps 0 … ${this.steps - 1})`,
      );
  }

  /** The cached batches as a data source (steps beyond the cache throw). */
  readonly data: LrecData = (step) => {
    this.check(step);
    const rows = this.batch * this.seq;
    const input: number[][] = [];
    for (let b = 0; b < this.batch; b++)
      input.push(
        Array.from(this.inputs.subarray(step * rows + b * this.seq, step * rows + (b + 1) * this.seq)),
      );
    return { input, target: this.targets.slice(step * rows, (step + 1) * rows) };
  };

  /** The teacher's top-k for every position of step `step`'s batch. */
  topk(step: number): TopKLogits {
    this.check(step);
    const rows = this.batch * this.seq;
    const k = this.k;
    return {
      rows,
      k,
      vocabSize: this.vocabSize,
      logprobs: this.logprobs.subarray(step * rows * k, (step + 1) * rows * k),
      indices: this.indices.subarray(step * rows * k, (step + 1) * rows * k),
      residual: this.residual.subarray(step * rows, (step + 1) * rows),
    };
  }
}
