// The fast CPU backend: WebAssembly SIMD kernels (wasm/*.c) plus worker threads over a shared
// WebAssembly.Memory. Node (worker_threads) and browsers (Worker; threads > 1 needs a
// cross-origin isolated page).
import type { Backend, GemmArgs, KernelName, QuantFormat, QuantizedLinear } from "../types";
import { referenceDequantize } from "../reference/dequantize";
import { referenceQmatmul } from "../reference/qmatmul";
import { referenceQmatmulT } from "../reference/qmatmul-t";
import { wasmDequantize } from "./wasm-dequantize";
import { wasmQmatmul, wasmQmatmulT } from "./wasm-qmatmul";
import { registerDecodeKernels } from "./wasm-decode";
import { ResidentCache } from "./wasm-resident";
import { WasmRuntime, sharedMemoryAvailable } from "./wasm-runtime";
import { registerTrainKernels } from "./wasm-train";
import { wasmSgemm } from "./wasm-sgemm";

/** Options of {@link createWasmBackend}. */
export interface WasmBackendOptions {
  /**
   * Threads including the caller's (default: `min(available cores, 4)`, or 1 where shared memory
   * is unavailable). `1` starts no worker at all.
   */
  threads?: number;
  /**
   * Use the shared-memory module (default: wherever `SharedArrayBuffer` is available). `false`
   * selects the ordinary-memory module that non-isolated browser pages get; it allows 1 thread only.
   */
  sharedMemory?: boolean;
  /**
   * Bytes that resident copies (re-packed quantized layers, `bConst` float weights) may hold
   * together; default unlimited. Before a new copy is made, the least recently used copies are
   * dropped until it fits, so a model larger than the budget streams its layers through it (each
   * layer is re-packed when it is used again). Decoding wants every layer resident (the default);
   * training a model near the memory limit wants a small budget: `0` keeps only the layer in use.
   */
  maxResidentBytes?: number;
  /**
   * Use the relaxed-SIMD module, whose float GEMM uses fused multiply-adds (default: wherever the
   * engine has relaxed SIMD: Chromium, Firefox, Node ≥ 22, Node 20 with
   * `--experimental-wasm-relaxed-simd`). `false` selects the plain-SIMD module, whose GEMM rounds
   * each product as the reference kernels do; `true` where the engine lacks relaxed SIMD is an error.
   */
  relaxedSimd?: boolean;
  /**
   * The activations' precision of the decode matvec (one-row products of 3–4-bit affine layers, see
   * `DecodeKernels.qmatvec`): `"int8"` rounds x to int8 per weight group and multiplies with relaxed SIMD's
   * `i16x8.relaxed_dot_i8x16_i7x16_s` (llama.cpp's Q4_0 decode rounds x to int8 too; |x − x̂| ≤ max|x|/254
   * over a group; an INT4 stories110M decode token measured 1.15–1.25× faster on x86); `"int16"` rounds to int16 (`i32x4.dot_i16x8_s`,
   * 258× finer steps). Default: `"int16"`. `"int8"` needs the relaxed-SIMD module (an error otherwise);
   * other layers (1–2 and 5–8 bits) always round to int16.
   */
  decodeActivations?: "int8" | "int16";
}

/** The wasm backend: a {@link Backend} plus memory helpers. */
export interface WasmBackend extends Backend {
  /** Threads including the caller's. */
  readonly threads: number;
  /** Whether the relaxed-SIMD module runs (see {@link WasmBackendOptions.relaxedSimd}). */
  readonly relaxedSimd: boolean;
  /**
   * A `Float32Array` of `n` floats inside wasm memory: kernels read and write it in place (no copy).
   * With shared memory (threads > 1, or Node) it stays valid until {@link freeF32}; without shared
   * memory a heap growth detaches it, so use it only for short-lived buffers there.
   */
  allocF32(n: number): Float32Array;
  /** Releases a view from {@link allocF32}. */
  freeF32(view: Float32Array): void;
  /** Drops the resident copy of a quantized layer or a `bConst` float array now. */
  evict(key: QuantizedLinear | Float32Array): void;
  /** Bytes of wasm memory in use (resident weights, scratch, allocF32 blocks). */
  memoryBytes(): number;
  /** Bytes held by resident copies of layers and `bConst` weights (bounded by `maxResidentBytes`). */
  residentBytes(): number;
  /** Whether a quantized layer or `bConst` float array has a resident copy now. */
  isResident(key: QuantizedLinear | Float32Array): boolean;
}

function defaultThreads(): number {
  if (!sharedMemoryAvailable()) return 1;
  const g = globalThis as {
    navigator?: { hardwareConcurrency?: number };
    process?: { getBuiltinModule?: (id: string) => unknown };
  };
  let cores = g.navigator?.hardwareConcurrency;
  if (cores === undefined) {
    const os = g.process?.getBuiltinModule?.("node:os") as
      | { availableParallelism?: () => number }
      | undefined;
    cores = os?.availableParallelism?.();
  }
  return Math.max(1, Math.min(cores ?? 1, 4));
}

/** Decode kinds the wasm kernels compute natively (quant.c); others fall back to the reference kernels. */
const NATIVE_DECODE: ReadonlySet<string> = new Set(["affine", "lut"]);

/** ggml type ids whose blocks wasm/ggml_blocks.c decodes (the registered block formats). */
const WASM_BLOCK_TYPES: ReadonlySet<number> = new Set([2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20, 23]);

function supportsFormat(f: QuantFormat): boolean {
  const decode = f.decode ?? "affine";
  if (decode === "block")
    return WASM_BLOCK_TYPES.has((f as { block?: { ggmlTypeId: number } }).block?.ggmlTypeId ?? -1);
  if (decode === "lut" && !(f.codebook instanceof Float32Array && f.codebook.length === 2 ** f.bits))
    return false;
  return (
    NATIVE_DECODE.has(decode) &&
    Number.isInteger(f.bits) &&
    f.bits >= 1 &&
    f.bits <= 8 &&
    (f.groupSize === -1 || (Number.isSafeInteger(f.groupSize) && f.groupSize >= 1))
  );
}

/**
 * Creates the WebAssembly SIMD backend. Every kernel runs natively for every affine format (1–8 bits,
 * any group size, act-order `gIdx` through a slower dequantize-a-row path) and every codebook ("lut")
 * format (NF4, IQ4_NL, user codebooks: table decode, through the dequantize-a-row and tiled paths)
 * and every ggml block format (`q4_0` … `q6_k`, `iq4_nl-ggml`, `iq4_xs`: the layer's ggml blocks kept
 * resident as they are, decoded a block at a time into the GEMM's B panels / the matvec's row buffer);
 * formats of a user decode kind report `supports() === false` and run on the reference kernels. Calls are synchronous:
 * the caller's thread runs its share and waits for the workers.
 *
 * Inputs are copied into wasm memory per call, except views from {@link WasmBackend.allocF32};
 * quantized layers and `bConst` arrays are kept resident, keyed by identity, within
 * `maxResidentBytes` (least recently used dropped first).
 * Call `dispose()` to stop the workers.
 */
export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  const threads = opts.threads ?? (opts.sharedMemory === false ? 1 : defaultThreads());
  if (!Number.isSafeInteger(threads) || threads < 1 || threads > 64) {
    throw new Error(
      `quant-kernels: createWasmBackend: threads must be an integer in 1..64, got ${String(threads)}`,
    );
  }
  const budget = opts.maxResidentBytes ?? Number.POSITIVE_INFINITY;
  if (!(budget >= 0))
    throw new Error(
      `quant-kernels: createWasmBackend: maxResidentBytes must be a number ≥ 0, got ${String(opts.maxResidentBytes)}`,
    );
  const acts = opts.decodeActivations ?? "int16";
  if (acts !== "int8" && acts !== "int16")
    throw new Error(
      `quant-kernels: createWasmBackend: decodeActivations must be "int8" or "int16", got ${String(opts.decodeActivations)}`,
    );
  const rt = await WasmRuntime.create(threads, opts.sharedMemory, undefined, opts.relaxedSimd);
  if (acts === "int8" && !rt.relaxedSimd) {
    rt.dispose();
    throw new Error(
      'quant-kernels: createWasmBackend: decodeActivations "int8" needs the relaxed-SIMD module (relaxed SIMD is off or unavailable: call enableRelaxedSimd() first)',
    );
  }
  const cache = new ResidentCache(rt, budget);
  const views = new WeakMap<Float32Array, number>();
  // A format whose decode kind has no wasm kernel (a codebook format) runs on the reference kernels.
  const native = (q: QuantizedLinear): boolean => q?.format === undefined || supportsFormat(q.format);
  const backend: WasmBackend = {
    name: `wasm-simd-${threads}t`,
    threads,
    relaxedSimd: rt.relaxedSimd,
    supports(kernel: KernelName, format?: QuantFormat): boolean {
      if (!["sgemm", "dequantize", "qmatmul", "qmatmulT"].includes(kernel)) return false;
      if (format === undefined || kernel === "sgemm") return true;
      return supportsFormat(format);
    },
    sgemm: (args: GemmArgs) => wasmSgemm(rt, cache, args),
    dequantize: (q, out) => (native(q) ? wasmDequantize(rt, cache, q, out) : referenceDequantize(q, out)),
    qmatmul: (x, rows, q, y) =>
      native(q) ? wasmQmatmul(rt, cache, x, rows, q, y) : referenceQmatmul(x, rows, q, y),
    qmatmulT: (g, rows, q, dx) =>
      native(q) ? wasmQmatmulT(rt, cache, g, rows, q, dx) : referenceQmatmulT(g, rows, q, dx),
    allocF32(n: number): Float32Array {
      rt.check("allocF32");
      if (!Number.isSafeInteger(n) || n < 0)
        throw new Error(`quant-kernels: allocF32: n must be a non-negative integer, got ${n}`);
      const addr = rt.heap.alloc(n * 4);
      rt.heap.refresh();
      const v = new Float32Array(rt.heap.memory.buffer, addr, n);
      views.set(v, addr);
      return v;
    },
    freeF32(view: Float32Array): void {
      const addr = views.get(view);
      if (addr === undefined)
        throw new Error("quant-kernels: freeF32: not a view from allocF32 (or freed already)");
      views.delete(view);
      rt.heap.release(addr);
    },
    evict: (key) => cache.evict(key),
    memoryBytes: () => rt.heap.usedBytes(),
    residentBytes: () => cache.bytes,
    isResident: (key) => cache.has(key),
    dispose(): void {
      cache.dispose();
      rt.dispose();
    },
  };
  registerDecodeKernels(backend, rt, backend.allocF32, backend.freeF32, cache, acts === "int8");
  registerTrainKernels(backend, rt, backend.allocF32, backend.freeF32);
  return backend;
}
