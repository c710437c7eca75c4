import { createQuantizedLinear, getFormat, groupCount } from "@int21/quant-kernels";
import type { WasmBackend } from "@int21/quant-kernels/wasm";
import { packedMatrixView, matrixWordsPerRow } from "@int21/bitpack";
import { describe, expect, it } from "vitest";
import { withBackend } from "./command";

/** A small packed layer with arbitrary codes (the kernels' results do not matter here). */
function layer(seed: number) {
  const f = getFormat("int4-g32-asym-f16");
  const [N, K] = [32, 64];
  const words = new Uint32Array(N * matrixWordsPerRow(K, f.bits)).map(
    (_, i) => (i * 2654435761 + seed) >>> 0,
  );
  const n = N * groupCount(f, K);
  return createQuantizedLinear({
    format: f,
    outFeatures: N,
    inFeatures: K,
    qweight: packedMatrixView(words, N, K, f.bits),
    scales: new Float32Array(n).fill(0.0078125),
    zeros: new Float32Array(n).fill(8),
  });
}

describe("withBackend", () => {
  it("passes --max-resident-mb to the WebAssembly backend as its resident budget", async () => {
    const [a, b] = [layer(1), layer(2)];
    const x = new Float32Array(64).fill(0.5);
    const y = new Float32Array(32);
    const resident = async (mb?: number) =>
      withBackend(
        1,
        async (be) => {
          const w = be as WasmBackend;
          w.qmatmul(x, 1, a, y);
          w.qmatmul(x, 1, b, y);
          return [w.isResident(a), w.isResident(b)];
        },
        mb,
      );
    expect(await resident()).toEqual([true, true]);
    expect(await resident(0)).toEqual([false, true]);
  });
});
