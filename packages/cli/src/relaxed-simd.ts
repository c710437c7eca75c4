// Relaxed SIMD for the WebAssembly kernels: on by default (Node 20 has it behind a V8 flag, which the
// executable sets before any module is compiled); INT21_RELAXED_SIMD=0 keeps the plain-SIMD module.
import { enableRelaxedSimd } from "@int21/quant-kernels/wasm";

/** The environment variable that opts out of relaxed SIMD (`0`: the plain-SIMD module). */
export const RELAXED_SIMD_ENV = "INT21_RELAXED_SIMD";

/** Whether `env` opts out of relaxed SIMD ({@link RELAXED_SIMD_ENV} is `0`). */
export function relaxedSimdOptOut(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[RELAXED_SIMD_ENV] === "0";
}

/**
 * Called by the `int21` executable before any backend exists: unless `env` opts out, turns relaxed
 * SIMD on where the engine can have it (see `enableRelaxedSimd` in `@int21/quant-kernels/wasm`).
 * Returns whether the WebAssembly backends will run the relaxed-SIMD module.
 */
export function setUpRelaxedSimd(env: NodeJS.ProcessEnv = process.env): boolean {
  return relaxedSimdOptOut(env) ? false : enableRelaxedSimd();
}

/**
 * The kernels a backend runs, for people: `wasm (relaxed SIMD)` or `wasm (SIMD)` for a WebAssembly
 * backend, else the backend's name (`reference`, a WebGPU backend's).
 */
export function backendLabel(backend: { readonly name: string; readonly relaxedSimd?: boolean }): string {
  if (typeof backend.relaxedSimd !== "boolean") return backend.name;
  return backend.relaxedSimd ? "wasm (relaxed SIMD)" : "wasm (SIMD)";
}
