// The GPU backends against the best CPU backend, measured in the same run:
// - quantized matvec (rows = 1) and qmatmul (a batch of rows), INT2 g64 and INT4 g128;
// - float32 GEMV (the weight layout, transB) and square GEMM;
// through every backend that runs here: the reference, the wasm backend (2 threads), gpu.js in its cpu
// and webasm modes (and headless-gl when `gl` is built), and WebGPU (a GPU, or Mesa llvmpipe through
// Dawn's OpenGL ES backend: software rendering). Every result is checked against the reference first.
// `INT21_BENCH_QUICK=1` shrinks every shape so the run takes seconds.
import { loadavg } from "node:os";
import { consume, report, time, timeAsync } from "@int21/bench-utils";
import {
  type Backend,
  createReferenceBackend,
  getFormat,
  packQuantizedLinear,
  type QuantizedLinear,
  roundToF16,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import {
  type AsyncBackend,
  asyncBackendFrom,
  createGpuJsBackend,
  createWebGpuBackend,
  type GpuJsMode,
} from "../src/index";

const quick = process.env.INT21_BENCH_QUICK === "1";
const opts = { minTimeMs: quick ? 30 : 1000, minRuns: 3, maxRuns: quick ? 20 : 200 };
/** The reference is float64 scalar code: time it only where it finishes in reasonable time. */
const refOpts = { minTimeMs: quick ? 10 : 200, minRuns: 1, maxRuns: 3 };

const MATVEC = quick ? { N: 256, K: 256 } : { N: 4096, K: 4096 };
const QMATMUL = quick ? { N: 128, K: 256, rows: 8 } : { N: 1024, K: 1024, rows: 32 };
const GEMM = quick ? 64 : 512;

let seed = 7;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
}
function randomF32(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** A synthetic quantized layer: random codes, f16 scales, integer zeros. */
function synthQuant(name: string, N: number, K: number): QuantizedLinear {
  const f = getFormat(name);
  const ng = f.groupSize === -1 ? 1 : Math.ceil(K / f.groupSize);
  const top = 2 ** f.bits;
  const codes = new Uint8Array(N * K);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(rand() * top);
  const scales = new Float32Array(N * ng);
  const zeros = new Float32Array(N * ng);
  for (let i = 0; i < scales.length; i++) {
    scales[i] = roundToF16(0.01 + rand() * 0.02);
    zeros[i] = f.symmetric ? top / 2 : Math.floor(rand() * top);
  }
  return packQuantizedLinear(f, N, K, codes, scales, zeros);
}

function validate(what: string, got: Float32Array, want: Float32Array): void {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  const rel = err / Math.max(scale, 1e-30);
  if (!(rel <= 1e-4))
    throw new Error(`gpu-kernels bench: ${what} differs from the reference: max rel err ${rel}`);
}

interface Contender {
  label: string;
  cpu: boolean;
  b: AsyncBackend;
  /** Synchronous backends are timed with `time`, asynchronous ones with `timeAsync`. */
  sync: Backend | null;
}

const warnings: string[] = [];
const warn = (m: string) => warnings.push(m);
const ref = createReferenceBackend();
const wasm = await createWasmBackend({ threads: 2 });
const contenders: Contender[] = [
  { label: "reference", cpu: true, b: asyncBackendFrom(ref), sync: ref },
  { label: "wasm-2t", cpu: true, b: asyncBackendFrom(wasm), sync: wasm },
];
const modes: GpuJsMode[] = ["cpu", "webasm", "headlessgl"];
for (const mode of modes) {
  const g = await createGpuJsBackend({ mode, fallback: ref, warn });
  if (g.fallbackReason === null)
    contenders.push({ label: `gpujs-${g.mode}`, cpu: false, b: asyncBackendFrom(g), sync: g });
}
console.error(`gpu.js contenders ready: ${contenders.map((c) => c.label).join(", ")}`);
const webgpu = await createWebGpuBackend({ fallback: ref, warn });
const software = webgpu.context !== null && /llvmpipe|lavapipe|swiftshader/i.test(webgpu.context.adapter);
if (webgpu.context) {
  contenders.push({ label: software ? "webgpu-software" : "webgpu", cpu: false, b: webgpu, sync: null });
}

type Case = {
  name: string;
  flops: number;
  run: (c: Contender) => Promise<Float32Array>;
  timeIt: (c: Contender) => Promise<number>;
};

function quantCase(
  kind: "qmatvec" | "qmatmul",
  fname: string,
  tag: string,
  N: number,
  K: number,
  rows: number,
): Case {
  const q = synthQuant(fname, N, K);
  const x = randomF32(rows * K);
  const y = new Float32Array(rows * N);
  return {
    name: `gpu:${kind}:${tag}:${kind === "qmatmul" ? `rows${rows}:` : ""}${N}x${K}`,
    flops: 2 * rows * N * K,
    run: async (c) => {
      y.fill(Number.NaN);
      await c.b.qmatmulAsync(x, rows, q, y);
      return y.slice();
    },
    timeIt: async (c) => {
      const s = c.sync;
      const t = s
        ? time(c.label, () => s.qmatmul(x, rows, q, y), c.label === "reference" ? refOpts : opts)
        : await timeAsync(c.label, () => c.b.qmatmulAsync(x, rows, q, y), opts);
      return t.medianMs;
    },
  };
}

function gemmCase(kind: "sgemv" | "sgemm", M: number, N: number, K: number): Case {
  const A = randomF32(M * K);
  const B = randomF32(N * K, 0.05);
  const C = new Float32Array(M * N);
  const args = { M, N, K, A, B, C, transB: true, bConst: true };
  return {
    name: `gpu:${kind}:f32:${M}x${N}x${K}`,
    flops: 2 * M * N * K,
    run: async (c) => {
      C.fill(Number.NaN);
      await c.b.sgemmAsync(args);
      return C.slice();
    },
    timeIt: async (c) => {
      const s = c.sync;
      const t = s
        ? time(c.label, () => s.sgemm(args), c.label === "reference" ? refOpts : opts)
        : await timeAsync(c.label, () => c.b.sgemmAsync(args), opts);
      return t.medianMs;
    },
  };
}

const cases: Case[] = [
  quantCase("qmatvec", "int2-g64-asym-f16", "int2g64", MATVEC.N, MATVEC.K, 1),
  quantCase("qmatvec", "int4-g128-asym-f16", "int4g128", MATVEC.N, MATVEC.K, 1),
  quantCase("qmatmul", "int2-g64-asym-f16", "int2g64", QMATMUL.N, QMATMUL.K, QMATMUL.rows),
  gemmCase("sgemv", 1, MATVEC.N, MATVEC.K),
  gemmCase("sgemm", GEMM, GEMM, GEMM),
];

const load = loadavg()[0];
const rows: { name: string; [k: string]: number | string | boolean | null }[] = [];
for (const cs of cases) {
  const want = await cs.run(contenders[0]);
  const times = new Map<string, number>();
  for (const c of contenders) {
    console.error(`${cs.name}: ${c.label}`);
    if (c !== contenders[0]) validate(`${cs.name} on ${c.label}`, await cs.run(c), want);
    times.set(c.label, await cs.timeIt(c));
  }
  const bestCpu = Math.min(
    ...contenders.filter((c) => c.cpu).map((c) => times.get(c.label) ?? Number.POSITIVE_INFINITY),
  );
  for (const c of contenders) {
    const ms = times.get(c.label) ?? Number.NaN;
    rows.push({
      name: `${cs.name}:${c.label}`,
      medianMs: ms,
      gflops: cs.flops / ms / 1e6,
      speedupVsBestCpu: bestCpu / ms,
      device: c.cpu ? "cpu" : c.label.startsWith("webgpu") ? (webgpu.context?.adapter ?? "") : "cpu (gpu.js)",
    });
  }
  consume(want);
}
wasm.dispose();
webgpu.dispose();

const notes = [
  `WebGPU: ${webgpu.context ? `${webgpu.context.source}, ${webgpu.context.featureLevel}, ${webgpu.context.adapter}` : webgpu.fallbackReason}`,
  software
    ? "WebGPU ran on software rendering (Mesa llvmpipe): no GPU was used; figures show the path works, not GPU speed."
    : "",
  "gpu.js modes tried: cpu, webasm, headlessgl (headless-gl needs the native `gl` package built and a GL context).",
  ...warnings,
  "WebGPU timings include uploading x and reading y back each call (weights stay resident).",
  `1-minute load average at start: ${load.toFixed(2)} on ${2} cores${load > 1.5 ? " (loaded machine: figures are noisy)" : ""}.`,
].filter((s) => s !== "");
report("gpu-kernels", rows, {
  notes,
  chart: {
    title: "GPU backends vs best CPU backend (speedup, higher is better)",
    value: "speedupVsBestCpu",
    unit: "×",
  },
});
