// The instantiated kernel module: memory, heap, worker pool, the job record and the per-call
// scratch. Kernel files (wasm-sgemm.ts, wasm-qmatmul.ts, wasm-dequantize.ts) build on it.
import {
  KERNELS_WASM_SINGLE,
  KERNELS_WASM_SINGLE_RELAXED,
  KERNELS_WASM_THREADS,
  KERNELS_WASM_THREADS_RELAXED,
} from "./kernels-wasm.generated";
import { GEMM_SCRATCH_FLOATS, J_NEXT, J_OP, J_SCRATCH, J_STRIDE, NC } from "./layout";
import { WasmHeap } from "./wasm-heap";
import { CONTROL_BYTES, type PoolOptions, WorkerPool } from "./worker-pool";

interface KernelExports {
  __stack_pointer: WebAssembly.Global;
  __heap_base: WebAssembly.Global;
  qk_run(job: number, tid: number, nth: number): void;
  qk_repack(desc: number, src: number, srcWordsPerRow: number): void;
}

const PAGE = 65536;
const STACK_BYTES = 64 * 1024;
const JOB_BYTES = 256;

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// A module whose one function computes f32x4.relaxed_madd of three v128 constants: valid exactly where
// the engine has relaxed SIMD (Chromium, Firefox, Node ≥ 22; Node 20 with --experimental-wasm-relaxed-simd).
const RELAXED_SIMD_PROBE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // types: () -> v128
  ...[0x03, 0x02, 0x01, 0x00], // functions: one of type 0
  ...[0x0a, 0x3d, 0x01, 0x3b, 0x00], // code: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array<number>(16).fill(0)]), // 3 × v128.const 0
  ...[0xfd, 0x85, 0x02], // f32x4.relaxed_madd (0xfd 0x105)
  0x0b, // end
]);

/** Whether the engine accepts relaxed SIMD (the GEMM micro-kernel's fused multiply-add). */
export function relaxedSimdAvailable(): boolean {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/** Whether shared memory (and so worker threads) is available here. */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer === "undefined") return false;
  const g = globalThis as { crossOriginIsolated?: boolean };
  return g.crossOriginIsolated !== false;
}

/** The module plus everything kernels share. */
export class WasmRuntime {
  /** The allocator over the module's memory. */
  readonly heap: WasmHeap;
  readonly shared: boolean;
  /** Whether this is the relaxed-SIMD build of the module (fused multiply-adds in the GEMM). */
  readonly relaxedSimd: boolean;
  private readonly ex: KernelExports;
  private readonly pool: WorkerPool | null;
  private readonly job: number;
  private scratch = 0;
  private scratchStride = 0;
  private arena = 0;
  private arenaBytes = 0;
  private arenaUsed = 0;
  private disposed = false;

  private constructor(
    heap: WasmHeap,
    ex: KernelExports,
    pool: WorkerPool | null,
    job: number,
    shared: boolean,
    relaxedSimd: boolean,
  ) {
    this.relaxedSimd = relaxedSimd;
    this.heap = heap;
    this.ex = ex;
    this.pool = pool;
    this.job = job;
    this.shared = shared;
  }

  /**
   * Instantiates the module; starts `threads - 1` workers when `threads > 1`. `relaxedSimd` picks the
   * relaxed-SIMD build (default: where {@link relaxedSimdAvailable}).
   */
  static async create(
    threads: number,
    sharedMemory?: boolean,
    poolOpts?: PoolOptions,
    relaxedSimd?: boolean,
  ): Promise<WasmRuntime> {
    const relaxed = relaxedSimd ?? relaxedSimdAvailable();
    if (relaxed && !relaxedSimdAvailable()) {
      throw new Error(
        "quant-kernels: createWasmBackend: relaxedSimd: true, but this engine has no relaxed SIMD (Node 20 needs --experimental-wasm-relaxed-simd)",
      );
    }
    const shared = sharedMemory ?? sharedMemoryAvailable();
    if (shared && !sharedMemoryAvailable()) {
      throw new Error(
        "quant-kernels: createWasmBackend: sharedMemory: true, but SharedArrayBuffer is unavailable here",
      );
    }
    if (threads > 1 && !shared) {
      throw new Error(
        "quant-kernels: createWasmBackend: threads > 1 needs shared memory (SharedArrayBuffer; in browsers a cross-origin isolated page); use threads: 1",
      );
    }
    const bytes = decodeBase64(
      shared
        ? relaxed
          ? KERNELS_WASM_THREADS_RELAXED
          : KERNELS_WASM_THREADS
        : relaxed
          ? KERNELS_WASM_SINGLE_RELAXED
          : KERNELS_WASM_SINGLE,
    );
    const module = await WebAssembly.compile(bytes);
    const initial = 64; // 4 MiB; grows on demand
    let memory: WebAssembly.Memory | undefined;
    // Shared memory reserves its maximum up front: ask for 4 GiB, then less where that is refused
    // (32-bit or memory-constrained browsers).
    for (const maximum of [65536, 16384, 4096]) {
      try {
        memory = new WebAssembly.Memory({ initial, maximum, shared });
        break;
      } catch (e) {
        if (maximum === 4096) {
          throw new Error(
            `quant-kernels: createWasmBackend: cannot create wasm memory: ${(e as Error).message}`,
          );
        }
      }
    }
    if (memory === undefined) throw new Error("quant-kernels: createWasmBackend: cannot create wasm memory");
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const ex = instance.exports as unknown as KernelExports;
    const heapBase = ex.__heap_base.value as number;
    if (heapBase > initial * PAGE)
      throw new Error("quant-kernels: wasm module data exceeds the initial memory");
    const heap = new WasmHeap(memory, heapBase);
    const job = heap.alloc(JOB_BYTES);
    let pool: WorkerPool | null = null;
    const runLocal = (j: number, tid: number, nth: number) => ex.qk_run(j, tid, nth);
    if (threads > 1) {
      const ctrl = heap.alloc(CONTROL_BYTES);
      heap.refresh();
      heap.i32.fill(0, ctrl >>> 2, (ctrl + CONTROL_BYTES) >>> 2);
      const stacks: number[] = [];
      for (let t = 1; t < threads; t++) stacks.push(heap.alloc(STACK_BYTES) + STACK_BYTES);
      pool = await WorkerPool.start(module, memory, threads, ctrl, stacks, runLocal, poolOpts);
    }
    return new WasmRuntime(heap, ex, pool, job, shared, relaxed);
  }

  /** Threads including the caller's. */
  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /** Throws after {@link dispose}. */
  check(kernel: string): void {
    if (this.disposed) throw new Error(`quant-kernels: wasm backend ${kernel}: the backend was disposed`);
  }

  /** Re-packs a bitpack matrix into a resident descriptor's words (see wasm/quant.c). */
  repack(desc: number, src: number, srcWordsPerRow: number): void {
    this.ex.qk_repack(desc, src, srcWordsPerRow);
  }

  /**
   * Starts a call: resets the per-call arena, which then holds at least `arenaBytes`, and makes
   * sure every thread has `tmpFloats` floats of row buffer after the GEMM blocks.
   */
  begin(arenaBytes: number, tmpFloats: number): void {
    const stride = Math.ceil(((GEMM_SCRATCH_FLOATS + Math.max(tmpFloats, NC) + 64) * 4) / 64) * 64;
    if (stride > this.scratchStride) {
      if (this.scratch !== 0) this.heap.release(this.scratch);
      this.scratch = 0;
      this.scratch = this.heap.alloc(stride * this.threads);
      this.scratchStride = stride;
    }
    if (arenaBytes > this.arenaBytes) {
      if (this.arena !== 0) this.heap.release(this.arena);
      this.arena = 0;
      const bytes = Math.ceil(arenaBytes * 1.25);
      this.arena = this.heap.alloc(bytes);
      this.arenaBytes = bytes;
    }
    this.arenaUsed = 0;
    this.heap.refresh();
  }

  /** Takes `bytes` (64-aligned) from the arena reserved by {@link begin}. */
  take(bytes: number): number {
    const size = Math.ceil(bytes / 64) * 64;
    if (this.arenaUsed + size > this.arenaBytes)
      throw new Error("quant-kernels: wasm arena overflow (internal error)");
    const a = this.arena + this.arenaUsed;
    this.arenaUsed += size;
    return a;
  }

  /** Writes the job header and returns the job's int32 slots (index `job/4 + slot`). */
  jobSlots(op: number): { i32: Int32Array; f32: Float32Array; base: number } {
    const h = this.heap;
    h.refresh();
    const base = this.job >>> 2;
    h.i32[base + J_OP] = op;
    h.i32[base + J_SCRATCH] = this.scratch;
    h.i32[base + J_STRIDE] = this.scratchStride;
    h.i32[base + J_NEXT] = 0;
    return { i32: h.i32, f32: h.f32, base };
  }

  /** Runs the job written by {@link jobSlots} on up to `nth` threads. */
  run(nth: number): void {
    const n = Math.max(1, Math.min(nth, this.threads));
    if (this.pool === null || n === 1) this.ex.qk_run(this.job, 0, 1);
    else this.pool.run(this.job, n);
    this.heap.refresh();
  }

  /** Stops workers; the memory is dropped with this object. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool?.dispose();
  }
}
