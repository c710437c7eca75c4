// Turning on relaxed SIMD where the engine has it behind a flag (Node 20), so that the relaxed-SIMD
// module (fused multiply-adds in the float GEMM, see wasm/gemm.c) runs wherever it can.
import { relaxedSimdAvailable } from "./wasm-runtime";

interface V8Flags {
  setFlagsFromString(flags: string): void;
}

/**
 * Makes the engine accept relaxed SIMD if it can, and says whether it now does. Where the engine
 * already has it (Chromium, Firefox, Node ≥ 22) this only probes; on Node 20 it sets V8's
 * `--experimental-wasm-relaxed-simd` flag (V8 reads wasm feature flags when it validates or compiles,
 * so modules compiled afterwards — including by {@link createWasmBackend}'s workers — may use it) and
 * probes again. Elsewhere (a browser without relaxed SIMD, a Node without `process.getBuiltinModule`)
 * it changes nothing and returns `false`; {@link createWasmBackend} then picks the plain-SIMD module.
 * Call it before creating a backend; it is idempotent.
 */
export function enableRelaxedSimd(): boolean {
  if (relaxedSimdAvailable()) return true;
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const v8 = proc?.getBuiltinModule?.("node:v8") as V8Flags | undefined;
  if (!v8 || typeof v8.setFlagsFromString !== "function") return false;
  try {
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  } catch {
    return false;
  }
  return relaxedSimdAvailable();
}

export { relaxedSimdAvailable };
