// How ops reach the matmul kernels: one module-level backend, set explicitly.
import { type Backend, createReferenceBackend } from "@int21/quant-kernels";

let current: Backend | null = null;

/**
 * Sets the backend every op uses from now on (null restores the default reference backend) for `sgemm` (all matmuls, forward and backward) and for
 * the quantized kernels of {@link linear} (`qmatmul`, `qmatmulT`). Returns the previous one (or null).
 *
 * ```ts
 * import { createReferenceBackend } from "@int21/quant-kernels";
 * setBackend(createReferenceBackend());
 * ```
 */
export function setBackend(backend: Backend | null): Backend | null {
  const previous = current;
  current = backend;
  return previous;
}

/**
 * The backend ops use now: the one given to {@link setBackend}, or by default the quant-kernels
 * reference backend (`createReferenceBackend()`, created on first use: correct but slow; set a fast
 * backend such as `createWasmBackend()` for real training).
 */
export function getBackend(): Backend {
  if (current === null) current = createReferenceBackend();
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
