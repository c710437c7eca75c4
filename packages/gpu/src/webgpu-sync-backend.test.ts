import { type Backend, createReferenceBackend, FORMATS, getFormat, rtnQuantize } from "@int21/quant-kernels";
import { randomWeights, runBackendConformance } from "@int21/quant-kernels/testing";
import { describe, expect, it } from "vitest";
import { ST_DEAD, ST_ERROR, type SyncRequest, writeText } from "./sync-protocol";
import { createWebGpuSyncBackend, type SyncWorkerLike } from "./webgpu-sync-backend";

/** A fallback that refuses work, so every conformance case provably ran on the device. */
function refusingFallback(): Backend {
  const refuse = () => {
    throw new Error("webgpu-sync delegated to its fallback");
  };
  return {
    name: "refuse",
    supports: () => false,
    sgemm: refuse,
    dequantize: refuse,
    qmatmul: refuse,
    qmatmulT: refuse,
    dispose() {},
  };
}

// The device worker needs the optional `webgpu` package (Dawn) and an adapter (a GPU, lavapipe, or Mesa's
// llvmpipe through Dawn's OpenGL ES backend). Without one these tests skip and say why.
const probe = await createWebGpuSyncBackend({ fallback: refusingFallback(), warn: () => {} });
const missing = probe.fallbackReason;
probe.dispose();
if (missing) console.warn(`[@int21/gpu] skipping WebGPU sync-backend tests: ${missing}`);
else console.info(`[@int21/gpu] WebGPU sync backend on ${probe.context?.source}: ${probe.context?.adapter}`);

const strict = async () => {
  const b = await createWebGpuSyncBackend({ fallback: refusingFallback() });
  if (b.fallbackReason) throw new Error(b.fallbackReason);
  return b;
};

describe.skipIf(missing !== null)("WebGPU sync backend", () => {
  // The device decodes affine formats; codebook and ggml-block formats go to the fallback (refused here).
  const formats = FORMATS.filter((f) => f.decode === "affine");
  runBackendConformance("webgpu-sync", strict, { numRuns: 3, formats, timeout: 180_000 });

  it("runs codebook and block formats on its fallback and counts where each call ran", async () => {
    const ref = createReferenceBackend();
    const b = await createWebGpuSyncBackend({ fallback: ref });
    try {
      expect(b.name).toBe("webgpu-sync");
      const nf4 = FORMATS.find((f) => f.decode === "lut");
      if (!nf4) throw new Error("no codebook format registered");
      expect(b.supports("qmatmul", nf4)).toBe(false);
      expect(b.supports("qmatmul", getFormat("int4-g32-asym-f16"))).toBe(true);
      const N = 9;
      const K = 64;
      const x = Float32Array.from(randomWeights(2 * K, 5));
      for (const f of [nf4, getFormat("int4-g32-asym-f16")]) {
        const q = rtnQuantize(randomWeights(N * K, 3), N, K, f);
        const want = new Float32Array(2 * N);
        ref.qmatmul(x, 2, q, want);
        const got = new Float32Array(2 * N);
        b.qmatmul(x, 2, q, got);
        for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
      }
      expect(b.stats().cpu.qmatmul).toBe(1);
      expect(b.stats().gpu.qmatmul).toBe(1);
    } finally {
      b.dispose();
    }
    expect(() =>
      b.qmatmul(
        new Float32Array(64),
        1,
        rtnQuantize(randomWeights(64, 1), 1, 64, "int4-g32-asym-f16"),
        new Float32Array(1),
      ),
    ).toThrow(/after dispose/);
  });

  it("keeps a layer resident: a second call sends only activations and gives the same result", async () => {
    const b = await strict();
    try {
      const q = rtnQuantize(randomWeights(40 * 300, 9), 40, 300, "int2-g64-asym-f16");
      const x = Float32Array.from(randomWeights(3 * 300, 2));
      const y1 = new Float32Array(3 * 40);
      const y2 = new Float32Array(3 * 40);
      b.qmatmul(x, 3, q, y1);
      b.qmatmul(x, 3, q, y2);
      expect(Array.from(y2)).toEqual(Array.from(y1));
    } finally {
      b.dispose();
    }
  });
});

/** A fake device worker: answers `init` with `reply`, then lets `onRequest` act on the shared control block. */
function fakeWorker(
  ok: boolean,
  onRequest: (r: SyncRequest, ctrl: Int32Array, text: SharedArrayBuffer) => void = () => {},
): () => SyncWorkerLike {
  return () => {
    const handlers: ((m: unknown) => void)[] = [];
    let ctrl: Int32Array | null = null;
    let text: SharedArrayBuffer | null = null;
    return {
      once: (event: string, h: (m: unknown) => void) => {
        if (event === "message") handlers.push(h);
      },
      postMessage(m: unknown) {
        const r = m as SyncRequest;
        if (r.op === "init") {
          ctrl = new Int32Array(r.ctrl);
          text = r.text;
          const reply = ok
            ? { op: "ready", ok: true, source: "fake", featureLevel: "core", adapter: "fake adapter" }
            : { op: "ready", ok: false, reason: "the fake has no adapter" };
          queueMicrotask(() => {
            for (const h of handlers.splice(0)) h(reply);
          });
        } else if (ctrl && text) onRequest(r, ctrl, text);
      },
      terminate() {},
    } as SyncWorkerLike;
  };
}

describe("WebGPU sync backend without a device or with a failing worker", () => {
  const q = rtnQuantize(randomWeights(6 * 50, 3), 6, 50, "int2-g32-asym-f16");
  const x = Float32Array.from(randomWeights(50, 4));

  it("says once why and runs every kernel on the fallback", async () => {
    const warnings: string[] = [];
    const ref = createReferenceBackend();
    const b = await createWebGpuSyncBackend({
      worker: fakeWorker(false),
      fallback: ref,
      warn: (m) => warnings.push(m),
    });
    expect(b.fallbackReason).toBe("no WebGPU device (the fake has no adapter)");
    expect(warnings).toEqual([expect.stringMatching(/running on the reference backend instead/)]);
    expect(b.name).toBe("webgpu-fallback-reference");
    expect(b.supports("qmatmul", q.format)).toBe(false);
    const want = new Float32Array(6);
    ref.qmatmul(x, 1, q, want);
    const y = new Float32Array(6);
    b.qmatmul(x, 1, q, y);
    expect(Array.from(y)).toEqual(Array.from(want));
    expect(b.stats().cpu.qmatmul).toBe(1);
    b.dispose();
  });

  it("a worker that never makes its device falls back after initTimeoutMs", async () => {
    const silent = () => ({ postMessage() {}, terminate() {}, once() {} }) as SyncWorkerLike;
    const b = await createWebGpuSyncBackend({
      worker: silent,
      fallback: createReferenceBackend(),
      initTimeoutMs: 200,
      warn: () => {},
    });
    expect(b.fallbackReason).toMatch(/the WebGPU worker did not start \(no answer within 200 ms\)/);
    b.dispose();
  });

  it("a worker that never answers gives a clear error after the timeout, not a hang", async () => {
    const b = await createWebGpuSyncBackend({
      worker: fakeWorker(true),
      fallback: createReferenceBackend(),
      timeoutMs: 300,
      warn: () => {},
    });
    expect(() => b.qmatmul(x, 1, q, new Float32Array(6))).toThrow(/did not finish qmatmul within 300 ms/);
    expect(() => b.qmatmul(x, 1, q, new Float32Array(6))).toThrow(/unusable/);
    b.dispose();
  });

  it("passes a kernel's error through, and a dead worker's error sticks", async () => {
    let calls = 0;
    const b = await createWebGpuSyncBackend({
      worker: fakeWorker(true, (r, ctrl, text) => {
        if (r.op !== "qmatmul") return;
        calls++;
        const dead = calls > 1;
        ctrl[1] = writeText(
          text,
          dead ? "gpu: WebGPU worker failed: lost device" : "gpu: WebGPU qmatmul2: bad bind group",
        );
        Atomics.store(ctrl, 0, dead ? ST_DEAD : ST_ERROR);
        Atomics.notify(ctrl, 0);
      }),
      fallback: createReferenceBackend(),
      warn: () => {},
    });
    expect(() => b.qmatmul(x, 1, q, new Float32Array(6))).toThrow("gpu: WebGPU qmatmul2: bad bind group");
    expect(() => b.qmatmul(x, 1, q, new Float32Array(6))).toThrow("lost device");
    expect(() => b.qmatmul(x, 1, q, new Float32Array(6))).toThrow("lost device");
    expect(calls).toBe(2);
    // Argument errors are raised before anything crosses to the worker.
    expect(() => b.qmatmul(x, 1, q, new Float32Array(5))).toThrow(/qmatmul: y needs 6/);
    b.dispose();
  });
});
