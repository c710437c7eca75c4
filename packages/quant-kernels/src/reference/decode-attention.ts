/**
 * Causal grouped-query attention of a block of queries over a KV cache, the operation inference runs
 * once per layer (decode: one query; prefill: a block). See {@link referenceAttention}.
 */
export interface AttentionArgs {
  /** Queries `[rows × nHeads·headSize]` (after RoPE). */
  q: Float32Array;
  /** Output `[rows × nHeads·headSize]`. */
  out: Float32Array;
  /** Key cache: slot `s` of this layer at `offset + s·nKvHeads·headSize`. */
  keys: Float32Array;
  /** Value cache, laid out as `keys`. */
  values: Float32Array;
  /** Float offset of the layer's slot 0 in `keys` / `values`. */
  offset: number;
  /** Slots of the layer's cache: position `p` lives in slot `p mod cacheLen` (a ring for sliding windows). */
  cacheLen: number;
  rows: number;
  /** Position of query row 0. */
  pos: number;
  /** Sliding window (keys `pos + r − window + 1 ..`), 0 for none. */
  window: number;
  nHeads: number;
  nKvHeads: number;
  headSize: number;
  /** Score scale, usually `1/sqrt(headSize)`. */
  scale: number;
}

/** Throws naming the argument when `a` does not describe a valid call. */
export function checkAttentionArgs(a: AttentionArgs, who: string): void {
  const fail = (m: string): never => {
    throw new Error(`${who}: ${m}`);
  };
  const ints: (keyof AttentionArgs)[] = [
    "offset",
    "cacheLen",
    "rows",
    "pos",
    "window",
    "nHeads",
    "nKvHeads",
    "headSize",
  ];
  for (const k of ints) {
    const v = a[k] as number;
    if (!Number.isSafeInteger(v) || v < 0) fail(`${k} must be a non-negative integer, got ${String(v)}`);
  }
  const { rows, nHeads, nKvHeads, headSize: hs, cacheLen, window, pos } = a;
  if (nHeads < 1 || nKvHeads < 1 || hs < 1 || cacheLen < 1)
    fail(
      `nHeads, nKvHeads, headSize and cacheLen must be ≥ 1, got ${nHeads}, ${nKvHeads}, ${hs}, ${cacheLen}`,
    );
  if (nHeads % nKvHeads !== 0) fail(`nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
  const qd = nHeads * hs;
  if (a.q.length < rows * qd) fail(`q has ${a.q.length} floats, rows × nHeads·headSize needs ${rows * qd}`);
  if (a.out.length < rows * qd) fail(`out has ${a.out.length} floats, needs ${rows * qd}`);
  const need = a.offset + cacheLen * nKvHeads * hs;
  if (a.keys.length < need || a.values.length < need)
    fail(
      `keys/values have ${a.keys.length}/${a.values.length} floats, offset + cacheLen·kvDim needs ${need}`,
    );
  // every key a row reads must still be in the cache: a full cache holds all positions, a ring the window
  if (rows > 0 && pos + rows > cacheLen && !(window > 0 && window + rows - 1 <= cacheLen))
    fail(
      `positions ${pos}..${pos + rows - 1} need ${window > 0 ? window + rows - 1 : pos + rows} cache slots, the cache has ${cacheLen}`,
    );
  if (!(Number.isFinite(a.scale) && a.scale > 0)) fail(`scale must be a positive number, got ${a.scale}`);
}

/**
 * Scalar reference (float64 sums):
 * ```
 * for row r (position p = pos + r), head h, kv head g = h / (nHeads / nKvHeads):
 *   first   = window > 0 ? max(0, p − window + 1) : 0
 *   att[t]  = scale · q[r,h]·k[slot(t), g]           first ≤ t ≤ p, slot(t) = t mod cacheLen
 *   out[r,h] = Σ_t softmax(att)[t] · v[slot(t), g]
 * ```
 */
export function referenceAttention(a: AttentionArgs): void {
  checkAttentionArgs(a, "referenceAttention");
  const { rows, pos, window, nHeads, nKvHeads, headSize: hs, cacheLen, offset, q, out, keys, values } = a;
  const kv = nKvHeads * hs;
  const qd = nHeads * hs;
  const group = nHeads / nKvHeads;
  for (let r = 0; r < rows; r++) {
    const last = pos + r;
    const first = window > 0 ? Math.max(0, last - window + 1) : 0;
    const n = last - first + 1;
    const att = new Float64Array(n);
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      let max = Number.NEGATIVE_INFINITY;
      for (let t = 0; t < n; t++) {
        const ko = offset + ((first + t) % cacheLen) * kv + g * hs;
        let s = 0;
        for (let i = 0; i < hs; i++) s += q[r * qd + h * hs + i] * keys[ko + i];
        att[t] = s * a.scale;
        max = Math.max(max, att[t]);
      }
      let sum = 0;
      for (let t = 0; t < n; t++) {
        att[t] = Math.exp(att[t] - max);
        sum += att[t];
      }
      for (let i = 0; i < hs; i++) {
        let o = 0;
        for (let t = 0; t < n; t++) o += att[t] * values[offset + ((first + t) % cacheLen) * kv + g * hs + i];
        out[r * qd + h * hs + i] = o / sum;
      }
    }
  }
}
