// enableRelaxedSimd: on this Node (20: relaxed SIMD behind a flag; ≥ 22: on already) it makes the
// engine accept relaxed SIMD, after which createWasmBackend picks the relaxed-SIMD module by default.
import { expect, it } from "vitest";
import { enableRelaxedSimd, relaxedSimdAvailable } from "../wasm-entry";
import { createWasmBackend } from "./wasm-backend";

it("turns relaxed SIMD on, and the default backend then runs the relaxed module", async () => {
  expect(enableRelaxedSimd()).toBe(true);
  expect(relaxedSimdAvailable()).toBe(true);
  expect(enableRelaxedSimd()).toBe(true); // idempotent
  const b = await createWasmBackend({ threads: 1 });
  try {
    expect(b.relaxedSimd).toBe(true);
  } finally {
    b.dispose();
  }
  const plain = await createWasmBackend({ threads: 1, relaxedSimd: false });
  try {
    expect(plain.relaxedSimd).toBe(false);
  } finally {
    plain.dispose();
  }
});
