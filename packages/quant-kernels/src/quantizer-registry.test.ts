import { describe, expect, it } from "vitest";
import { gptq, gptqQuantize } from "./gptq";
import { createHessian } from "./hessian";
import { type Quantizer, needsCalibration } from "./quantizer";
import {
  getQuantizer,
  listQuantizers,
  quantizerNames,
  registerQuantizer,
  resolveQuantizer,
  unregisterQuantizer,
} from "./quantizer-registry";
import { rtn, rtnQuantize } from "./rtn";

function randomWeights(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    w[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 0.2;
  }
  return w;
}

const N = 6;
const K = 64;
const W = randomWeights(N * K, 7);
const X = randomWeights(32 * K, 11);
const H = createHessian(K);
H.add(X, 32);

describe("quantizer registry", () => {
  it("holds rtn and gptq, which say whether they need calibration", () => {
    expect(quantizerNames().slice(0, 2)).toEqual(["rtn", "gptq"]);
    expect(listQuantizers()[1].description).toMatch(/GPTQ/);
    const r = getQuantizer("rtn");
    const g = getQuantizer("gptq", { actOrder: true, dampening: 0.05 });
    expect([r.needsHessian, needsCalibration(r), g.needsHessian, needsCalibration(g)]).toEqual([
      false,
      false,
      true,
      true,
    ]);
    expect(r.quantize(W, N, K, "int4-g32-asym-f16").qweight.words).toEqual(
      rtnQuantize(W, N, K, "int4-g32-asym-f16").qweight.words,
    );
    const q = g.quantize(W, N, K, "int3-g32-asym-f16", { hessian: H });
    const ref = gptqQuantize(W, N, K, "int3-g32-asym-f16", H, { actOrder: true, percDamp: 0.05 });
    expect(q.qweight.words).toEqual(ref.qweight.words);
    expect(q.gIdx).toEqual(ref.gIdx);
    // the factory is the same as the registry's
    expect(
      gptq({ actOrder: true, dampening: 0.05 }).quantize(W, N, K, "int3-g32-asym-f16", { hessian: H }).scales,
    ).toEqual(ref.scales);
    expect(rtn({ mseClip: true }).name).toBe("rtn-mse");
  });

  it("unknown names and bad settings are errors naming them", () => {
    expect(() => getQuantizer("awq")).toThrow(/unknown quantizer "awq"; registered quantizers: rtn, gptq/);
    expect(() => getQuantizer("rtn", { actOrder: true })).toThrow(
      /quantizer rtn takes no option actOrder \(it takes: mseClip, grid, maxShrink, norm\)/,
    );
    expect(() => getQuantizer("gptq", { actOrder: "yes" })).toThrow(
      /option actOrder must be a boolean, got yes/,
    );
    expect(() => getQuantizer("gptq", { dampening: -1 })).toThrow(
      /dampening must be a finite number ≥ 0, got -1/,
    );
    expect(() => gptq({ blockSize: 0 })).toThrow(/blockSize must be a positive integer, got 0/);
    expect(() => gptq({ dampening: 0.1, percDamp: 0.2 })).toThrow(/disagree/);
    // settings left undefined are not settings
    expect(getQuantizer("rtn", { actOrder: undefined }).name).toBe("rtn");
  });

  it("a user quantizer registers, is found by name with its settings, and unregisters", () => {
    const made: unknown[] = [];
    const halfRange = (p: Record<string, unknown>): Quantizer => {
      made.push(p);
      return {
        name: "half-range",
        quantize: (w, n, k, f) => rtnQuantize(w, n, k, f, { mseClip: true, maxShrink: 0.5 }),
      };
    };
    registerQuantizer("half-range", halfRange, "RTN with the range searched down to half");
    try {
      expect(quantizerNames()).toContain("half-range");
      expect(listQuantizers().find((e) => e.name === "half-range")?.description).toMatch(/half/);
      const q = getQuantizer("half-range", { strength: 2 });
      expect(made).toEqual([{ strength: 2 }]);
      expect(needsCalibration(q)).toBe(false);
      expect(resolveQuantizer("test", "half-range").name).toBe("half-range");
      expect(() => registerQuantizer("half-range", halfRange)).toThrow(
        /already registered \(rtn, gptq, half-range\)/,
      );
      expect(() => getQuantizer("nope")).toThrow(/registered quantizers: rtn, gptq, half-range/);
    } finally {
      expect(unregisterQuantizer("half-range")).toBe(true);
    }
    expect(quantizerNames()).not.toContain("half-range");
    expect(() => registerQuantizer("Bad Name", halfRange)).toThrow(/must be lowercase/);
    expect(() => registerQuantizer("rtn", halfRange)).toThrow(/rtn is already registered/);
    expect(() => unregisterQuantizer("gptq")).toThrow(/gptq is built in/);
    // a factory that returns something else is caught at once
    registerQuantizer("broken", () => ({ name: "broken" }) as unknown as Quantizer);
    try {
      expect(() => getQuantizer("broken")).toThrow(
        /factory broken: expected a Quantizer, got an object without a quantize/,
      );
    } finally {
      unregisterQuantizer("broken");
    }
  });

  it("resolveQuantizer takes a name or a value, and names what it got otherwise", () => {
    const g = gptq();
    expect(resolveQuantizer("quantizeModel", g)).toBe(g);
    expect(resolveQuantizer("quantizeModel", "gptq", { actOrder: true }).needsHessian).toBe(true);
    expect(() => resolveQuantizer("quantizeModel", {} as Quantizer)).toThrow(
      /quantizeModel: the quantizer must be a registered name \(rtn, gptq\) or a Quantizer value, got an object without a quantize function/,
    );
    expect(() => resolveQuantizer("quantizeModel", 3 as unknown as Quantizer)).toThrow(/got 3/);
    expect(() => resolveQuantizer("quantizeModel", "hqq")).toThrow(
      /quantizeModel: unknown quantizer "hqq"; registered quantizers: rtn, gptq/,
    );
    expect(() => resolveQuantizer("quantizeModel", g, { actOrder: true })).toThrow(
      /actOrder configure a quantizer given by name; configure the quantizer gptq itself/,
    );
    expect(() =>
      resolveQuantizer("quantizeModel", {
        name: "x",
        needsHessian: "yes",
        quantize: () => null,
      } as unknown as Quantizer),
    ).toThrow(/quantizer x: needsHessian must be a boolean/);
  });
});
