import { describe, expect, it } from "vitest";
import { memory } from "./memory";
import { full, keep, ones, parameter, rand, randn, tensor, tidy, zeros } from "./tensor";
import { transpose } from "./view";

describe("Tensor", () => {
  it("wraps a Float32Array without copying and reads strided views", () => {
    const d = Float32Array.from([0, 1, 2, 3, 4, 5]);
    const t = tensor(d, [2, 3]);
    expect(t.data).toBe(d);
    expect(t.strides).toEqual([3, 1]);
    expect(t.get(1, 2)).toBe(5);
    const tt = transpose(t);
    expect(tt.shape).toEqual([3, 2]);
    expect(tt.isContiguous()).toBe(false);
    expect(tt.toArray()).toEqual([0, 3, 1, 4, 2, 5]);
    expect(tt.values()).not.toBe(d);
    expect(t.values().buffer).toBe(d.buffer);
  });

  it("constructors fill as documented; seeded randoms repeat", () => {
    expect(zeros([2]).toArray()).toEqual([0, 0]);
    expect(ones([1, 2]).toArray()).toEqual([1, 1]);
    expect(full([3], 7).toArray()).toEqual([7, 7, 7]);
    expect(randn([5], { seed: 3 }).toArray()).toEqual(randn([5], { seed: 3 }).toArray());
    expect(randn([5], { seed: 3 }).toArray()).not.toEqual(randn([5], { seed: 4 }).toArray());
    const u = rand([100], { seed: 1, low: 2, high: 3 }).toArray();
    expect(Math.min(...u)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...u)).toBeLessThan(3);
    expect(parameter([1, 2]).requiresGrad).toBe(true);
    expect(parameter([1, 2], [2], { requiresGrad: false }).requiresGrad).toBe(false);
  });

  it("rejects bad shapes and indices with the shape in the message", () => {
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2, 2\] \(4\)/);
    expect(() => zeros([2, -1])).toThrow(/bad shape \[2, -1\]/);
    expect(() => zeros([2.5])).toThrow(/bad shape/);
    expect(() => tensor([1, 2], [2]).item()).toThrow(/item\(\) needs one element, tensor has shape \[2\]/);
    expect(() => tensor([1, 2], [2]).get(2)).toThrow(/index \[2\] out of range for shape \[2\]/);
  });
});

describe("tidy", () => {
  it("releases intermediates, keeps returned tensors (nested, arrays, objects) and keep()", () => {
    const base = memory().liveBytes;
    let kept: ReturnType<typeof zeros> | null = null;
    const out = tidy(() => {
      zeros([100]);
      kept = keep(zeros([10]));
      const inner = tidy(() => {
        zeros([50]);
        return { a: zeros([2]), b: [zeros([3])] };
      });
      return [inner.a, inner.b[0]];
    });
    expect(memory().liveBytes - base).toBe(4 * (10 + 2 + 3));
    for (const t of out) t.dispose();
    kept!.dispose();
    expect(memory().liveBytes).toBe(base);
  });

  it("releases everything when fn throws", () => {
    const base = memory().liveBytes;
    expect(() =>
      tidy(() => {
        zeros([100]);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(memory().liveBytes).toBe(base);
  });
});
