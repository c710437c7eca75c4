// How ops reach the matmul kernels: one module-level backend, set explicitly (there is no default).
import type { Backend } from "@int21/quant-kernels";

let current: Backend | null = null;

/**
 * Sets the backend every op uses from now on (null: none) for `sgemm` (all matmuls, forward and
 * backward) and the other kernels ops run (attention, SwiGLU, …). Returns the previous one (or null).
 * A frozen `Linear` ({@link frozenLinear}) runs on its own backend instead.
 *
 * ```ts
 * import { createWasmBackend } from "@int21/quant-kernels/wasm";
 * setBackend(await createWasmBackend());
 * ```
 */
export function setBackend(backend: Backend | null): Backend | null {
  const previous = current;
  current = backend;
  return previous;
}

/** The backend set now ({@link setBackend}, {@link withBackend}), or null when none is. Creates nothing. */
export function currentBackend(): Backend | null {
  return current;
}

/**
 * The backend ops use now: the one given to {@link setBackend} or {@link withBackend}. There is no
 * default: with none set it throws, saying how to set one (a silent default would be the reference
 * kernels, about 20× slower than wasm for a LoRA step).
 */
export function getBackend(): Backend {
  if (current === null) {
    throw new Error(
      "autograd: no backend is set, and this op runs kernels (matmul, attention, swiglu, …). Pass one: " +
        "setBackend(await createWasmBackend()) (fast; from @int21/quant-kernels/wasm) or " +
        "setBackend(createReferenceBackend()) (the slow TypeScript reference; from @int21/quant-kernels), " +
        "withBackend(backend, fn), or the { backend } option of trainForward / generate / Trainer",
    );
  }
  return current;
}

/** Runs `fn` with `backend` set, then restores the previous backend (also when `fn` throws). */
export function withBackend<T>(backend: Backend, fn: () => T): T {
  const previous = setBackend(backend);
  try {
    return fn();
  } finally {
    setBackend(previous);
  }
}
