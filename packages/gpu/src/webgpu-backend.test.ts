import { createReferenceBackend, getFormat, rtnQuantize } from "@int21/quant-kernels";
import {
  CONFORMANCE_ROWS,
  CONFORMANCE_SHAPES,
  FLOAT32_TOLERANCES,
  randomGIdx,
  randomWeights,
} from "@int21/quant-kernels/testing";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { checkQuantKernelsAsync, checkSgemmCaseAsync } from "./async-conformance";
import { createWebGpuBackend, type WebGpuBackend } from "./webgpu-backend";
import { requestWebGpuDevice } from "./webgpu-device";

// WebGPU needs the optional `webgpu` package (Dawn) in Node and an adapter: a GPU, lavapipe, or Mesa's
// llvmpipe through Dawn's OpenGL ES backend. Without one, these tests skip and say why.
const ctx = await requestWebGpuDevice();
const missing = typeof ctx === "string" ? ctx : null;
if (typeof ctx === "string") console.warn(`[@int21/gpu] skipping WebGPU tests: ${ctx}`);
else console.info(`[@int21/gpu] WebGPU tests on ${ctx.source}, ${ctx.featureLevel}: ${ctx.adapter}`);

// One format per bit width × group layout, alternating sym/asym and f16/f32 (the kernels read scales as
// f32 either way; f16 formats hold f16-exact values).
const FORMATS = [2, 3, 4, 8].flatMap((b) => [
  `int${b}-g32-asym-f16`,
  `int${b}-g64-sym-f32`,
  `int${b}-g128-asym-f32`,
  `int${b}-pc-sym-f16`,
]);
const SEED = 42;

describe.skipIf(missing !== null)("WebGPU backend", () => {
  let backend: WebGpuBackend;
  const ready = (async () => {
    if (typeof ctx === "string") throw new Error(ctx);
    const refuse = () => {
      throw new Error("WebGPU delegated to its fallback");
    };
    backend = await createWebGpuBackend({
      context: ctx,
      fallback: {
        ...createReferenceBackend(),
        name: "refuse",
        sgemm: refuse,
        dequantize: refuse,
        qmatmul: refuse,
        qmatmulT: refuse,
      },
    });
    return backend;
  })();
  afterAll(async () => (await ready).dispose());

  it("runs on the device", async () => {
    await ready;
    expect(backend.fallbackReason).toBeNull();
    expect(backend.name).toBe("webgpu");
    expect(backend.supports("qmatmul", getFormat("int2-g64-asym-f16"))).toBe(true);
  });

  for (const name of FORMATS) {
    const f = getFormat(name);
    it(`${name}: conformance shapes × rows ${CONFORMANCE_ROWS.join("/")}, and act-order`, async () => {
      await ready;
      for (const { N, K } of CONFORMANCE_SHAPES) {
        const q = rtnQuantize(randomWeights(N * K, SEED + N * 7919 + K), N, K, f);
        await checkQuantKernelsAsync(backend, q, CONFORMANCE_ROWS, FLOAT32_TOLERANCES, SEED);
      }
      if (f.groupSize !== -1) {
        const N = 11;
        const K = 3 * f.groupSize + 5;
        const gIdx = randomGIdx(K, f.groupSize, SEED + 3);
        const q = rtnQuantize(randomWeights(N * K, SEED + 17), N, K, f, { gIdx });
        await checkQuantKernelsAsync(backend, q, [1, 7], FLOAT32_TOLERANCES, SEED);
      }
    }, 60_000);
  }

  it("property: random formats, shapes and row counts (rows up to 9 cross the vec4 row tile)", async () => {
    await ready;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...FORMATS),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 1e9 }),
        fc.boolean(),
        async (name, N, K, rows, s, actOrder) => {
          const f = getFormat(name);
          const gIdx = actOrder && f.groupSize !== -1 ? randomGIdx(K, f.groupSize, s) : undefined;
          const q = rtnQuantize(randomWeights(N * K, s), N, K, f, { gIdx });
          await checkQuantKernelsAsync(backend, q, [rows], FLOAT32_TOLERANCES, s);
        },
      ),
      { seed: SEED, numRuns: 20 },
    );
  }, 60_000);

  it("sgemm: shapes, transposes, offsets, leading dimensions, alpha, beta, resident B", async () => {
    await ready;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          M: fc.integer({ min: 0, max: 70 }),
          N: fc.integer({ min: 0, max: 70 }),
          K: fc.integer({ min: 0, max: 70 }),
          transA: fc.boolean(),
          transB: fc.boolean(),
          aOffset: fc.integer({ min: 0, max: 5 }),
          bOffset: fc.integer({ min: 0, max: 5 }),
          cOffset: fc.integer({ min: 0, max: 5 }),
          padA: fc.integer({ min: 0, max: 3 }),
          padB: fc.integer({ min: 0, max: 3 }),
          padC: fc.integer({ min: 0, max: 3 }),
          alpha: fc.constantFrom(1, -1, 0.5, 2.25, 0),
          beta: fc.constantFrom(0, 1, -0.5, 2),
          bConst: fc.boolean(),
          seed: fc.integer({ min: 0, max: 1e9 }),
        }),
        (c) => checkSgemmCaseAsync(backend, c, FLOAT32_TOLERANCES),
      ),
      { seed: SEED, numRuns: 60 },
    );
  }, 60_000);

  it("sgemm matvec with the weight layout (M = 1, transB) at K = 1000", async () => {
    await ready;
    const c = { M: 1, N: 67, K: 1000, transA: false, transB: true, aOffset: 0, bOffset: 0, cOffset: 0 };
    await checkSgemmCaseAsync(
      backend,
      { ...c, padA: 0, padB: 0, padC: 0, alpha: 1, beta: 0, bConst: true, seed: SEED },
      FLOAT32_TOLERANCES,
    );
  });

  it("calls in flight together each get their own result", async () => {
    await ready;
    const jobs = [2, 3, 4, 8].map(async (bits, i) => {
      const f = getFormat(`int${bits}-g32-asym-f16`);
      const q = rtnQuantize(randomWeights(40 * 90, 100 + i), 40, 90, f);
      await checkQuantKernelsAsync(backend, q, [1, 5], FLOAT32_TOLERANCES, 200 + i);
    });
    await Promise.all(jobs);
  });

  it("rejects short buffers with an error naming the tensor", async () => {
    await ready;
    const q = rtnQuantize(randomWeights(5 * 40, 1), 5, 40, "int4-g32-asym-f16");
    await expect(backend.qmatmulAsync(new Float32Array(80), 2, q, new Float32Array(9))).rejects.toThrow(
      /qmatmul: y needs 10/,
    );
    await expect(backend.qmatmulAsync(new Float32Array(39), 1, q, new Float32Array(5))).rejects.toThrow(
      /qmatmul: x needs/,
    );
    await expect(backend.qmatmulTAsync(new Float32Array(4), 1, q, new Float32Array(40))).rejects.toThrow(
      /qmatmulT: g needs/,
    );
    await expect(backend.dequantizeAsync(q, new Float32Array(199))).rejects.toThrow(
      /dequantize: out needs 200/,
    );
    await expect(
      backend.sgemmAsync({
        M: 2,
        N: 2,
        K: 3,
        A: new Float32Array(6),
        B: new Float32Array(6),
        C: new Float32Array(3),
      }),
    ).rejects.toThrow(/C needs 4 elements/);
  });
});

describe("WebGPU backend without a device", () => {
  it("says once why and runs every kernel on the fallback", async () => {
    const warnings: string[] = [];
    const b = await createWebGpuBackend({
      // A GPU object with no adapter stands for a machine without WebGPU.
      gpu: { requestAdapter: async () => null } as unknown as GPU,
      warn: (m) => warnings.push(m),
    });
    expect(b.fallbackReason).toMatch(
      /no WebGPU device \(given GPU: no core adapter; given GPU: no compatibility adapter\)/,
    );
    expect(warnings).toEqual([expect.stringMatching(/running on the reference backend instead/)]);
    expect(b.name).toBe("webgpu-fallback-reference");
    expect(b.supports("qmatmul")).toBe(false);
    const q = rtnQuantize(randomWeights(6 * 50, 3), 6, 50, "int2-g32-asym-f16");
    await checkQuantKernelsAsync(b, q, [1, 3], FLOAT32_TOLERANCES, SEED);
    expect(warnings).toHaveLength(1);
    b.dispose();
  });
});
