import { createReferenceBackend } from "@int21/quant-kernels";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { loadLlama2c } from "./load-llama2c";
import { forward, quantizeModel, createRunState, widenExactly } from "@int21/model-llama";

const backend = createReferenceBackend();
const model = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
const tokens = [1, 403, 407, 261, 378, 434, 56, 91, 298, 59, 409, 87];

function logits(w: typeof model): Float32Array {
  const st = createRunState(w.config, { maxRows: tokens.length });
  return forward(w, st, tokens, 0, "all").slice();
}

describe("widenExactly", () => {
  it("stories260K widened to 256/256 (head 8 → 32) computes the same logits", () => {
    const wide = widenExactly(model, { dim: 256, hiddenDim: 256, backend });
    expect(wide.config).toMatchObject({ dim: 256, hiddenDim: 256, nHeads: model.config.nHeads });
    expect(wide.layers[0].w2.inFeatures).toBe(256);
    const a = logits(model);
    const b = logits(wide);
    let m = 0;
    let s = 0;
    for (let i = 0; i < a.length; i++) {
      m = Math.max(m, Math.abs(a[i] - b[i]));
      s = Math.max(s, Math.abs(a[i]));
    }
    expect(m / s).toBeLessThan(1e-4);
    // the check can fail: the old RoPE θ on the wider heads turns the pairs at other speeds
    const bad = logits({ ...wide, config: { ...wide.config, ropeTheta: model.config.ropeTheta } });
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - bad[i]));
    expect(d / s).toBeGreaterThan(1e-2);
  });

  it("refuses packed projections and unsupported configs, naming them", () => {
    const q = quantizeModel(model, { format: "int4-g32-asym-f16", method: "rtn", backend }).weights;
    expect(() => widenExactly(q, { dim: 256, hiddenDim: 256, backend })).toThrow(
      /layers\.0\.wq is not a float projection/,
    );
    const capped = { ...model, config: { ...model.config, finalLogitSoftcap: 30 } };
    expect(() => widenExactly(capped, { dim: 256, hiddenDim: 256, backend })).toThrow(
      /config\.finalLogitSoftcap = 30 is not supported/,
    );
    expect(() => widenExactly(model, { dim: 100, hiddenDim: 256, backend })).toThrow(/head size 100\/8/);
  });
});
