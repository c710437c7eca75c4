// A synthetic llama GGUF in llama.cpp's Q4_K_M mix (Q4_K for token_embd, q/k/o and gate/up; Q6_K for
// attn_v, ffn_down and output; F32 norms), its blocks random bytes with sane f16 super-block scales, written
// tensor by tensor for memory tests of the packed GGUF load. Not a model anyone would run for its text.
import { GGML_TYPES, type GgufWriteTensor, writeGguf } from "@int21/io";
import { llamaToGgufMetadata } from "../gguf-model";
import type { LlamaConfig } from "@int21/model-llama";

/** Offsets of the f16 `d` (and `dmin`) fields inside a Q4_K / Q6_K block. */
const SCALE_AT: Record<"Q4_K" | "Q6_K", number[]> = { Q4_K: [0, 2], Q6_K: [208] };

/** Random blocks of `type` for `count` weights: d ≈ 2^-9 (dmin ≈ 2^-15), everything else random. */
function blocks(type: "Q4_K" | "Q6_K", count: number, seed: number): Uint8Array {
  const t = GGML_TYPES[type];
  const raw = new Uint8Array((count / 256) * t.blockBytes);
  const words = new Uint32Array(raw.buffer, 0, raw.length >> 2);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s >>> 0;
  }
  const [d, dmin] = [0x1800, 0x0c00];
  const at = SCALE_AT[type];
  for (let o = 0; o < raw.length; o += t.blockBytes) {
    at.forEach((a, i) => {
      const h = i === 0 ? d : dmin;
      raw[o + a] = h & 255;
      raw[o + a + 1] = h >> 8;
    });
  }
  return raw;
}

/**
 * Writes a `config`-shaped llama GGUF in the Q4_K_M mix to `path` (`dim`, `hiddenDim` multiples of 256;
 * `sharedClassifier` false: an `output.weight` in Q6_K).
 */
export async function writeSyntheticQ4KM(path: string, config: LlamaConfig): Promise<void> {
  const { dim, hiddenDim, nLayers, vocabSize } = config;
  const hs = dim / config.nHeads;
  const kv = config.nKvHeads * hs;
  const ones = new Float32Array(dim).fill(1);
  let seed = 1;
  const q = (name: string, type: "Q4_K" | "Q6_K", shape: [number, number]): GgufWriteTensor => ({
    name,
    type,
    shape,
    raw: blocks(type, shape[0] * shape[1], seed++ * 2654435761),
  });
  const tensors: GgufWriteTensor[] = [
    q("token_embd.weight", "Q4_K", [vocabSize, dim]),
    { name: "output_norm.weight", type: "F32", shape: [dim], data: ones },
    q("output.weight", "Q6_K", [vocabSize, dim]),
  ];
  for (let l = 0; l < nLayers; l++) {
    tensors.push(
      { name: `blk.${l}.attn_norm.weight`, type: "F32", shape: [dim], data: ones },
      { name: `blk.${l}.ffn_norm.weight`, type: "F32", shape: [dim], data: ones },
      q(`blk.${l}.attn_q.weight`, "Q4_K", [dim, dim]),
      q(`blk.${l}.attn_k.weight`, "Q4_K", [kv, dim]),
      q(`blk.${l}.attn_v.weight`, "Q6_K", [kv, dim]),
      q(`blk.${l}.attn_output.weight`, "Q4_K", [dim, dim]),
      q(`blk.${l}.ffn_gate.weight`, "Q4_K", [hiddenDim, dim]),
      q(`blk.${l}.ffn_down.weight`, "Q6_K", [dim, hiddenDim]),
      q(`blk.${l}.ffn_up.weight`, "Q4_K", [hiddenDim, dim]),
    );
  }
  await writeGguf(path, { metadata: llamaToGgufMetadata(config, { name: "synthetic Q4_K_M" }), tensors });
}
