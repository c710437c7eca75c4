// One LLaMA layer training step (forward + backward) at the stories110M shape (dim 768, hidden 2048,
// 12 heads, seq 256): ms per step, the share of time inside backend.sgemm, and peak tensor bytes with
// and without gradient checkpointing. Baseline: the plain TypeScript blocked sgemm, same run.
// INT21_BENCH_QUICK=1: a small shape that finishes in seconds.
import { consume, report } from "@int21/bench-utils";
import { type Backend, createReferenceBackend, type GemmArgs, plainBlockedSgemm } from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { backward } from "../src/engine";
import { checkpoint } from "../src/checkpoint";
import { mul } from "../src/elementwise";
import { memory, resetPeak } from "../src/memory";
import { sum } from "../src/reduce";
import { setBackend } from "../src/backend";
import { type LayerConfig, initLayer, layerParams, llamaLayer } from "../src/test-llama";
import { type Tensor, randn, tidy } from "../src/tensor";

const quick = process.env.INT21_BENCH_QUICK === "1";
const cfg: LayerConfig = quick
  ? { dim: 128, hidden: 256, nHeads: 4, nKvHeads: 4 }
  : { dim: 768, hidden: 2048, nHeads: 12, nKvHeads: 12 };
const T = quick ? 32 : 256;
const shape = `d${cfg.dim}-h${cfg.hidden}-nh${cfg.nHeads}-t${T}`;
const timing = { minTimeMs: quick ? 50 : 2000, minRuns: 3, maxRuns: quick ? 5 : 7 };

/** Wraps a backend so time spent in sgemm (and its flops) is counted. */
function counting(inner: Backend) {
  const c = { ms: 0, flops: 0, calls: 0 };
  const b: Backend = {
    ...inner,
    name: inner.name,
    supports: (k, f) => inner.supports(k, f),
    sgemm(a: GemmArgs) {
      const t0 = performance.now();
      inner.sgemm(a);
      c.ms += performance.now() - t0;
      c.flops += 2 * a.M * a.N * a.K;
      c.calls++;
    },
    dequantize: (q, o) => inner.dequantize(q, o),
    qmatmul: (x, r, q, y) => inner.qmatmul(x, r, q, y),
    qmatmulT: (g, r, q, dx) => inner.qmatmulT(g, r, q, dx),
    dispose: () => inner.dispose(),
  };
  return { backend: b, c };
}

/** One forward + backward of `layers` stacked layers; returns the loss. */
function step(
  layers: ReturnType<typeof initLayer>[],
  x: Tensor,
  r: Tensor,
  c: LayerConfig,
  ckpt: boolean,
): number {
  return tidy(() => {
    let h: Tensor = x;
    for (const w of layers) {
      const block = (t: Tensor) => llamaLayer(t, w, c);
      h = ckpt ? checkpoint(block, [h]) : tidy(() => block(h));
    }
    const l = sum(mul(h, r));
    backward(l);
    return l.item();
  });
}

function grads(ts: Tensor[]): Float32Array[] {
  return ts.map((t) => {
    const g = t.grad!.toFloat32Array();
    t.grad!.data.fill(0);
    return g;
  });
}

const reference = createReferenceBackend();
const blocked: Backend = { ...reference, name: "plain-ts-blocked", sgemm: plainBlockedSgemm };
const backends: Backend[] = [blocked];
try {
  backends.push(await createWasmBackend());
} catch (e) {
  console.warn(`wasm backend unavailable: ${(e as Error).message}`);
}

// Validate every timed backend against the reference at a small shape before timing.
{
  const small: LayerConfig = { dim: 32, hidden: 64, nHeads: 4, nKvHeads: 2 };
  const layer = initLayer(small, 1);
  const x = randn([1, 16, small.dim], { seed: 2, requiresGrad: true });
  const r = randn([1, 16, small.dim], { seed: 3 });
  const params = [x, ...layerParams(layer)];
  setBackend(reference);
  step([layer], x, r, small, false);
  const want = grads(params);
  for (const b of backends) {
    setBackend(b);
    step([layer], x, r, small, false);
    const got = grads(params);
    want.forEach((w, i) => {
      let num = 0;
      let den = 0;
      for (let j = 0; j < w.length; j++) {
        num += (got[i][j] - w[j]) ** 2;
        den += w[j] ** 2;
      }
      if (!(Math.sqrt(num / Math.max(den, 1e-30)) < 1e-4)) {
        throw new Error(
          `${b.name}: gradient ${i} differs from the reference (relative L2 ${Math.sqrt(num / den)})`,
        );
      }
    });
  }
}

const layer = initLayer(cfg, 7);
const x = randn([1, T, cfg.dim], { seed: 8, requiresGrad: true });
const r = randn([1, T, cfg.dim], { seed: 9 });
const rows: { name: string; [k: string]: number | string }[] = [];
let baselineMs = 0;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const inner of backends) {
  const { backend, c } = counting(inner);
  setBackend(backend);
  step([layer], x, r, cfg, false); // warm-up, allocates gradients
  const stepMs: number[] = [];
  const mmMs: number[] = [];
  let flops = 0;
  let calls = 0;
  const t0 = performance.now();
  while (
    stepMs.length < timing.minRuns ||
    (performance.now() - t0 < timing.minTimeMs && stepMs.length < timing.maxRuns)
  ) {
    c.ms = 0;
    c.flops = 0;
    c.calls = 0;
    const s0 = performance.now();
    consume(step([layer], x, r, cfg, false));
    stepMs.push(performance.now() - s0);
    mmMs.push(c.ms);
    flops = c.flops;
    calls = c.calls;
  }
  const ms = median(stepMs);
  const mm = median(mmMs);
  if (baselineMs === 0) baselineMs = ms;
  rows.push({
    name: `autograd:layer-step:${inner.name}:${shape}`,
    stepMs: ms,
    matmulMs: mm,
    matmulShare: median(stepMs.map((s, i) => mmMs[i] / s)),
    nonMatmulMs: median(stepMs.map((s, i) => s - mmMs[i])),
    runs: stepMs.length,
    sgemmCallsPerStep: calls,
    matmulGflops: flops / (mm * 1e6),
    speedupVsPlainTs: baselineMs / ms,
  });
}

// Peak tensor bytes (ledger), weights and gradients excluded (allocated before measuring):
// one layer, and a stack of layers, with and without checkpointing.
const fastest = backends[backends.length - 1];
setBackend(fastest);
const nStack = 4;
const stack = [layer, ...Array.from({ length: nStack - 1 }, (_, i) => initLayer(cfg, 20 + i))];
const stackParams = [x, ...stack.flatMap(layerParams)];
for (const layers of [[layer], stack]) {
  for (const ckpt of [false, true]) {
    step(layers, x, r, cfg, ckpt);
    for (const p of stackParams) p.grad?.data.fill(0);
    const base = memory().liveBytes;
    resetPeak();
    step(layers, x, r, cfg, ckpt);
    const peak = memory().peakBytes - base;
    rows.push({
      name: `autograd:layer-peak:${ckpt ? "checkpoint" : "plain"}:${layers.length}-layer:${shape}`,
      peakActivationMiB: peak / 2 ** 20,
      peakActivationBytes: peak,
      perLayerMiB: peak / layers.length / 2 ** 20,
    });
  }
}
for (const b of backends) b.dispose();

report("autograd-layer-step", rows, {
  notes: [
    `one LLaMA layer (pre-norm attention + SwiGLU FFN, RoPE, causal) ${shape}, batch 1; forward + backward of sum(y ⊙ r)`,
    "medians over runs; matmulShare = time inside backend.sgemm / step time (per run); speedupVsPlainTs = plain-TS blocked sgemm step time / this step time",
    `peak rows: ledger peak above weights and gradients, measured with the ${fastest.name} backend`,
  ],
  chart: { title: `autograd: one LLaMA layer training step (${shape})`, value: "stepMs", unit: "ms" },
});
