// The optional adamw kernel on WebGPU: the async backend's adamwAsync and the sync backend's adamw give
// quant-kernels' referenceAdamW (autograd's Adam / AdamW maths) over several steps, with m and v resident.
import { type AdamWArgs, referenceAdamW } from "@int21/quant-kernels";
import { randomWeights } from "@int21/quant-kernels/testing";
import { describe, expect, it } from "vitest";
import { createWebGpuBackend } from "./webgpu-backend";
import { createWebGpuSyncBackend } from "./webgpu-sync-backend";

const probe = await createWebGpuSyncBackend({ warn: () => {} });
const missing = probe.fallbackReason;
probe.dispose();
if (missing) console.warn(`[@int21/gpu] skipping WebGPU adamw tests: ${missing}`);

/** One tensor's optimizer problem: parameters inside a larger array (at `offset`), m and v. */
function problem(n: number, offset: number, seed: number) {
  const params = Float32Array.from(randomWeights(n + offset + 3, seed), (x) => x * 20);
  return { params, offset, m: new Float32Array(n), v: new Float32Array(n) };
}

type Hyper = Omit<AdamWArgs, "params" | "offset" | "grads" | "m" | "v" | "step">;

/**
 * max_j |a − b| / max(|b|, floor · max |b|): element-wise relative, floored for values near zero. The
 * parameters are compared element-wise (floor 1e-3); m and v norm-wise (floor 1): their updates cancel
 * (β·m + (1−β)·g), so an element near zero carries the rounding of its larger terms.
 */
function relErr(a: Float32Array, b: Float32Array, floor = 1e-3): number {
  let mag = 0;
  for (const x of b) mag = Math.max(mag, Math.abs(x));
  let e = 0;
  for (let j = 0; j < b.length; j++)
    e = Math.max(e, Math.abs(a[j] - b[j]) / Math.max(Math.abs(b[j]), floor * mag));
  return e;
}

/** Runs `steps` updates through `update` and the reference from the same start; returns the worst relative errors. */
function compare(update: (a: AdamWArgs) => void, n: number, hyper: Hyper, steps: number, seed: number) {
  const got = problem(n, 5, seed);
  const want = problem(n, 5, seed);
  let worst = 0;
  for (let t = 1; t <= steps; t++) {
    const grads = Float32Array.from(randomWeights(n, seed * 31 + t), (x) => x * (t % 2 ? 1 : 1e-3));
    update({ ...got, grads, step: t, ...hyper });
    referenceAdamW({ ...want, grads, step: t, ...hyper });
    worst = Math.max(
      worst,
      relErr(got.params, want.params),
      relErr(got.m, want.m, 1),
      relErr(got.v, want.v, 1),
    );
  }
  // only the tensor's range moved
  expect(got.params.subarray(0, 5)).toEqual(want.params.subarray(0, 5));
  expect(got.params.subarray(5 + n)).toEqual(want.params.subarray(5 + n));
  return worst;
}

const ADAMW: Hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
const ADAM_L2: Hyper = { lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, decoupled: false };

describe.skipIf(missing !== null)("adamw on WebGPU", () => {
  it("the sync backend's adamw equals the reference over 6 steps (AdamW and Adam-L2), m and v resident", async () => {
    const b = await createWebGpuSyncBackend();
    try {
      for (const [hyper, n] of [
        [ADAMW, 1000],
        [ADAM_L2, 70_001],
      ] as const) {
        const before = b.stats();
        expect(compare((a) => b.adamw(a), n, hyper, 6, n)).toBeLessThan(1e-6);
        expect(b.stats().gpu.adamw - before.gpu.adamw).toBe(6);
        expect(b.stats().cpu.adamw).toBe(before.cpu.adamw);
      }
    } finally {
      b.dispose();
    }
  }, 120_000);

  it("reloads m and v when the caller's steps do not follow (a loaded optimizer state)", async () => {
    const b = await createWebGpuSyncBackend();
    try {
      const n = 300;
      const got = problem(n, 0, 4);
      const want = problem(n, 0, 4);
      const g = (t: number) => Float32Array.from(randomWeights(n, 100 + t));
      for (const t of [1, 2, 3]) {
        b.adamw({ ...got, grads: g(t), step: t, ...ADAMW });
        referenceAdamW({ ...want, grads: g(t), step: t, ...ADAMW });
      }
      // the state of step 1 loaded back into the same arrays, as Optimizer.loadStateDict does
      const saved = problem(n, 0, 4);
      referenceAdamW({ ...saved, grads: g(1), step: 1, ...ADAMW });
      for (const s of [got, want]) {
        s.params.set(saved.params);
        s.m.set(saved.m);
        s.v.set(saved.v);
      }
      b.adamw({ ...got, grads: g(2), step: 2, ...ADAMW });
      referenceAdamW({ ...want, grads: g(2), step: 2, ...ADAMW });
      expect(relErr(got.params, want.params)).toBeLessThan(1e-6);
      expect(relErr(got.m, want.m, 1)).toBeLessThan(1e-6);
      // every step ran on the device: the reload went through the worker, not the CPU fallback
      expect(b.stats().gpu.adamw).toBe(4);
      expect(b.stats().cpu.adamw).toBe(0);
    } finally {
      b.dispose();
    }
  }, 60_000);

  it("the async backend's adamwAsync equals the reference", async () => {
    const b = await createWebGpuBackend({ warn: () => {} });
    try {
      const got = problem(513, 5, 9);
      const want = problem(513, 5, 9);
      for (let t = 1; t <= 4; t++) {
        const grads = Float32Array.from(randomWeights(513, 50 + t));
        await b.adamwAsync({ ...got, grads, step: t, ...ADAMW });
        referenceAdamW({ ...want, grads, step: t, ...ADAMW });
      }
      expect(relErr(got.params, want.params)).toBeLessThan(1e-6);
      expect(relErr(got.v, want.v, 1)).toBeLessThan(1e-6);
    } finally {
      b.dispose();
    }
  }, 60_000);
});

describe("adamw without a device", () => {
  it("runs the fallback's adamw (else the reference) and counts it on the CPU", async () => {
    const handlers: ((m: unknown) => void)[] = [];
    const b = await createWebGpuSyncBackend({
      warn: () => {},
      worker: () => ({
        postMessage(m: unknown) {
          if ((m as { op: string }).op === "init")
            queueMicrotask(() => {
              for (const h of handlers.splice(0)) h({ op: "ready", ok: false, reason: "none" });
            });
        },
        once(e: string, h: (m: unknown) => void) {
          if (e === "message") handlers.push(h);
        },
        terminate() {},
      }),
    });
    try {
      expect(b.fallbackReason).toMatch(/none/);
      expect(compare((a) => b.adamw(a), 50, ADAMW, 3, 2)).toBe(0);
      expect(b.stats().cpu.adamw).toBe(3);
      expect(() => b.adamw({ ...problem(4, 0, 1), grads: new Float32Array(4), step: 0, ...ADAMW })).toThrow(
        /step 0 must be an integer ≥ 1/,
      );
    } finally {
      b.dispose();
    }
  });
});
