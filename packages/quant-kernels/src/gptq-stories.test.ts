// GPTQ vs RTN on the 35 real linears of Karpathy's stories260K (llama2.c checkpoint read directly here).
import { readFileSync } from "node:fs";
import { SHARED, sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { gptqQuantize } from "./gptq";
import { createHessian } from "./hessian";
import { relativeOutputError } from "./output-error";
import { rtnQuantize } from "./rtn";

interface Checkpoint {
  dim: number;
  hidden: number;
  layers: number;
  emb: Float32Array; // [vocab × dim]
  rmsAtt: Float32Array; // [layers × dim]
  rmsFfn: Float32Array; // [layers × dim]
  linears: {
    name: string;
    N: number;
    K: number;
    w: Float32Array;
    input: "att" | "wo" | "ffn" | "w2";
    layer: number;
  }[];
}

/** llama2.c legacy checkpoint: 7×int32 header, then float32 weights in a fixed order. */
function readCheckpoint(path: string): Checkpoint {
  const buf = readFileSync(path);
  const hdr = new Int32Array(buf.buffer, buf.byteOffset, 7);
  const [dim, hidden, layers, heads, kvHeads, vocab, seq] = Array.from(hdr);
  const kvDim = (dim / heads) * kvHeads;
  const floats = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.length));
  const expected =
    vocab * dim +
    layers * (2 * dim + dim * dim * 2 + 2 * kvDim * dim + 3 * hidden * dim) +
    dim +
    seq * (dim / heads);
  if (floats.length !== expected) throw new Error(`${path}: ${floats.length} floats, expected ${expected}`);
  let off = 0;
  const take = (n: number) => floats.subarray(off, (off += n));
  const emb = take(vocab * dim);
  const rmsAtt = take(layers * dim);
  const wq = take(layers * dim * dim);
  const wk = take(layers * kvDim * dim);
  const wv = take(layers * kvDim * dim);
  const wo = take(layers * dim * dim);
  const rmsFfn = take(layers * dim);
  const w1 = take(layers * hidden * dim);
  const w2 = take(layers * dim * hidden);
  const w3 = take(layers * hidden * dim);
  const linears: Checkpoint["linears"] = [];
  for (let l = 0; l < layers; l++) {
    const mat = (name: string, all: Float32Array, N: number, K: number, input: "att" | "wo" | "ffn" | "w2") =>
      linears.push({
        name: `layers.${l}.${name}`,
        N,
        K,
        w: all.slice(l * N * K, (l + 1) * N * K),
        input,
        layer: l,
      });
    mat("wq", wq, dim, dim, "att");
    mat("wk", wk, kvDim, dim, "att");
    mat("wv", wv, kvDim, dim, "att");
    mat("wo", wo, dim, dim, "wo");
    mat("w1", w1, hidden, dim, "ffn");
    mat("w2", w2, dim, hidden, "w2");
    mat("w3", w3, hidden, dim, "ffn");
  }
  return { dim, hidden, layers, emb, rmsAtt, rmsFfn, linears };
}

/** llama2.c tokenizer: add a leading space, look up characters (byte fallback id = byte + 3), merge best pairs. */
function tokenize(tokPath: string, text: string): number[] {
  const buf = readFileSync(tokPath);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const vocab: string[] = [];
  const scores: number[] = [];
  let p = 4;
  for (let i = 0; i < 512; i++) {
    scores.push(dv.getFloat32(p, true));
    const len = dv.getInt32(p + 4, true);
    vocab.push(buf.subarray(p + 8, p + 8 + len).toString("utf8"));
    p += 8 + len;
  }
  const id = new Map(vocab.map((s, i) => [s, i]));
  const out: number[] = [];
  for (const story of text.split("<|endoftext|>")) {
    const s = story.trim();
    if (s.length === 0) continue;
    let toks: number[] = [];
    for (const ch of ` ${s}`) {
      const t = id.get(ch);
      if (t !== undefined) toks.push(t);
      else for (const b of Buffer.from(ch, "utf8")) toks.push(b + 3);
    }
    for (;;) {
      let best = -1;
      let bestScore = Number.NEGATIVE_INFINITY;
      let bestId = -1;
      for (let i = 0; i + 1 < toks.length; i++) {
        const m = id.get(vocab[toks[i]] + vocab[toks[i + 1]]);
        if (m !== undefined && scores[m] > bestScore) {
          bestScore = scores[m];
          best = i;
          bestId = m;
        }
      }
      if (best < 0) break;
      toks = [...toks.slice(0, best), bestId, ...toks.slice(best + 2)];
    }
    out.push(1, ...toks);
  }
  return out;
}

function rmsnorm(x: Float32Array, rows: number, dim: number, w: Float32Array): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + 1e-5);
    for (let i = 0; i < dim; i++) out[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return out;
}

function matmulT(x: Float32Array, rows: number, w: Float32Array, N: number, K: number): Float32Array {
  const y = new Float32Array(rows * N);
  for (let r = 0; r < rows; r++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
      y[r * N + n] = s;
    }
  return y;
}

describe("GPTQ on real stories260K weights (layer-0-style inputs from real token embeddings)", () => {
  const ck = readCheckpoint(sharedPath(SHARED.stories260K));
  const text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").slice(0, 40_000);
  const ids = tokenize(sharedPath(SHARED.tok512), text);
  const { dim, hidden } = ck;
  // Calibrate on the first tokens, evaluate on later, unseen ones.
  const calibRows = 2048;
  const evalRows = Math.min(1024, ids.length - calibRows);
  const embRows = (from: number, n: number) => {
    const e = new Float32Array(n * dim);
    for (let r = 0; r < n; r++)
      e.set(ck.emb.subarray(ids[from + r] * dim, (ids[from + r] + 1) * dim), r * dim);
    return e;
  };
  const inputs = (lin: Checkpoint["linears"][number], from: number, n: number): Float32Array => {
    const e = embRows(from, n);
    const l = lin.layer;
    if (lin.input === "att" || lin.input === "wo")
      return rmsnorm(e, n, dim, ck.rmsAtt.subarray(l * dim, (l + 1) * dim));
    const xf = rmsnorm(e, n, dim, ck.rmsFfn.subarray(l * dim, (l + 1) * dim));
    if (lin.input === "ffn") return xf;
    // w2 sees the SwiGLU hidden state silu(w1·x) ⊙ (w3·x) of the same layer.
    const w1 = ck.linears.find((m) => m.name === `layers.${l}.w1`)!;
    const w3 = ck.linears.find((m) => m.name === `layers.${l}.w3`)!;
    const h1 = matmulT(xf, n, w1.w, hidden, dim);
    const h3 = matmulT(xf, n, w3.w, hidden, dim);
    for (let i = 0; i < h1.length; i++) h1[i] = (h1[i] / (1 + Math.exp(-h1[i]))) * h3[i];
    return h1;
  };

  it("parses the checkpoint and tokenizes real text", () => {
    expect([ck.dim, ck.hidden, ck.layers, ck.linears.length]).toEqual([64, 172, 5, 35]);
    expect(ids.length).toBeGreaterThan(calibRows + 512);
    expect(ids[0]).toBe(1);
    expect(Math.max(...ids)).toBeLessThan(512);
  });

  for (const format of ["int2-g32-asym-f16", "int3-g64-asym-f16", "int4-g128-asym-f16"]) {
    it(`${format}: GPTQ has lower output error than RTN on all 35 linears (held-out tokens)`, () => {
      const ratios: number[] = [];
      for (const lin of ck.linears) {
        const xc = inputs(lin, 0, calibRows);
        const xe = inputs(lin, calibRows, evalRows);
        const h = createHessian(lin.K);
        h.add(xc, calibRows);
        const rtn = relativeOutputError(xe, evalRows, lin.w, rtnQuantize(lin.w, lin.N, lin.K, format));
        const gptq = relativeOutputError(
          xe,
          evalRows,
          lin.w,
          gptqQuantize(lin.w, lin.N, lin.K, format, h, { actOrder: true }),
        );
        expect(gptq, `${lin.name} ${format}: GPTQ ${gptq} vs RTN ${rtn}`).toBeLessThan(rtn);
        ratios.push(gptq / rtn);
      }
      const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
      console.log(
        `${format}: mean GPTQ/RTN output-error ratio over 35 linears ${mean.toFixed(3)} (max ${Math.max(...ratios).toFixed(3)})`,
      );
    }, 60_000);
  }
});
