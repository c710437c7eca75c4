// The executable's relaxed-SIMD set-up: on by default (Node 20: behind a flag it sets), off with
// INT21_RELAXED_SIMD=0, which also makes withBackend create the plain-SIMD module.
import { type Backend, createReferenceBackend } from "@int21/quant-kernels";
import { expect, it } from "vitest";
import { withBackend } from "./command";
import { backendLabel, relaxedSimdOptOut, setUpRelaxedSimd } from "./relaxed-simd";

const b0name = () => createReferenceBackend().name;
const relaxed = (b: Backend) => (b as Backend & { relaxedSimd?: boolean }).relaxedSimd;

it("INT21_RELAXED_SIMD=0 opts out; anything else does not", () => {
  expect(relaxedSimdOptOut({ INT21_RELAXED_SIMD: "0" })).toBe(true);
  expect(relaxedSimdOptOut({ INT21_RELAXED_SIMD: "1" })).toBe(false);
  expect(relaxedSimdOptOut({})).toBe(false);
  expect(setUpRelaxedSimd({ INT21_RELAXED_SIMD: "0" })).toBe(false);
});

it("the set-up turns relaxed SIMD on, and the opt-out keeps the CLI's backend plain", async () => {
  expect(setUpRelaxedSimd({})).toBe(true);
  expect(await withBackend(1, async (b) => relaxed(b))).toBe(true);
  expect(await withBackend(1, async (b) => backendLabel(b))).toBe("wasm (relaxed SIMD)");
  const saved = process.env.INT21_RELAXED_SIMD;
  process.env.INT21_RELAXED_SIMD = "0";
  try {
    expect(await withBackend(1, async (b) => relaxed(b))).toBe(false);
    expect(await withBackend(1, async (b) => backendLabel(b))).toBe("wasm (SIMD)");
    expect(await withBackend(0, async (b) => backendLabel(b))).toBe(b0name());
  } finally {
    if (saved === undefined) delete process.env.INT21_RELAXED_SIMD;
    else process.env.INT21_RELAXED_SIMD = saved;
  }
});
