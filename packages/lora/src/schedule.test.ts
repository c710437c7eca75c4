import { describe, expect, it } from "vitest";
import { checkSchedule, learningRate } from "./schedule";

describe("learningRate", () => {
  it("warms up linearly, then decays by kind", () => {
    const s = { lr: 1, totalSteps: 12, warmupSteps: 4, minLr: 0.1 };
    expect([0, 1, 2, 3].map((t) => learningRate(t, s))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(learningRate(4, s)).toBe(1);
    expect(learningRate(8, s)).toBeCloseTo(0.55, 12); // halfway: (1 + 0.1) / 2
    expect(learningRate(12, s)).toBeCloseTo(0.1, 12);
    expect(learningRate(8, { ...s, kind: "linear" })).toBeCloseTo(0.55, 12);
    expect(learningRate(6, { ...s, kind: "linear" })).toBeCloseTo(1 - 0.9 * 0.25, 12);
    expect(learningRate(11, { ...s, kind: "constant" })).toBe(1);
    expect(learningRate(0, { lr: 0.5, totalSteps: 3 })).toBe(0.5);
  });

  it("is monotone after warmup", () => {
    const s = { lr: 3e-4, totalSteps: 100, warmupSteps: 10 };
    for (let t = 10; t < 100; t++) expect(learningRate(t + 1, s)).toBeLessThanOrEqual(learningRate(t, s));
  });

  it("rejects bad options", () => {
    expect(() => checkSchedule({ lr: 0, totalSteps: 1 })).toThrow(/lr must be/);
    expect(() => checkSchedule({ lr: 1, totalSteps: 0 })).toThrow(/totalSteps/);
    expect(() => checkSchedule({ lr: 1, totalSteps: 5, warmupSteps: 6 })).toThrow(/warmupSteps/);
    expect(() => checkSchedule({ lr: 1, totalSteps: 5, minLr: 2 })).toThrow(/minLr/);
    expect(() => checkSchedule({ lr: 1, totalSteps: 5, kind: "step" as "linear" })).toThrow(
      /unknown kind "step"/,
    );
  });
});
