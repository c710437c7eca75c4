import type { FloatLinear, Linear, QuantLinear, QuantizedLinear } from "@int21/quant-kernels";

/** What a stored projection is made of: a float weight `[N×K]`, or a packed record. */
export type LinearParts = { kind: "float"; weight: Float32Array } | { kind: "quant"; q: QuantizedLinear };

/**
 * The parameters behind a {@link Linear} built by quant-kernels' `createFloatLinear` (its `weight`) or
 * `createQuantLinear` (its packed `q`). Anything else (a LoRA-wrapped layer, a layer with a bias) has no
 * single stored form here: throws naming `name` (merge or save adapters separately).
 */
export function linearParts(l: Linear, name: string): LinearParts {
  if ((l as { bias?: unknown }).bias !== undefined)
    throw new Error(`${name}: a linear with a bias is not a LLaMA projection`);
  const q = (l as Partial<QuantLinear>).q;
  if (q !== undefined && q.qweight !== undefined) return { kind: "quant", q };
  const weight = (l as Partial<FloatLinear>).weight;
  if (weight instanceof Float32Array && weight.length === l.outFeatures * l.inFeatures)
    return { kind: "float", weight };
  throw new Error(
    `${name}: this Linear is neither a float nor a quantized projection (a LoRA-wrapped layer?); store its base and adapters separately`,
  );
}
