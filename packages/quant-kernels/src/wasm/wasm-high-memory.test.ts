// Addresses above 2 GiB: wasm32 memory goes up to 4 GiB, and the glue must turn byte addresses into
// view indices as unsigned numbers (`addr >>> 2`); a signed shift made every buffer placed past
// 2 GiB a negative index ("offset is out of bounds"), so a 7B model could use only half the memory.
import { describe, expect, it } from "vitest";
import { createReferenceBackend } from "../reference/backend";
import { rtnQuantize } from "../rtn";
import { randomUniform, randomWeights } from "../testing/random";
import { maxRelErr } from "../testing/tolerances";
import { wasmDequantize } from "./wasm-dequantize";
import { wasmQmatmul, wasmQmatmulT } from "./wasm-qmatmul";
import { ResidentCache } from "./wasm-resident";
import { WasmRuntime } from "./wasm-runtime";
import { wasmSgemm } from "./wasm-sgemm";

describe("wasm kernels with their buffers above 2 GiB", () => {
  it("sgemm, qmatmul, qmatmulT and dequantize match the reference", async () => {
    const rt = await WasmRuntime.create(1, false);
    const cache = new ResidentCache(rt);
    const ref = createReferenceBackend();
    try {
      // Take the first 2 GiB + 64 MiB of the heap (never touched, so it costs address space only):
      // everything the kernels allocate from here on lies above 2 GiB.
      const pad = rt.heap.alloc(2 ** 31 + 2 ** 26);
      expect(pad + 2 ** 31 + 2 ** 26).toBeGreaterThan(2 ** 31);
      const M = 5;
      const N = 96;
      const K = 128;
      const A = randomUniform(M * K, 1);
      const B = randomUniform(N * K, 2);
      const want = new Float32Array(M * N);
      const got = new Float32Array(M * N);
      ref.sgemm({ M, N, K, A, B, C: want, transB: true });
      wasmSgemm(rt, cache, { M, N, K, A, B, C: got, transB: true });
      expect(maxRelErr(got, want)).toBeLessThan(1e-5);

      const q = rtnQuantize(randomWeights(N * K, 3), N, K, "int4-g32-asym-f16");
      const y = new Float32Array(M * N);
      const yWant = new Float32Array(M * N);
      ref.qmatmul(A, M, q, yWant);
      wasmQmatmul(rt, cache, A, M, q, y);
      expect(maxRelErr(y, yWant)).toBeLessThan(1e-5);

      const g = randomUniform(M * N, 4);
      const dx = new Float32Array(M * K);
      const dxWant = new Float32Array(M * K);
      ref.qmatmulT(g, M, q, dxWant);
      wasmQmatmulT(rt, cache, g, M, q, dx);
      expect(maxRelErr(dx, dxWant)).toBeLessThan(1e-5);

      const w = new Float32Array(N * K);
      const wWant = new Float32Array(N * K);
      ref.dequantize(q, wWant);
      wasmDequantize(rt, cache, q, w);
      expect(maxRelErr(w, wWant)).toBeLessThan(1e-6);
      expect(rt.heap.byteLength).toBeGreaterThan(2 ** 31);
    } finally {
      cache.dispose();
      rt.dispose();
    }
  }, 60_000);
});
