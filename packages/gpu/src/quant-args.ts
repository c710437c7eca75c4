// Argument checks shared by every quantized kernel here: a clear Error instead of a NaN or a wrong answer.
import type { QuantizedLinear } from "@int21/quant-kernels";
import { assertPacked, groupCountOf } from "./float-layout";

/** Which quantized kernel is being checked (for messages). */
export type QuantKernel = "qmatmul" | "qmatmulT" | "dequantize";

/**
 * Checks `rows`, the input length (`rows·K` for qmatmul, `rows·N` for qmatmulT) and the output capacity
 * (`rows·N`, `rows·K`, `N·K`), and the record's own consistency. Throws a RangeError naming the tensor.
 */
export function assertQuantArgs(
  kernel: QuantKernel,
  q: QuantizedLinear,
  rows: number,
  input: Float32Array | null,
  out: Float32Array,
): void {
  assertPacked(q);
  groupCountOf(q);
  const N = q.outFeatures;
  const K = q.inFeatures;
  if (!Number.isInteger(rows) || rows < 0)
    throw new RangeError(`gpu: ${kernel}: rows must be a non-negative integer, got ${rows}`);
  const [inLen, inName, outLen, outName] =
    kernel === "qmatmul"
      ? [rows * K, "x", rows * N, "y"]
      : kernel === "qmatmulT"
        ? [rows * N, "g", rows * K, "dx"]
        : [0, "", N * K, "out"];
  if (input && input.length < inLen) {
    throw new RangeError(
      `gpu: ${kernel}: ${inName} needs ${rows}×${kernel === "qmatmul" ? K : N} = ${inLen} floats, has ${input.length}`,
    );
  }
  if (out.length < outLen)
    throw new RangeError(`gpu: ${kernel}: ${outName} needs ${outLen} floats, has ${out.length}`);
}
