// The scalar TypeScript reference backend: the canonical result every other backend is tested against.
import type { Backend, KernelName, QuantFormat } from "../types";
import { referenceAdamW } from "./adamw";
import { referenceDequantize } from "./dequantize";
import { referenceQmatmul } from "./qmatmul";
import { referenceQmatmulT } from "./qmatmul-t";
import { referenceSgemm } from "./sgemm";

/**
 * The reference backend: plain readable loops (`referenceSgemm`, `referenceDequantize`,
 * `referenceQmatmul`, `referenceQmatmulT`, the optional `adamw`: `referenceAdamW`), float64 accumulation, every format. Slow by design;
 * use it as the oracle and the fallback, not for speed. `dispose()` is a no-op.
 */
export function createReferenceBackend(): Backend {
  return {
    name: "reference",
    supports(_kernel: KernelName, _format?: QuantFormat): boolean {
      return true;
    },
    sgemm: referenceSgemm,
    dequantize: referenceDequantize,
    qmatmul: referenceQmatmul,
    qmatmulT: referenceQmatmulT,
    adamw: referenceAdamW,
    dispose(): void {},
  };
}
