import { backward, gradCheck, tensor } from "@int21/autograd";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { lrecLoss, topKFromLogits, topKKl } from "./loss";

function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
  return row.map((v) => v - lse);
}
function klRow(t: number[], s: number[]): number {
  const lp = logSoftmax(t);
  const lq = logSoftmax(s);
  return lp.reduce((acc, a, j) => acc + Math.exp(a) * (a - lq[j]), 0);
}

describe("lrecLoss", () => {
  // two positions over a vocabulary of 3; the second target is ignored
  const T = [
    [1, 0, -1],
    [0.5, 0.5, 2],
  ];
  const S = [
    [0, 1, 0],
    [2, -1, 0],
  ];
  const targets = [2, -100];
  const kl0 = klRow(T[0], S[0]);
  const kl1 = klRow(T[1], S[1]);
  const ce0 = -logSoftmax(S[0])[2];

  it("sum of KL over positions + λ · mean CE over real targets, by hand", () => {
    const l = lrecLoss(tensor(T.flat(), [2, 3]), tensor(S.flat(), [2, 3]), targets, { ceWeight: 3 });
    expect(l.kl.item()).toBeCloseTo(kl0 + kl1, 5);
    expect(l.ce.item()).toBeCloseTo(ce0, 5);
    expect(l.loss.item()).toBeCloseTo(kl0 + kl1 + 3 * ce0, 4);
  });

  it("mean KL, summed CE, and a KL weight", () => {
    const l = lrecLoss(tensor(T.flat(), [2, 3]), tensor(S.flat(), [2, 3]), targets, {
      klWeight: 0.5,
      ceWeight: 2,
      klReduction: "mean",
      ceReduction: "sum",
    });
    expect(l.kl.item()).toBeCloseTo((kl0 + kl1) / 2, 5);
    expect(l.loss.item()).toBeCloseTo((0.5 * (kl0 + kl1)) / 2 + 2 * ce0, 4);
  });

  it("per-token gradient: klWeight·(q − p)/N_kl + λ·(q − onehot)/M_ce", () => {
    const s = tensor(S.flat(), [2, 3], { requiresGrad: true });
    const { loss } = lrecLoss(tensor(T.flat(), [2, 3]), s, targets, {
      klWeight: 2,
      ceWeight: 5,
      klReduction: "mean",
    });
    backward(loss);
    const g = s.grad!.toFloat32Array();
    for (let r = 0; r < 2; r++) {
      const p = logSoftmax(T[r]).map(Math.exp);
      const q = logSoftmax(S[r]).map(Math.exp);
      for (let j = 0; j < 3; j++) {
        let want = (2 * (q[j] - p[j])) / 2;
        if (targets[r] !== -100) want += 5 * (q[j] - (j === targets[r] ? 1 : 0));
        expect(g[r * 3 + j]).toBeCloseTo(want, 5);
      }
    }
  });

  it("matches central finite differences", () => {
    const t = tensor(
      Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 2),
      [4, 6],
    );
    const s = tensor(
      Float32Array.from({ length: 24 }, (_, i) => Math.cos(i * 1.3)),
      [4, 6],
      { requiresGrad: true },
    );
    const r = gradCheck((x) => lrecLoss(t, x, [1, 5, -100, 0], { ceWeight: 1.5 }).loss, [s]);
    expect(r.checked).toBeGreaterThan(0);
  });

  it("names bad options", () => {
    const t = tensor([0, 0], [1, 2]);
    expect(() => lrecLoss(t, t, [0], { ceWeight: -1 })).toThrow(/ceWeight/);
    expect(() => lrecLoss(t, t, [0], { klReduction: "max" as "sum" })).toThrow(/klReduction/);
  });
});

describe("topKKl", () => {
  it("equals the full KL when k = V, and its gradient is q − p", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: 10, maxLength: 10 }),
        (vals) => {
          const t = vals.slice(0, 5);
          const s = vals.slice(5);
          const top = topKFromLogits(Float32Array.from(t), 1, 5, 5);
          const st = tensor(Float32Array.from(s), [1, 5], { requiresGrad: true });
          const kl = topKKl(top, st, "sum");
          expect(kl.item()).toBeCloseTo(klRow(t, s), 4);
          backward(kl);
          const p = logSoftmax(t).map(Math.exp);
          const q = logSoftmax(s).map(Math.exp);
          const g = st.grad!.toFloat32Array();
          for (let j = 0; j < 5; j++) expect(g[j]).toBeCloseTo(q[j] - p[j], 5);
        },
      ),
      { seed: 42, numRuns: 50 },
    );
  });

  it("is a lower bound of the full KL for k < V (coarsening), exact when the tails are proportional", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: 16, maxLength: 16 }),
        fc.integer({ min: 1, max: 7 }),
        (vals, k) => {
          const t = vals.slice(0, 8);
          const s = vals.slice(8);
          const top = topKFromLogits(Float32Array.from(t), 1, 8, k);
          const v = topKKl(top, tensor(Float32Array.from(s), [1, 8])).item();
          expect(v).toBeGreaterThanOrEqual(-1e-6);
          expect(v).toBeLessThanOrEqual(klRow(t, s) + 1e-5);
        },
      ),
      { seed: 42, numRuns: 100 },
    );
    // student = teacher shifted by a constant outside the top-2 only in the top-2: tails proportional
    const t = [3, 2, 0, -1, 0.5];
    const s = [1, 2.5, 0.3, -0.7, 0.8]; // tail = teacher tail + 0.3
    const top = topKFromLogits(Float32Array.from(t), 1, 5, 2);
    expect(topKKl(top, tensor(s, [1, 5])).item()).toBeCloseTo(klRow(t, s), 5);
  });

  it("gradient matches finite differences, residual bucket included", () => {
    const t = Float32Array.from({ length: 3 * 12 }, (_, i) => Math.sin(i * 0.7) * 3);
    const top = topKFromLogits(t, 3, 12, 4);
    const s = tensor(
      Float32Array.from({ length: 36 }, (_, i) => Math.cos(i)),
      [3, 12],
      { requiresGrad: true },
    );
    expect(gradCheck((x) => topKKl(top, x, "sum"), [s]).checked).toBeGreaterThan(0);
  });

  it("topKFromLogits keeps the largest, log-probabilities under the full softmax, residual mass", () => {
    const top = topKFromLogits(Float32Array.from([0, 3, 1, 2]), 1, 4, 2);
    expect(Array.from(top.indices)).toEqual([1, 3]);
    const lp = logSoftmax([0, 3, 1, 2]);
    expect(top.logprobs[0]).toBeCloseTo(lp[1], 6);
    expect(top.residual[0]).toBeCloseTo(Math.exp(lp[0]) + Math.exp(lp[2]), 6);
    expect(() => topKFromLogits(Float32Array.from([0, 1]), 1, 2, 3)).toThrow(/k must be/);
    expect(() => topKKl(top, tensor([0, 0, 0], [1, 3]))).toThrow(/do not match/);
  });
});
