// Embedding gather (forward) with scatter-add (backward).
import { allocFloats } from "./memory";
import { defineOp, type OpDef } from "./engine";
import { output } from "./strided";
import { fmtShape, type Tensor } from "./tensor";

interface EmbedPlan {
  ids: Int32Array;
  shape: number[];
}

const embeddingOp: OpDef<EmbedPlan> = {
  name: "embedding",
  forward(_ctx, [table], { ids, shape }) {
    const D = table.shape[1];
    const tv = table.values();
    const out = allocFloats(ids.length * D);
    for (let i = 0; i < ids.length; i++) out.set(tv.subarray(ids[i] * D, ids[i] * D + D), i * D);
    return output(out, [...shape, D]); // backward needs only the ids (in attrs)
  },
  backward(_ctx, gy, [gt], { ids }) {
    const D = gt!.shape[1];
    const g = gy.values();
    const d = gt!.data;
    for (let i = 0; i < ids.length; i++) {
      const o = ids[i] * D;
      for (let j = 0; j < D; j++) d[o + j] += g[i * D + j];
    }
  },
};
const applyEmbedding = defineOp(embeddingOp);

/**
 * Rows of `table` `[V, D]` gathered by integer `ids` → `[...shape, D]` (`shape` defaults to
 * `[ids.length]`). Backward scatter-adds into the table's gradient (repeated ids accumulate).
 */
export function embedding(table: Tensor, ids: ArrayLike<number>, shape?: readonly number[]): Tensor {
  if (table.ndim !== 2)
    throw new Error(`autograd: embedding: table ${table} must be [V, D], got ${fmtShape(table.shape)}`);
  const V = table.shape[0];
  const idx = Int32Array.from(ids);
  for (let i = 0; i < idx.length; i++) {
    if (!Number.isInteger(ids[i]) || idx[i] < 0 || idx[i] >= V) {
      throw new Error(
        `autograd: embedding: id ${ids[i]} at ${i} out of range [0, ${V}) for table ${fmtShape(table.shape)}`,
      );
    }
  }
  const s = shape ? [...shape] : [idx.length];
  if (s.reduce((a, b) => a * b, 1) !== idx.length) {
    throw new Error(`autograd: embedding: shape ${fmtShape(s)} does not hold ${idx.length} ids`);
  }
  return applyEmbedding([table], { ids: idx, shape: s });
}

/** The op records of this family (forward/backward pairs), for introspection and tests. */
export const embeddingOps = { embeddingOp };
