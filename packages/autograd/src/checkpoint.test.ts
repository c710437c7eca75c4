import { describe, expect, it } from "vitest";
import { checkpoint } from "./checkpoint";
import { mul } from "./elementwise";
import { backward, noGrad } from "./engine";
import { gradCheck } from "./gradcheck";
import { memory, resetPeak } from "./memory";
import { sum } from "./reduce";
import { initLayer, type LayerConfig, layerParams, llamaLayer } from "./test-llama";
import { type Tensor, tidy } from "./tensor";
import { leaf, useReferenceBackend } from "./test-utils";

useReferenceBackend();

const cfg: LayerConfig = { dim: 16, hidden: 32, nHeads: 4, nKvHeads: 2 };

/** Forward + backward of a 5-layer stack; returns grads, loss and peak ledger bytes of the step. */
function step(useCheckpoint: boolean) {
  const layers = [0, 1, 2, 3, 4].map((i) => initLayer(cfg, 100 + i));
  const x = leaf([2, 32, cfg.dim], 7);
  const r = leaf([2, 32, cfg.dim], 8, { grad: false });
  const params = [x, ...layers.flatMap(layerParams)];
  const run = () =>
    tidy(() => {
      let h: Tensor = x;
      for (const w of layers) {
        const block = (t: Tensor) => llamaLayer(t, w, cfg);
        h = useCheckpoint ? checkpoint(block, [h]) : tidy(() => block(h));
      }
      const l = sum(mul(h, r));
      backward(l);
      return l.item();
    });
  run(); // allocates the gradient buffers, so the measured step compares activations only
  for (const p of params) p.grad!.data.fill(0);
  const base = memory().liveBytes;
  resetPeak();
  const loss = run();
  const peak = memory().peakBytes - base;
  const grads = params.map((p) => p.grad!.toArray());
  return { loss, peak, grads, left: memory().liveBytes - base };
}

describe("checkpoint", () => {
  it("gives identical gradients and a lower peak of tensor bytes", () => {
    const plain = step(false);
    const ckpt = step(true);
    expect(ckpt.loss).toBe(plain.loss);
    expect(ckpt.grads).toEqual(plain.grads);
    expect(ckpt.peak).toBeLessThan(plain.peak * 0.6);
    // after the step the ledger is back where it started (gradients were already allocated)
    expect(plain.left).toBe(0);
    expect(ckpt.left).toBe(0);
  });

  it("passes finite differences for inputs and for parameters the block closes over", () => {
    const w = leaf([3], 1);
    const x = leaf([2, 3], 2);
    gradCheck((a, b) => checkpoint((t) => mul(mul(t, a), t), [b]), [w, x]);
  });

  it("tracks parameters used inside even when the inputs need no gradient; is plain fn under noGrad", () => {
    const w = leaf([3], 1);
    const x = leaf([3], 2, { grad: false });
    const y = checkpoint((t) => mul(t, w), [x]);
    expect(y.requiresGrad).toBe(true);
    backward(sum(y));
    expect(w.grad!.toArray()).toEqual(x.toArray());
    expect(noGrad(() => checkpoint((t) => mul(t, w), [x])).requiresGrad).toBe(false);
    expect(checkpoint((t) => mul(t, t), [x]).requiresGrad).toBe(false);
    expect(() => checkpoint(() => w, [x])).toThrow(/checkpoint: the block returned an existing tensor/);
    expect(() => checkpoint((t) => t, [x])).toThrow(/existing tensor/);
  });
});
