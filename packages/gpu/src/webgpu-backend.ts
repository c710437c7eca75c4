// The WebGPU backend: WGSL kernels reading packed u32 words exactly, asynchronous readback.
/// <reference types="@webgpu/types" />
import {
  type AdamWArgs,
  type Backend,
  checkAdamWArgs,
  createReferenceBackend,
  type GemmArgs,
  type KernelName,
  type QuantFormat,
  type QuantizedLinear,
  referenceAdamW,
} from "@int21/quant-kernels";
import type { AsyncBackend } from "./async-backend";
import { assertPacked, groupCountOf, groupIndexOf } from "./float-layout";
import { gemmEpilogue, type ResolvedGemm, resolveGemm } from "./gemm-args";
import { assertQuantArgs } from "./quant-args";
import { requestWebGpuDevice, type WebGpuContext, type WebGpuDeviceOptions } from "./webgpu-device";
import {
  ADAMW_WGSL,
  dequantizeWgsl,
  GEMM_TILE,
  qmatmulTWgsl,
  qmatmulWgsl,
  ROW_TILE,
  SGEMM_WGSL,
  SGEMV_WGSL,
  GEMV_MAX_ROWS,
  WORKGROUP,
} from "./webgpu-shaders";

/** Options of {@link createWebGpuBackend} (device options as in {@link requestWebGpuDevice}). */
export interface WebGpuBackendOptions extends WebGpuDeviceOptions {
  /** A device already made with {@link requestWebGpuDevice} (shared between backends). */
  context?: WebGpuContext;
  /**
   * The CPU backend that runs everything when no WebGPU device can be made, and problems beyond the
   * device's limits. Default: `createReferenceBackend()`. It stays the caller's: `dispose()` leaves it.
   */
  fallback?: Backend;
  /** Where the one-time "falling back" notice goes. Default `console.warn`. */
  warn?: (message: string) => void;
}

/** An {@link AsyncBackend} on a WebGPU device, or on its CPU fallback (see `fallbackReason`). */
export interface WebGpuBackend extends AsyncBackend {
  /** The device and where it came from, or null on fallback. */
  readonly context: WebGpuContext | null;
  /** Why the backend runs on its fallback, or null when WebGPU runs it. */
  readonly fallbackReason: string | null;
  /**
   * One Adam / AdamW update (quant-kernels' `AdamWArgs`) on the device; resolves once `params`, `m` and `v`
   * hold the result. `params[offset …]`, `m` and `v` live on the device between calls, keyed by `opts.key`
   * (default: the `m` array): a call whose `step` is one more than the last one for that key uploads only the
   * parameters and gradients; otherwise (or with `opts.reload`) it uploads `m` and `v` too. Without a device,
   * or beyond its limits, it runs the fallback's `adamw` (else quant-kernels' `referenceAdamW`).
   */
  adamwAsync(args: AdamWArgs, opts?: { key?: object; reload?: boolean }): Promise<void>;
}

/** A QuantizedLinear resident on the device. */
interface ResidentLayer {
  qw: GPUBuffer;
  /** `scales[N·G] | zeros[N·G] | groupOf[K]` as f32. */
  prm: GPUBuffer;
  G: number;
  wpr: number;
}

const STORAGE = 0x0080; // GPUBufferUsage.STORAGE
const COPY_SRC = 0x0004;
const COPY_DST = 0x0008;
const MAP_READ = 0x0001;
const UNIFORM = 0x0040;
const MAP_MODE_READ = 0x0001; // GPUMapMode.READ

/** The device-side half: pipelines, resident buffers, dispatch and readback. */
class WebGpuKernels {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private readonly layers = new WeakMap<QuantizedLinear, ResidentLayer>();
  private readonly constB = new WeakMap<Float32Array, GPUBuffer>();
  /** Adam state (`params | m | v`) by key, with the last step it holds (-1: not valid). */
  private readonly adam = new WeakMap<object, { buf: GPUBuffer; n: number; step: number }>();
  /** Every resident buffer, destroyed by dispose() or when its record is collected. */
  private readonly resident = new Set<GPUBuffer>();
  private readonly collected = new FinalizationRegistry<GPUBuffer[]>((bufs) => {
    for (const b of bufs) {
      if (this.resident.delete(b)) b.destroy();
    }
  });
  readonly device: GPUDevice;
  private readonly maxBinding: number;
  private readonly maxGroups: number;

  constructor(readonly ctx: WebGpuContext) {
    this.device = ctx.device;
    this.maxBinding = Math.min(
      this.device.limits.maxStorageBufferBindingSize,
      this.device.limits.maxBufferSize,
    );
    this.maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
  }

  /** Whether `floats` f32 values fit one storage binding. */
  fits(...floats: number[]): boolean {
    return floats.every((f) => f * 4 <= this.maxBinding);
  }

  /** Whether a dispatch of `groupsX` workgroups along x is allowed (y is grid-strided in the shaders). */
  dispatchable(groupsX: number): boolean {
    return groupsX <= this.maxGroups;
  }

  private pipeline(key: string, code: string): Promise<GPUComputePipeline> {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code, label: key });
      p = this.device.createComputePipelineAsync({
        layout: "auto",
        compute: { module, entryPoint: "main" },
        label: key,
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  private upload(data: Float32Array | Uint32Array, usage = STORAGE): GPUBuffer {
    const size = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
    const buf = this.device.createBuffer({ size, usage, mappedAtCreation: true });
    const range = buf.getMappedRange();
    if (data instanceof Float32Array) new Float32Array(range).set(data);
    else new Uint32Array(range).set(data);
    buf.unmap();
    return buf;
  }

  private keep(owner: object, bufs: GPUBuffer[]): void {
    for (const b of bufs) this.resident.add(b);
    this.collected.register(owner, bufs);
  }

  layer(q: QuantizedLinear): ResidentLayer {
    let l = this.layers.get(q);
    if (l) return l;
    assertPacked(q);
    const N = q.outFeatures;
    const K = q.inFeatures;
    const G = groupCountOf(q);
    const wpr = q.qweight.wordsPerRow;
    const prm = new Float32Array(2 * N * G + K);
    prm.set(q.scales.subarray(0, N * G), 0);
    prm.set(q.zeros.subarray(0, N * G), N * G);
    const gi = groupIndexOf(q);
    for (let k = 0; k < K; k++) prm[2 * N * G + k] = gi[k];
    l = { qw: this.upload(q.qweight.words.subarray(0, N * wpr)), prm: this.upload(prm), G, wpr };
    this.keep(q, [l.qw, l.prm]);
    this.layers.set(q, l);
    return l;
  }

  /**
   * Binds `buffers` (binding index → buffer; binding 0 is the uniform made from `params`), dispatches
   * `groups`, and copies `outFloats` floats of `out` into `dst`. Throws on a validation or out-of-memory
   * error instead of returning garbage.
   */
  async run(
    key: string,
    code: string,
    params: Uint32Array,
    buffers: Record<number, GPUBuffer>,
    out: GPUBuffer,
    groups: [number, number],
    dst: Float32Array,
    outFloats: number,
  ): Promise<void> {
    const pipeline = await this.pipeline(key, code);
    const d = this.device;
    d.pushErrorScope("validation");
    d.pushErrorScope("out-of-memory");
    const uniform = this.upload(params, UNIFORM);
    const bytes = outFloats * 4;
    const staging = d.createBuffer({ size: Math.max(4, bytes), usage: MAP_READ | COPY_DST });
    try {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform } }];
      for (const [b, buffer] of Object.entries(buffers))
        entries.push({ binding: Number(b), resource: { buffer } });
      const bind = d.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      const enc = d.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(groups[0], groups[1]);
      pass.end();
      if (bytes > 0) enc.copyBufferToBuffer(out, 0, staging, 0, bytes);
      d.queue.submit([enc.finish()]);
      // Pop both scopes before awaiting anything: error scopes are a per-device stack, and another call
      // in flight must not push between this call's push and pop.
      const popped = [d.popErrorScope(), d.popErrorScope()];
      const [oom, invalid] = await Promise.all(popped);
      const err = invalid ?? oom;
      if (err) throw new Error(`gpu: WebGPU ${key}: ${err.message}`);
      await staging.mapAsync(MAP_MODE_READ);
      dst.set(new Float32Array(staging.getMappedRange(), 0, outFloats));
      staging.unmap();
    } finally {
      staging.destroy();
      uniform.destroy();
    }
  }

  output(floats: number): GPUBuffer {
    return this.device.createBuffer({ size: Math.max(4, floats * 4), usage: STORAGE | COPY_SRC });
  }

  input(data: Float32Array): GPUBuffer {
    return this.upload(data);
  }

  /** B of an sgemm: resident when the caller marked it constant (keyed by the array). */
  gemmB(g: ResolvedGemm): { buf: GPUBuffer; off: number; temp: boolean } {
    if (g.bConst && this.fits(g.B.length)) {
      let buf = this.constB.get(g.B);
      if (!buf) {
        buf = this.upload(g.B);
        this.keep(g.B, [buf]);
        this.constB.set(g.B, buf);
      }
      return { buf, off: g.bOffset, temp: false };
    }
    return { buf: this.upload(g.B.subarray(g.bOffset, g.bEnd)), off: 0, temp: true };
  }

  /**
   * The resident `params | m | v` buffer of `key` for this step: reused (only the parameters written)
   * when it holds step − 1 of the same length and `reload` is false, else uploaded whole.
   */
  adamState(key: object, a: AdamWArgs, reload: boolean): { buf: GPUBuffer; n: number; step: number } {
    const n = a.grads.length;
    const o = a.offset ?? 0;
    let s = this.adam.get(key);
    if (s && !reload && s.n === n && s.step === a.step - 1) {
      // A copy: writeBuffer takes no views of shared memory (the sync backend's arena).
      this.device.queue.writeBuffer(s.buf, 0, a.params.slice(o, o + n));
    } else {
      if (s && this.resident.delete(s.buf)) s.buf.destroy();
      const init = new Float32Array(3 * n);
      init.set(a.params.subarray(o, o + n), 0);
      init.set(a.m.subarray(0, n), n);
      init.set(a.v.subarray(0, n), 2 * n);
      const buf = this.upload(init, STORAGE | COPY_SRC | COPY_DST);
      this.keep(key, [buf]);
      s = { buf, n, step: -1 };
      this.adam.set(key, s);
    }
    s.step = -1;
    return s;
  }

  dispose(): void {
    for (const b of this.resident) b.destroy();
    this.resident.clear();
    this.pipelines.clear();
    this.device.destroy();
  }
}

function quantParams(q: QuantizedLinear, l: ResidentLayer, rows: number): Uint32Array {
  const N = q.outFeatures;
  const K = q.inFeatures;
  return Uint32Array.of(N, K, rows, l.G, l.wpr, N * l.G, 2 * N * l.G, Math.ceil(rows / ROW_TILE));
}

/**
 * Creates the WebGPU backend: requests a device ({@link requestWebGpuDevice}: `navigator.gpu`, or Dawn
 * through the optional `webgpu` package in Node, falling back from its default backend to OpenGL ES on
 * Mesa), and compiles WGSL kernels on first use, one pipeline per kernel and bit width.
 *
 * When no device can be made, the backend says why once (through `warn`) and runs every kernel on
 * `fallback`. Kernels are asynchronous ({@link AsyncBackend}): each resolves once the caller's output
 * buffer holds the result. QuantizedLinear records (packed words as u32, scales, zeros, group indices)
 * stay resident on the device, keyed by identity; so does sgemm's B when `bConst` is set.
 */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const fallback = options.fallback ?? createReferenceBackend();
  const warn = options.warn ?? ((m: string) => console.warn(m));
  let reason: string | null = null;
  let k: WebGpuKernels | null = null;
  const got = options.context ?? (await requestWebGpuDevice(options));
  if (typeof got === "string") {
    reason = `no WebGPU device (${got})`;
    warn(`@int21/gpu: ${reason}; running on the ${fallback.name} backend instead.`);
  } else {
    k = new WebGpuKernels(got);
  }
  const dev = k;
  // Affine decode only: codebook ("lut") formats run on the fallback.
  const bitsOk = (f?: QuantFormat) =>
    !f || ((f.decode ?? "affine") === "affine" && Number.isInteger(f.bits) && f.bits >= 1 && f.bits <= 8);

  const backend: WebGpuBackend = {
    name: dev ? "webgpu" : `webgpu-fallback-${fallback.name}`,
    context: dev ? dev.ctx : null,
    fallbackReason: reason,
    supports: (kernel: KernelName, format?: QuantFormat) => !!dev && (kernel === "sgemm" || bitsOk(format)),

    async sgemmAsync(args: GemmArgs): Promise<void> {
      const g = resolveGemm(args);
      // Skinny products (the decoding matvec) take the one-column-per-invocation kernel.
      const skinny = g.M <= GEMV_MAX_ROWS;
      const groupsX = skinny ? Math.ceil(g.N / WORKGROUP) : Math.ceil(g.N / GEMM_TILE);
      if (!dev?.fits(g.aEnd - g.aOffset, g.bEnd - g.bOffset, g.M * g.N) || !dev.dispatchable(groupsX)) {
        fallback.sgemm(args);
        return;
      }
      if (g.M === 0 || g.N === 0) return;
      const acc = new Float32Array(g.M * g.N);
      if (g.K > 0) {
        const a = dev.input(g.A.subarray(g.aOffset, g.aEnd));
        const b = dev.gemmB(g);
        const out = dev.output(g.M * g.N);
        const tilesM = Math.ceil(g.M / (skinny ? ROW_TILE : GEMM_TILE));
        const params = Uint32Array.of(
          g.M,
          g.N,
          g.K,
          0,
          g.transA ? 1 : g.lda,
          g.transA ? g.lda : 1,
          b.off,
          g.transB ? 1 : g.ldb,
          g.transB ? g.ldb : 1,
          tilesM,
          0,
          0,
        );
        try {
          await dev.run(
            skinny ? "sgemv" : "sgemm",
            skinny ? SGEMV_WGSL : SGEMM_WGSL,
            params,
            { 1: a, 2: b.buf, 3: out },
            out,
            [groupsX, Math.min(tilesM, 65535)],
            acc,
            g.M * g.N,
          );
        } finally {
          a.destroy();
          if (b.temp) b.buf.destroy();
          out.destroy();
        }
      }
      gemmEpilogue(g, acc);
    },

    async dequantizeAsync(q: QuantizedLinear, out: Float32Array): Promise<void> {
      assertQuantArgs("dequantize", q, 0, null, out);
      const N = q.outFeatures;
      const K = q.inFeatures;
      if (!dev || !bitsOk(q.format) || !dev.fits(N * K) || !dev.dispatchable(Math.ceil(K / WORKGROUP))) {
        fallback.dequantize(q, out);
        return;
      }
      const l = dev.layer(q);
      const o = dev.output(N * K);
      try {
        await dev.run(
          `dequantize${q.format.bits}`,
          dequantizeWgsl(q.format.bits),
          quantParams(q, l, 0),
          { 2: l.qw, 3: l.prm, 4: o },
          o,
          [Math.ceil(K / WORKGROUP), Math.min(N, 65535)],
          out,
          N * K,
        );
      } finally {
        o.destroy();
      }
    },

    async qmatmulAsync(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): Promise<void> {
      assertQuantArgs("qmatmul", q, rows, x, y);
      const N = q.outFeatures;
      const K = q.inFeatures;
      if (
        !dev ||
        !bitsOk(q.format) ||
        !dev.fits(rows * K, rows * N) ||
        !dev.dispatchable(Math.ceil(N / WORKGROUP))
      ) {
        fallback.qmatmul(x, rows, q, y);
        return;
      }
      if (rows === 0) return;
      const l = dev.layer(q);
      const xb = dev.input(x.subarray(0, rows * K));
      const o = dev.output(rows * N);
      try {
        await dev.run(
          `qmatmul${q.format.bits}`,
          qmatmulWgsl(q.format.bits),
          quantParams(q, l, rows),
          { 1: xb, 2: l.qw, 3: l.prm, 4: o },
          o,
          [Math.ceil(N / WORKGROUP), Math.min(Math.ceil(rows / ROW_TILE), 65535)],
          y,
          rows * N,
        );
      } finally {
        xb.destroy();
        o.destroy();
      }
    },

    async qmatmulTAsync(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): Promise<void> {
      assertQuantArgs("qmatmulT", q, rows, g, dx);
      const N = q.outFeatures;
      const K = q.inFeatures;
      if (
        !dev ||
        !bitsOk(q.format) ||
        !dev.fits(rows * K, rows * N) ||
        !dev.dispatchable(Math.ceil(K / WORKGROUP))
      ) {
        fallback.qmatmulT(g, rows, q, dx);
        return;
      }
      if (rows === 0) return;
      const l = dev.layer(q);
      const gb = dev.input(g.subarray(0, rows * N));
      const o = dev.output(rows * K);
      try {
        await dev.run(
          `qmatmulT${q.format.bits}`,
          qmatmulTWgsl(q.format.bits),
          quantParams(q, l, rows),
          { 1: gb, 2: l.qw, 3: l.prm, 4: o },
          o,
          [Math.ceil(K / WORKGROUP), Math.min(Math.ceil(rows / ROW_TILE), 65535)],
          dx,
          rows * K,
        );
      } finally {
        gb.destroy();
        o.destroy();
      }
    },

    async adamwAsync(args: AdamWArgs, opts: { key?: object; reload?: boolean } = {}): Promise<void> {
      checkAdamWArgs(args);
      const n = args.grads.length;
      const groups = Math.min(Math.ceil(n / WORKGROUP), 65535);
      if (!dev?.fits(3 * n)) {
        if (fallback.adamw) fallback.adamw(args);
        else referenceAdamW(args);
        return;
      }
      if (n === 0) return;
      const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, step: t } = args;
      const decoupled = args.decoupled ?? true;
      const state = dev.adamState(opts.key ?? args.m, args, opts.reload ?? false);
      const uni = new Float32Array(12);
      const u32 = new Uint32Array(uni.buffer);
      u32[0] = n;
      u32[1] = groups * WORKGROUP;
      uni.set(
        [
          b1,
          b2,
          1 - b1,
          1 - b2,
          lr,
          1 / (1 - b1 ** t),
          1 / (1 - b2 ** t),
          eps,
          decoupled ? 1 - lr * wd : 1,
          decoupled ? 0 : wd,
        ],
        2,
      );
      const gb = dev.input(args.grads.subarray(0, n));
      const out = new Float32Array(3 * n);
      try {
        await dev.run("adamw", ADAMW_WGSL, u32, { 1: gb, 2: state.buf }, state.buf, [groups, 1], out, 3 * n);
      } finally {
        gb.destroy();
      }
      state.step = t;
      const o = args.offset ?? 0;
      args.params.set(out.subarray(0, n), o);
      args.m.set(out.subarray(n, 2 * n));
      args.v.set(out.subarray(2 * n, 3 * n));
    },

    dispose(): void {
      dev?.dispose();
    },
  };
  return backend;
}
