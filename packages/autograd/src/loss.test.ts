import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backward } from "./engine";
import { gradCheck } from "./gradcheck";
import { crossEntropy, klDiv, mse } from "./loss";
import { expectClose, FC, leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

function logSoftmaxRow(r: number[], tau = 1): number[] {
  const s = r.map((v) => v / tau);
  const m = Math.max(...s);
  const lse = m + Math.log(s.reduce((a, v) => a + Math.exp(v - m), 0));
  return s.map((v) => v - lse);
}

const arb = fc.tuple(
  fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }),
  fc.integer({ min: 2, max: 7 }),
  fc.integer({ min: 1, max: 999 }),
);

describe("crossEntropy", () => {
  it("mean over non-ignored tokens and sum; backward vs finite differences", () => {
    fc.assert(
      fc.property(arb, ([lead, V, seed]) => {
        const logits = leaf([...lead, V], seed, { std: 2 });
        const rows = logits.size / V;
        const targets = Array.from(
          { length: rows },
          (_, r) => ((r * 7 + seed) % (V + 1)) - (r % 3 === 1 ? 101 : 0),
        );
        const t = targets.map((x) => (x < 0 ? -100 : Math.min(x, V - 1)));
        const lv = logits.values();
        let s = 0;
        let n = 0;
        for (let r = 0; r < rows; r++) {
          if (t[r] === -100) continue;
          s -= logSoftmaxRow(Array.from(lv.subarray(r * V, r * V + V)))[t[r]];
          n++;
        }
        expectClose([crossEntropy(logits, t).item()], [n ? s / n : 0], 1e-5, 1e-5);
        expectClose([crossEntropy(logits, t, { reduction: "sum" }).item()], [s], 1e-5, 1e-5);
        gradCheck((x) => crossEntropy(x, t), [logits]);
        gradCheck((x) => crossEntropy(x, t, { reduction: "sum" }), [logits]);
      }),
      FC,
    );
  });

  it("all-ignored gives 0 (not NaN) and zero gradient; bad targets are rejected", () => {
    const x = leaf([2, 3], 1);
    expect(crossEntropy(x, [-100, -100]).item()).toBe(0);
    expect(() => crossEntropy(x, [0, 3])).toThrow(/crossEntropy: target 3 at row 1 out of range \[0, 3\)/);
    expect(() => crossEntropy(x, [0])).toThrow(/1 targets for logits \[2, 3\] \(2 rows\)/);
    expect(() => crossEntropy(x, [0, 1], { ignoreIndex: 1 })).not.toThrow();
  });
});

describe("klDiv (teacher ‖ student)", () => {
  it("per token Σ_v p (log p − log q), mean/sum over rows, temperature; gradient only to the student", () => {
    fc.assert(
      fc.property(arb, fc.constantFrom(1, 2), ([lead, V, seed], tau) => {
        const teacher = leaf([...lead, V], seed, { std: 2 });
        const student = leaf([...lead, V], seed + 1, { std: 2 });
        const rows = student.size / V;
        let s = 0;
        for (let r = 0; r < rows; r++) {
          const lp = logSoftmaxRow(Array.from(teacher.values().subarray(r * V, r * V + V)), tau);
          const lq = logSoftmaxRow(Array.from(student.values().subarray(r * V, r * V + V)), tau);
          for (let j = 0; j < V; j++) s += Math.exp(lp[j]) * (lp[j] - lq[j]);
        }
        expectClose([klDiv(teacher, student, { temperature: tau }).item()], [s / rows], 1e-5, 1e-4);
        expectClose(
          [klDiv(teacher, student, { temperature: tau, reduction: "sum" }).item()],
          [s],
          1e-5,
          1e-4,
        );
        gradCheck(
          (t, x) => klDiv(t, x, { temperature: tau }),
          [teacher, student].map((x, i) => (i === 0 ? leaf(x.shape, seed, { std: 2, grad: false }) : x)),
        );
        // a teacher that requires grad still gets none
        student.grad = null;
        backward(klDiv(teacher, student));
        expect(teacher.grad).toBeNull();
        expect(student.grad).not.toBeNull();
      }),
      FC,
    );
  });

  it("is zero for identical logits and rejects mismatched shapes", () => {
    const a = leaf([3, 5], 1);
    expect(Math.abs(klDiv(a, a).item())).toBeLessThan(1e-6);
    expect(() => klDiv(a, leaf([3, 4], 2))).toThrow(/klDiv: teacher \[3, 5\] and student \[3, 4\]/);
    expect(() => klDiv(a, a, { temperature: 0 })).toThrow(/temperature 0/);
  });
});

describe("mse", () => {
  it("mean and sum of squared differences; backward to both sides", () => {
    const a = leaf([3, 4], 1);
    const b = leaf([3, 4], 2);
    let s = 0;
    a.values().forEach((v, i) => {
      s += (v - b.values()[i]) ** 2;
    });
    expectClose([mse(a, b).item()], [s / 12], 1e-6, 1e-5);
    expectClose([mse(a, b, "sum").item()], [s], 1e-5, 1e-5);
    gradCheck((x, y) => mse(x, y), [a, b]);
    expect(() => mse(a, leaf([4, 3], 3))).toThrow(/mse: shapes \[3, 4\] and \[4, 3\] must be equal/);
  });
});
