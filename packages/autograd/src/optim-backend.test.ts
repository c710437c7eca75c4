// Adam / AdamW through a backend's optional adamw kernel (quant-kernels' AdamWArgs): the reference
// backend's referenceAdamW gives AdamW's own loop bit for bit, and a backend offering adamw is called.
import { type AdamWArgs, type Backend, createReferenceBackend } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { setBackend } from "./backend";
import { Adam, AdamW } from "./optim";
import { parameter, type Tensor, tensor } from "./tensor";

/** Runs 5 steps of `make` on two parameters with `backend` set (or none). */
function run(backend: Backend | null, make: (ps: Tensor[]) => Adam) {
  const previous = setBackend(backend);
  try {
    const a = parameter(
      Float32Array.from({ length: 37 }, (_, i) => Math.sin(i) * 0.3),
      [37],
    );
    const b = parameter(
      Float32Array.from({ length: 12 }, (_, i) => Math.cos(i * 1.7)),
      [3, 4],
    );
    const opt = make([a, b]);
    for (let t = 1; t <= 5; t++) {
      for (const p of [a, b]) {
        const g = Float32Array.from({ length: p.size }, (_, i) => Math.sin(i * t + p.size) * 10 ** -(t % 3));
        p.grad = tensor(g, p.shape, { tag: "grad" });
      }
      opt.step();
    }
    const st = opt.stateDict();
    return [a.data.slice(), b.data.slice(), ...Object.values(st.tensors)];
  } finally {
    setBackend(previous);
  }
}

describe("optimizers through a backend's adamw", () => {
  for (const [name, make] of [
    ["AdamW", (ps: Tensor[]) => new AdamW(ps, { lr: 2e-2, weightDecay: 0.05 })],
    ["Adam (L2)", (ps: Tensor[]) => new Adam(ps, { lr: 2e-2, weightDecay: 0.05, beta1: 0.8 })],
  ] as const) {
    it(`${name}: the reference backend's adamw equals the optimizer's own loop exactly`, () => {
      const own = run(null, make);
      const ref = run(createReferenceBackend(), make);
      expect(ref.length).toBe(own.length);
      expect(ref.map((t) => Array.from(t))).toEqual(own.map((t) => Array.from(t)));
    });
  }

  it("calls the backend's adamw once per parameter and step, with the optimizer's hyper-parameters", () => {
    const calls: AdamWArgs[] = [];
    const ref = createReferenceBackend();
    const spy: Backend = {
      ...ref,
      adamw(a) {
        calls.push({ ...a });
        ref.adamw?.(a);
      },
    };
    run(spy, (ps) => new AdamW(ps, { lr: 1e-3 }));
    expect(calls.length).toBe(10);
    expect(calls[9]).toMatchObject({ lr: 1e-3, weightDecay: 0.01, step: 5, decoupled: true, offset: 0 });
    run(spy, (ps) => new Adam(ps));
    expect(calls[10]).toMatchObject({ step: 1, decoupled: false, weightDecay: 0 });
  });
});
