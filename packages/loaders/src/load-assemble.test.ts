import { SHARED, sharedPath } from "@int21/shared-data";
import { type Quantizer, gptq, rtnQuantize } from "@int21/quant-kernels";
import { describe, expect, it } from "vitest";
import { loadLlama2c } from "./load-llama2c";
import { linearParts } from "@int21/model-llama";

const MODEL = sharedPath(SHARED.stories260K);

describe("quantize while loading", () => {
  it("runs the spec's quantizer on every projection (RTN by default)", () => {
    const calls: string[] = [];
    const halfRange: Quantizer = {
      name: "half-range",
      quantize(w, N, K, f) {
        calls.push(`${N}x${K}`);
        return rtnQuantize(w, N, K, f, { mseClip: true, maxShrink: 0.5 });
      },
    };
    const float = loadLlama2c(MODEL);
    const mine = loadLlama2c(MODEL, { quantize: { format: "int2-g32-asym-f16", quantizer: halfRange } });
    const dflt = loadLlama2c(MODEL, { quantize: { format: "int2-g32-asym-f16" } });
    expect(calls).toHaveLength(35);
    expect(calls.filter((c) => c === "172x64")).toHaveLength(10); // w1 and w3 of 5 layers
    const w = (linearParts(float.layers[1].w2, "w2") as { weight: Float32Array }).weight;
    const parts = (m: typeof float) => linearParts(m.layers[1].w2, "w2");
    const a = parts(mine);
    const b = parts(dflt);
    expect(a.kind === "quant" && a.q.scales).toEqual(
      rtnQuantize(w, 64, 172, "int2-g32-asym-f16", { mseClip: true, maxShrink: 0.5 }).scales,
    );
    expect(b.kind === "quant" && b.q.scales).toEqual(rtnQuantize(w, 64, 172, "int2-g32-asym-f16").scales);
    expect(linearParts(mine.classifier, "classifier").kind).toBe("float");
    // by registered name
    const byName = loadLlama2c(MODEL, { quantize: { format: "int2-g32-asym-f16", quantizer: "rtn" } });
    const c = parts(byName);
    expect(c.kind === "quant" && c.q.scales).toEqual(b.kind === "quant" && b.q.scales);
  });

  it("refuses a quantizer that needs calibration, and unknown names", () => {
    expect(() =>
      loadLlama2c(MODEL, { quantize: { format: "int4-g32-asym-f16", quantizer: gptq() } }),
    ).toThrow(
      /stories260K\.bin: the gptq quantizer needs calibration data, which loading does not have; .*quantizeModel/,
    );
    expect(() => loadLlama2c(MODEL, { quantize: { format: "int4-g32-asym-f16", quantizer: "hqq" } })).toThrow(
      /quantize\.quantizer: unknown quantizer "hqq"; registered quantizers: rtn, gptq/,
    );
  });
});
