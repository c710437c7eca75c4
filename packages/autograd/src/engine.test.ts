import { describe, expect, it } from "vitest";
import { add, mul, scale } from "./elementwise";
import { backward, defineOp, detach, noGrad, type OpDef, releaseGraph } from "./engine";
import { linear } from "./linear";
import { memory } from "./memory";
import { sum } from "./reduce";
import { output } from "./strided";
import { tensor, tidy } from "./tensor";
import { leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

describe("graph recording", () => {
  it("records only when an input requires grad; saves nothing otherwise", () => {
    const a = leaf([4], 1, { grad: false });
    const b = leaf([4], 2, { grad: false });
    const before = memory().liveBytes;
    const y = mul(a, b);
    expect(y.requiresGrad).toBe(false);
    expect(y.node).toBeNull();
    expect(memory().liveBytes - before).toBe(16); // the output only
    const w = leaf([4], 3);
    const z = mul(a, w);
    expect(z.requiresGrad).toBe(true);
    expect(z.node!.ctx.saved).toEqual([a]); // d(a·w)/dw = a; w itself is not needed
  });

  it("noGrad records nothing; detach cuts the graph", () => {
    const w = leaf([4], 3);
    expect(noGrad(() => scale(w, 2)).node).toBeNull();
    expect(detach(w).requiresGrad).toBe(false);
    expect(detach(w).data).toBe(w.data);
  });

  it("frozen tensors never get gradient buffers; only needed gradients are computed", () => {
    const x = leaf([2, 3], 1, { grad: false });
    const frozen = leaf([5, 3], 2, { grad: false });
    const w = leaf([4, 5], 3);
    let calls = 0;
    const spy: OpDef = {
      name: "spy",
      forward(_ctx, [t]) {
        return output(t.toFloat32Array(), t.shape);
      },
      backward(ctx, gy, [gt]) {
        calls++;
        expect(ctx.needsInputGrad).toEqual([false]);
        expect(gt).toBeNull();
        expect(gy.shape).toEqual([2, 5]);
      },
    };
    const f = defineOp(spy);
    // the spy's input needs no gradient, so the spy is never even recorded
    backward(sum(linear(f([linear(x, frozen)]), w)));
    expect(calls).toBe(0);
    expect(frozen.grad).toBeNull();
    expect(x.grad).toBeNull();
    expect(w.grad!.shape).toEqual([4, 5]);
  });

  it("gradients accumulate across backward calls (gradient accumulation)", () => {
    const w = leaf([3], 1);
    backward(sum(scale(w, 2)));
    backward(sum(scale(w, 3)));
    expect(w.grad!.toArray()).toEqual([5, 5, 5]);
  });

  it("fan-out accumulates: y = w·w + w", () => {
    const w = tensor([1, 2, 3], [3], { requiresGrad: true });
    backward(sum(add(mul(w, w), w)));
    expect(w.grad!.toArray()).toEqual([3, 5, 7]);
  });

  it("clear errors: non-scalar root, no grad, consumed graph, wrong gradient size", () => {
    const w = leaf([3], 1);
    expect(() => backward(scale(w, 2))).toThrow(/backward: root has shape \[3\]; pass a gradient/);
    expect(() => backward(leaf([1], 2, { grad: false }))).toThrow(/does not require grad/);
    const l = sum(w);
    backward(l);
    expect(() => backward(l)).toThrow(/already consumed/);
    expect(() => backward(scale(w, 2), [1, 2])).toThrow(/gradient has 2 values, root has shape \[3\]/);
    const h = scale(w, 2);
    backward(sum(h));
    expect(() => backward(sum(mul(h, h)))).toThrow(/comes from a graph already consumed/);
    expect(() => backward(sum(mul(detach(h), w)))).not.toThrow();
  });
});

describe("tidy and the ledger", () => {
  it("releaseGraph drops the saved activations of a graph that will not be back-propagated", () => {
    const w = leaf([32, 32], 1);
    const x = leaf([4, 32], 2, { grad: false });
    const base = memory().liveBytes;
    const y = tidy(() => linear(linear(x, w), w));
    expect(memory().liveBytes - base).toBe(2 * 4 * 32 * 4); // y + the saved middle activation
    releaseGraph(y);
    expect(memory().liveBytes - base).toBe(4 * 32 * 4);
    expect(() => tidy(() => backward(sum(y)))).toThrow(/already consumed/);
    y.dispose();
    expect(memory().liveBytes).toBe(base);
  });

  it("disposes intermediates, keeps returned tensors, and backward releases saved activations", () => {
    const w = leaf([64, 64], 1);
    const x = leaf([8, 64], 2, { grad: false });
    const base = memory().liveBytes;
    const gradBase = memory().byTag.grad ?? 0;
    const y = tidy(() => scale(linear(linear(x, w), w), 0.5));
    // kept: y (8×64) and the saved input of the second linear (8×64); the first linear saved x (a leaf)
    expect(memory().liveBytes - base).toBe(2 * 8 * 64 * 4);
    const withGrad = base + 64 * 64 * 4;
    tidy(() => backward(sum(y)));
    y.dispose();
    expect(memory().liveBytes).toBe(withGrad);
    expect(memory().byTag.grad - gradBase).toBe(64 * 64 * 4);
  });
});
