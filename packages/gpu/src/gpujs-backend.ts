// The gpu.js backend: synchronous Backend kernels over gpu.js (WebGL, headless-gl, WebAssembly or CPU
// modes), reading QuantizedLinear records through their float32-safe layout.
import {
  type Backend,
  createReferenceBackend,
  type GemmArgs,
  type KernelName,
  type QuantFormat,
  type QuantizedLinear,
} from "@int21/quant-kernels";
import { floatLayoutOf, type FloatLayout } from "./float-layout";
import { gemmEpilogue, resolveGemm } from "./gemm-args";
import { DEQUANTIZE_SOURCE, GEMM_SOURCE, QMATMUL_SOURCE, QMATMUL_T_SOURCE } from "./gpujs-kernels";
import { optionalImport } from "./optional-import";
import { assertQuantArgs } from "./quant-args";

/**
 * gpu.js modes this backend drives. `gpu` lets gpu.js pick (headless-gl / WebGL2 / WebGL, then WebAssembly).
 * gpu.js's own `webgpu` mode is not offered: use {@link createWebGpuBackend}, whose WGSL reads packed u32
 * words exactly.
 */
export type GpuJsMode = "gpu" | "cpu" | "webasm" | "headlessgl" | "webgl" | "webgl2";

/** Integers (indices, codes) stay exact in float32 below this; larger problems run on the fallback. */
export const GPUJS_MAX_INDEX = 2 ** 24;

/** The parts of gpu.js this backend uses (gpu.js is an optional peer dependency; its types stay out of ours). */
interface GpuJsKernel {
  (...args: unknown[]): unknown;
  destroy?: (removeCanvasReferences?: boolean) => void;
  kernel?: { constructor: { name: string; mode?: string } };
}
interface GpuJsInstance {
  createKernel(source: string, settings: Record<string, unknown>): GpuJsKernel;
  destroy(): unknown;
}
/** The gpu.js module as `import("gpu.js")` returns it (ESM namespace or CommonJS exports). */
export interface GpuJsModule {
  GPU?: new (settings: { mode?: string }) => GpuJsInstance;
  default?: { GPU?: new (settings: { mode?: string }) => GpuJsInstance };
}

/** Options of {@link createGpuJsBackend}. */
export interface GpuJsBackendOptions {
  /** Default `"gpu"` (gpu.js picks the best mode it can run). */
  mode?: GpuJsMode;
  /**
   * The CPU backend that runs everything when gpu.js or the mode is unavailable, and oversized problems.
   * Default: `createReferenceBackend()`. It stays the caller's: `dispose()` does not dispose it.
   */
  fallback?: Backend;
  /** The gpu.js module, if already imported (browsers with a bundler); otherwise `import("gpu.js")`. */
  gpujs?: GpuJsModule;
  /** Where the one-time "falling back" notice goes. Default `console.warn`. */
  warn?: (message: string) => void;
}

/** A {@link Backend} running on gpu.js, or on its fallback when gpu.js could not run (see `fallbackReason`). */
export interface GpuJsBackend extends Backend {
  /** The gpu.js mode the kernels run in (`cpu`, `webasm`, `headlessgl`, `webgl2`, …), or null on fallback. */
  readonly mode: string | null;
  /** Why the backend runs on its fallback, or null when gpu.js runs it. */
  readonly fallbackReason: string | null;
}

const MAX_KERNELS = 32;

/** gpu.js kernel classes → the mode names this backend reports. */
const KERNEL_CLASS_MODES: Record<string, string> = {
  HeadlessGLKernel: "headlessgl",
  WebGL2Kernel: "webgl2",
  WebGLKernel: "webgl",
  WebAssemblyKernel: "webasm",
  CPUKernel: "cpu",
};

function gpuConstructor(mod: GpuJsModule): new (settings: { mode?: string }) => GpuJsInstance {
  const ctor = mod.GPU ?? mod.default?.GPU;
  if (typeof ctor !== "function") throw new Error("the gpu.js module exports no GPU class");
  return ctor;
}

function toFloat32(r: unknown, len: number, what: string): Float32Array {
  if (r instanceof Float32Array && r.length >= len) return r;
  if (Array.isArray(r) && r.length >= len) return Float32Array.from(r as number[]);
  throw new Error(
    `gpu: gpu.js ${what} kernel returned ${Object.prototype.toString.call(r)} of length ${(r as { length?: number })?.length}, expected ${len} floats`,
  );
}

/** Synchronous kernels over one gpu.js instance. */
class GpuJsKernels {
  private readonly kernels = new Map<string, GpuJsKernel>();
  mode: string;

  constructor(
    private readonly gpu: GpuJsInstance,
    requested: string,
  ) {
    this.mode = requested;
  }

  private kernel(
    key: string,
    source: string,
    length: number,
    constants: Record<string, number>,
  ): GpuJsKernel {
    const id = `${key}:${length}:${JSON.stringify(constants)}`;
    let k = this.kernels.get(id);
    if (k) {
      this.kernels.delete(id);
      this.kernels.set(id, k);
      return k;
    }
    k = this.gpu.createKernel(source, {
      output: [length],
      constants,
      dynamicArguments: true,
      precision: "single",
      tactic: "precision",
    });
    this.kernels.set(id, k);
    if (this.kernels.size > MAX_KERNELS) {
      const [oldId, old] = this.kernels.entries().next().value as [string, GpuJsKernel];
      this.kernels.delete(oldId);
      old.destroy?.();
    }
    return k;
  }

  private run(k: GpuJsKernel, args: unknown[], len: number, what: string): Float32Array {
    const r = toFloat32(k(...args), len, what);
    const ctor = k.kernel?.constructor;
    // gpu.js's GL kernels all report mode "gpu"; the class name tells which one auto mode picked.
    const actual = (ctor && KERNEL_CLASS_MODES[ctor.name]) ?? ctor?.mode;
    if (actual) this.mode = actual;
    return r;
  }

  private layoutConstants(l: FloatLayout): Record<string, number> {
    return {
      N: l.outFeatures,
      K: l.inFeatures,
      G: l.nGroups,
      E: l.elementsPerRow,
      C: l.codesPerElement,
      R: 2 ** l.bits,
    };
  }

  qmatmul(x: Float32Array, rows: number, l: FloatLayout): Float32Array {
    const len = rows * l.outFeatures;
    const k = this.kernel("qmatmul", QMATMUL_SOURCE, len, this.layoutConstants(l));
    return this.run(k, [x, l.codes, l.groupOf, l.scales, l.zeros], len, "qmatmul");
  }

  qmatmulT(g: Float32Array, rows: number, l: FloatLayout): Float32Array {
    const len = rows * l.inFeatures;
    const k = this.kernel("qmatmulT", QMATMUL_T_SOURCE, len, this.layoutConstants(l));
    return this.run(k, [g, l.codes, l.groupOf, l.scales, l.zeros], len, "qmatmulT");
  }

  dequantize(l: FloatLayout): Float32Array {
    const len = l.outFeatures * l.inFeatures;
    const k = this.kernel("dequantize", DEQUANTIZE_SOURCE, len, this.layoutConstants(l));
    return this.run(k, [l.codes, l.groupOf, l.scales, l.zeros], len, "dequantize");
  }

  gemm(a: Float32Array, b: Float32Array, c: Record<string, number>, len: number): Float32Array {
    return this.run(this.kernel("gemm", GEMM_SOURCE, len, c), [a, b], len, "sgemm");
  }

  dispose(): void {
    for (const k of this.kernels.values()) k.destroy?.();
    this.kernels.clear();
    this.gpu.destroy();
  }
}

/**
 * A 3×40 INT3 layer (codes straddle u32 words, 8 codes per float element) through the qmatmul kernel,
 * compared exactly with a direct evaluation: proves the mode keeps 24-bit integers exact.
 */
function probe(k: GpuJsKernels): void {
  const N = 3;
  const K = 40;
  const bits = 3;
  const C = 8;
  const E = 5;
  const codes = new Float32Array(N * E);
  const want = new Float64Array(N);
  for (let n = 0; n < N; n++)
    for (let e = 0; e < E; e++) {
      let v = 0;
      for (let j = 0; j < C; j++) {
        const code = (n * 7 + e * 5 + j * 3) % 8;
        v += code * 2 ** (bits * j);
        want[n] += (e * C + j + 1) * (code - 4);
      }
      codes[n * E + e] = v;
    }
  const x = Float32Array.from({ length: K }, (_, i) => i + 1);
  const layout: FloatLayout = {
    bits,
    outFeatures: N,
    inFeatures: K,
    nGroups: 1,
    codesPerElement: C,
    elementsPerRow: E,
    codes,
    groupOf: new Float32Array(K),
    scales: new Float32Array(N).fill(1),
    zeros: new Float32Array(N).fill(4),
  };
  const y = k.qmatmul(x, 1, layout);
  for (let n = 0; n < N; n++) {
    if (y[n] !== want[n])
      throw new Error(`probe kernel gave ${y[n]} for output ${n}, expected ${want[n]} (mode ${k.mode})`);
  }
}

/**
 * Creates the gpu.js backend. Loads gpu.js with a dynamic `import()` (an optional peer dependency), makes
 * a `GPU` in `mode` and checks it with a probe kernel. When any of that fails, the backend says why once
 * (through `warn`) and runs every kernel on `fallback`; `fallbackReason` tells which happened.
 *
 * Kernels are synchronous (gpu.js reads results back before returning), take and write the caller's
 * buffers like any {@link Backend}, compile once per shape (kernels are cached, 32 at most) and read
 * each QuantizedLinear through its cached float32-safe {@link FloatLayout}. Problems with an index at or
 * above 2^24 run on the fallback.
 */
export async function createGpuJsBackend(options: GpuJsBackendOptions = {}): Promise<GpuJsBackend> {
  const fallback = options.fallback ?? createReferenceBackend();
  const mode = options.mode ?? "gpu";
  const warn = options.warn ?? ((m: string) => console.warn(m));
  let kernels: GpuJsKernels | null = null;
  let reason: string | null = null;
  try {
    const mod = options.gpujs ?? ((await optionalImport("gpu.js")) as GpuJsModule);
    const GPU = gpuConstructor(mod);
    kernels = new GpuJsKernels(new GPU({ mode }), mode);
    probe(kernels);
  } catch (e) {
    reason = `gpu.js mode "${mode}" is unavailable (${(e as Error).message.split("\n")[0]})`;
    try {
      kernels?.dispose();
    } catch {
      // the instance never worked; nothing more to release
    }
    kernels = null;
    warn(`@int21/gpu: ${reason}; running on the ${fallback.name} backend instead.`);
  }
  const k = kernels;
  const tooBig = (...sizes: number[]) => sizes.some((s) => s >= GPUJS_MAX_INDEX);
  const layoutTooBig = (l: FloatLayout, rows: number) =>
    tooBig(l.codes.length, l.outFeatures * l.inFeatures, rows * l.outFeatures, rows * l.inFeatures);

  const backend: GpuJsBackend = {
    get name() {
      return k ? `gpujs-${k.mode}` : `gpujs-fallback-${fallback.name}`;
    },
    get mode() {
      return k ? k.mode : null;
    },
    fallbackReason: reason,
    supports(kernel: KernelName, format?: QuantFormat): boolean {
      if (!k) return false;
      if (kernel === "sgemm" || !format) return true;
      // Affine decode only: codebook ("lut") formats run on the fallback.
      if ((format.decode ?? "affine") !== "affine") return false;
      return Number.isInteger(format.bits) && format.bits >= 1 && format.bits <= 8;
    },
    sgemm(args: GemmArgs): void {
      const g = resolveGemm(args);
      if (!k || tooBig(g.aEnd, g.bEnd, g.M * g.N)) {
        fallback.sgemm(args);
        return;
      }
      if (g.M === 0 || g.N === 0) return;
      const len = g.M * g.N;
      const acc =
        g.K === 0
          ? new Float32Array(len)
          : k.gemm(
              g.A,
              g.B,
              {
                M: g.M,
                N: g.N,
                K: g.K,
                AO: g.aOffset,
                SAM: g.transA ? 1 : g.lda,
                SAK: g.transA ? g.lda : 1,
                BO: g.bOffset,
                SBK: g.transB ? 1 : g.ldb,
                SBN: g.transB ? g.ldb : 1,
              },
              len,
            );
      gemmEpilogue(g, acc);
    },
    dequantize(q: QuantizedLinear, out: Float32Array): void {
      assertQuantArgs("dequantize", q, 0, null, out);
      if (!k || !backend.supports("dequantize", q.format)) {
        fallback.dequantize(q, out);
        return;
      }
      const l = floatLayoutOf(q);
      if (layoutTooBig(l, 0)) {
        fallback.dequantize(q, out);
        return;
      }
      out.set(k.dequantize(l).subarray(0, q.outFeatures * q.inFeatures));
    },
    qmatmul(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): void {
      assertQuantArgs("qmatmul", q, rows, x, y);
      if (!k || !backend.supports("qmatmul", q.format)) {
        fallback.qmatmul(x, rows, q, y);
        return;
      }
      const l = floatLayoutOf(q);
      if (rows === 0) return;
      if (layoutTooBig(l, rows) || tooBig(x.length)) {
        fallback.qmatmul(x, rows, q, y);
        return;
      }
      y.set(k.qmatmul(x, rows, l).subarray(0, rows * q.outFeatures));
    },
    qmatmulT(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): void {
      assertQuantArgs("qmatmulT", q, rows, g, dx);
      if (!k || !backend.supports("qmatmulT", q.format)) {
        fallback.qmatmulT(g, rows, q, dx);
        return;
      }
      const l = floatLayoutOf(q);
      if (rows === 0) return;
      if (layoutTooBig(l, rows) || tooBig(g.length)) {
        fallback.qmatmulT(g, rows, q, dx);
        return;
      }
      dx.set(k.qmatmulT(g, rows, l).subarray(0, rows * q.inFeatures));
    },
    dispose(): void {
      k?.dispose();
    },
  };
  return backend;
}
