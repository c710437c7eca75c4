import { trainKernels } from "@int21/quant-kernels";
import { type WasmBackend, createWasmBackend } from "@int21/quant-kernels/wasm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attention, rope } from "./attention";
import { withBackend } from "./backend";
import { mul } from "./elementwise";
import { backward } from "./engine";
import { gradCheck } from "./gradcheck";
import { memory } from "./memory";
import { sum } from "./reduce";
import { expectClose, FC, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

function refAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  T: number,
  S: number,
  H: number,
  Hkv: number,
  hs: number,
  causal: boolean,
): Float64Array {
  const out = new Float64Array(B * T * H * hs);
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv));
      for (let t = 0; t < T; t++) {
        const sc: number[] = [];
        for (let j = 0; j < S; j++) {
          if (causal && j > t + S - T) break;
          let s = 0;
          for (let i = 0; i < hs; i++)
            s += q[(b * T + t) * H * hs + h * hs + i] * k[(b * S + j) * Hkv * hs + g * hs + i];
          sc.push(s * scale);
        }
        const m = Math.max(...sc);
        const e = sc.map((s) => Math.exp(s - m));
        const z = e.reduce((a, c) => a + c, 0);
        for (let j = 0; j < e.length; j++)
          for (let i = 0; i < hs; i++)
            out[(b * T + t) * H * hs + h * hs + i] += (e[j] / z) * v[(b * S + j) * Hkv * hs + g * hs + i];
      }
    }
  return out;
}

describe("attention (fused, causal, grouped-query)", () => {
  it("matches a float64 reference and finite differences, incl. GQA, KV prefixes (S > T), no mask, 2-D input", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 2 }),
        fc.constantFrom([1, 1], [2, 1], [2, 2], [4, 2], [3, 1]),
        fc.constantFrom(2, 4),
        fc.boolean(),
        fc.integer({ min: 1, max: 999 }),
        (B, T, extra, [H, Hkv], hs, causal, seed) => {
          const S = T + extra;
          const lead = B === 1 && seed % 2 === 0 ? [] : [B];
          const q = leaf([...lead, T, H * hs], seed);
          const k = leaf([...lead, S, Hkv * hs], seed + 1);
          const v = leaf([...lead, S, Hkv * hs], seed + 2);
          const opts = { nHeads: H, nKvHeads: Hkv, causal };
          const y = attention(q, k, v, opts);
          expect(y.shape).toEqual(q.shape);
          expectClose(
            y.toArray(),
            refAttention(q.values(), k.values(), v.values(), B, T, S, H, Hkv, hs, causal),
            1e-5,
            1e-4,
          );
          gradCheck((a, b, c) => attention(a, b, c, opts), [q, k, v]);
        },
      ),
      FC,
    );
  });

  it("keeps two floats per score row for backward, not the B·H·T·S probabilities", () => {
    const [B, T, H, hs] = [2, 64, 4, 4];
    const q = leaf([B, T, H * hs], 1);
    const k = leaf([B, T, H * hs], 2);
    const v = leaf([B, T, H * hs], 3);
    const saved = () => memory().byTag.saved ?? 0;
    const before = saved();
    const y = attention(q, k, v, { nHeads: H });
    // saved beyond the inputs: the [B, H, T, 2] row statistics (the output is counted as an activation)
    expect(saved() - before).toBe(B * H * T * 2 * 4);
    expect(B * H * T * T).toBeGreaterThan(16 * B * H * T * 2);
    backward(sum(y));
    expect(saved()).toBe(before);
  });

  it("only requested gradients are produced (frozen k, v)", () => {
    const q = leaf([3, 4], 1);
    const k = leaf([3, 4], 2, { grad: false });
    const v = leaf([3, 4], 3, { grad: false });
    gradCheck((a) => attention(a, k, v, { nHeads: 2 }), [q]);
    expect(k.grad).toBeNull();
    expect(v.grad).toBeNull();
  });

  it("rejects bad head counts and shapes with the shapes in the message", () => {
    expect(() =>
      attention(leaf([3, 6], 1), leaf([3, 4], 2), leaf([3, 4], 3), { nHeads: 3, nKvHeads: 2 }),
    ).toThrow(
      /attention: nHeads must be a positive multiple of nKvHeads \(q \[3, 6\], k \[3, 4\], v \[3, 4\], nHeads 3, nKvHeads 2\)/,
    );
    expect(() =>
      attention(leaf([3, 8], 1), leaf([3, 4], 2), leaf([3, 4], 3), { nHeads: 2, nKvHeads: 2 }),
    ).toThrow(/last dimension nKvHeads·headSize = 8/);
    expect(() => attention(leaf([3, 4], 1), leaf([2, 4], 2), leaf([2, 4], 3), { nHeads: 1 })).toThrow(
      /key length ≥ query length/,
    );
  });
});

describe("attention on the wasm backend (fused training kernels)", () => {
  let wasm: WasmBackend;
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 2 });
  });
  afterAll(() => wasm.dispose());

  /** Output and q, k, v gradients of Σ y ⊙ w on the current backend. */
  function run(
    B: number,
    T: number,
    S: number,
    H: number,
    Hkv: number,
    hs: number,
    causal: boolean,
    seed: number,
  ) {
    const q = leaf([B, T, H * hs], seed);
    const k = leaf([B, S, Hkv * hs], seed + 1);
    const v = leaf([B, S, Hkv * hs], seed + 2);
    const w = leaf([B, T, H * hs], seed + 3, { grad: false });
    const y = attention(q, k, v, { nHeads: H, nKvHeads: Hkv, causal });
    const out = y.toArray();
    backward(sum(mul(y, w)));
    return [out, q.grad!.toArray(), k.grad!.toArray(), v.grad!.toArray()];
  }

  it("matches the reference backend's op (output and gradients), GQA, KV prefixes, no mask, 1–2 threads", () => {
    expect(trainKernels(wasm)).toBeDefined();
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom([1, 1], [2, 1], [2, 2], [4, 2], [3, 1], [6, 6]),
        fc.constantFrom(2, 3, 4, 8, 20, 48),
        fc.boolean(),
        fc.integer({ min: 1, max: 999 }),
        (B, T, extra, [H, Hkv], hs, causal, seed) => {
          const S = T + extra;
          const want = run(B, T, S, H, Hkv, hs, causal, seed);
          const got = withBackend(wasm, () => run(B, T, S, H, Hkv, hs, causal, seed));
          for (let i = 0; i < 4; i++) expectClose(got[i], want[i], 2e-5, 2e-4);
        },
      ),
      { ...FC, numRuns: 40 },
    );
  });

  it("passes the gradient check, and splits large jobs across threads with the same result", () => {
    withBackend(wasm, () => {
      const q = leaf([2, 5, 8], 11);
      const k = leaf([2, 7, 4], 12);
      const v = leaf([2, 7, 4], 13);
      gradCheck((a, b, c) => attention(a, b, c, { nHeads: 2, nKvHeads: 1 }), [q, k, v]);
    });
    // B·H·T·S·hs = 2·4·96·96·16 ≥ TRAIN_ATTN_PARALLEL: the threaded path
    const want = run(2, 96, 96, 4, 2, 16, true, 5);
    const got = withBackend(wasm, () => run(2, 96, 96, 4, 2, 16, true, 5));
    for (let i = 0; i < 4; i++) expectClose(got[i], want[i], 2e-5, 2e-4);
  });
});

describe("rope", () => {
  function refRope(
    x: Float32Array,
    T: number,
    D: number,
    hs: number,
    pos: number[],
    half: boolean,
    theta = 10000,
  ): Float64Array {
    const out = new Float64Array(x.length);
    for (let r = 0; r < x.length / D; r++) {
      const t = r % T;
      for (let i = 0; i < D; i++) {
        // llama2.c: for even i (adjacent) the pair (i, i+1), freq = 10000^(-(i mod hs)/hs)
        const hi = i % hs;
        const h0 = i - hi;
        const m = half ? hi % (hs / 2) : Math.floor(hi / 2);
        const first = half ? hi < hs / 2 : hi % 2 === 0;
        const a = pos[t] * theta ** (-(2 * m) / hs);
        const i0 = half ? h0 + m : h0 + 2 * m;
        const i1 = half ? i0 + hs / 2 : i0 + 1;
        const x0 = x[r * D + (i0 - h0) + h0];
        const x1 = x[r * D + (i1 - h0) + h0];
        out[r * D + i] = first ? x0 * Math.cos(a) - x1 * Math.sin(a) : x0 * Math.sin(a) + x1 * Math.cos(a);
      }
    }
    return out;
  }

  it("rotates pairs like llama2.c (adjacent) or HF rotate_half; backward is the inverse rotation", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(2, 4, 8),
        fc.boolean(),
        fc.integer({ min: 0, max: 50 }),
        fc.integer({ min: 1, max: 999 }),
        (B, T, nh, hs, half, start, seed) => {
          const x = leaf([B, T, nh * hs], seed);
          const layout = half ? "half" : "adjacent";
          const y = rope(x, { headSize: hs, positions: start, layout });
          const pos = Array.from({ length: T }, (_, t) => start + t);
          expectClose(y.toArray(), refRope(x.values(), T, nh * hs, hs, pos, half), 1e-5, 1e-4);
          const explicit = pos.map((p) => p * 3);
          expectClose(
            rope(x, { headSize: hs, positions: explicit, layout, theta: 500 }).toArray(),
            refRope(x.values(), T, nh * hs, hs, explicit, half, 500),
            1e-5,
            1e-4,
          );
          gradCheck((a) => rope(a, { headSize: hs, positions: explicit, layout }), [x]);
        },
      ),
      FC,
    );
  });

  it("runs the wasm rope kernel on a wasm backend: same output and gradient, finite differences", async () => {
    const wasm = await createWasmBackend({ threads: 2 });
    try {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 2 }),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 1, max: 3 }),
          fc.constantFrom(2, 4, 8, 16),
          fc.boolean(),
          fc.integer({ min: 1, max: 999 }),
          (B, T, nh, hs, half, seed) => {
            const layout = half ? "half" : "adjacent";
            const run = () => {
              const x = leaf([B, T, nh * hs], seed);
              const y = rope(x, { headSize: hs, positions: 3, layout });
              backward(y, leaf(y.shape, seed + 1, { grad: false }).values());
              return { y: y.toArray(), gx: x.grad!.toArray() };
            };
            const want = run();
            const got = withBackend(wasm, run);
            expectClose(got.y, want.y, 1e-5, 1e-5);
            expectClose(got.gx, want.gx, 1e-5, 1e-5);
            withBackend(wasm, () =>
              gradCheck(
                (a) => rope(a, { headSize: hs, positions: 7, layout }),
                [leaf([B, T, nh * hs], seed)],
              ),
            );
          },
        ),
        FC,
      );
    } finally {
      wasm.dispose();
    }
  });

  it("position 0 is the identity; bad head size and position count are rejected", () => {
    const x = leaf([1, 8], 1);
    expectClose(rope(x, { headSize: 4 }).toArray(), x.toArray(), 0, 0);
    expect(() => rope(x, { headSize: 3 })).toThrow(
      /rope: headSize 3 must be even and divide the last dimension of \[1, 8\]/,
    );
    expect(() => rope(x, { headSize: 4, positions: [0, 1] })).toThrow(/2 positions for 1 rows/);
  });
});
