import { describe, expect, it } from "vitest";
import { createReferenceBackend } from "@int21/quant-kernels";
import { setBackend } from "./backend";
import { backward } from "./engine";
import { add, silu } from "./elementwise";
import { linear } from "./linear";
import { mse } from "./loss";
import { memory } from "./memory";
import { Adam } from "./optim";
import { parameter, randn, tensor, tidy } from "./tensor";

setBackend(createReferenceBackend());

describe("training", () => {
  it("a tiny MLP fits y = sin(x0) + x1² to a low MSE", () => {
    const rng = randn([64, 2], { seed: 1 });
    const x = rng;
    const yv = new Float32Array(64);
    for (let i = 0; i < 64; i++) yv[i] = Math.sin(x.get(i, 0)) + x.get(i, 1) ** 2;
    const y = tensor(yv, [64, 1]);
    const w1 = parameter(randn([32, 2], { seed: 2, std: 0.7 }).values().slice(), [32, 2]);
    const b1 = parameter(new Float32Array(32), [32]);
    const w2 = parameter(randn([1, 32], { seed: 3, std: 0.2 }).values().slice(), [1, 32]);
    const opt = new Adam([w1, b1, w2], { lr: 0.02 });
    let first = 0;
    let last = 0;
    const live0 = memory().liveBytes;
    for (let step = 0; step < 300; step++) {
      last = tidy(() => {
        const h = silu(add(linear(x, w1), b1));
        const loss = mse(linear(h, w2), y);
        backward(loss);
        opt.step();
        opt.zeroGrad();
        return loss.item();
      });
      if (step === 0) first = last;
    }
    expect(first).toBeGreaterThan(0.5);
    expect(last).toBeLessThan(0.02);
    // only grads and optimizer state were added to the ledger
    const grown = memory().liveBytes - live0;
    expect(grown).toBe(4 * 2 * (64 + 32 + 32) + 4 * (64 + 32 + 32));
  });
});
