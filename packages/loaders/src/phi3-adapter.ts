// PEFT adapters of Phi-3 in Hugging Face's layout: int21 splits Phi-3's fused `qkv_proj` / `gate_up_proj` on
// load, so its adapters sit on q/k/v and gate/up; Hugging Face has only the fused modules. An adapter on some
// parts of a fused module is written as ONE LoRA on the fused module whose rank is the sum of the parts' ranks:
// A stacks the parts' A rows, B is block-diagonal (each part's B, times its scaling, in its rows and rank
// columns; parts without an adapter are zero rows), and the fused alpha equals the fused rank (scaling 1).
// Read back, a fused LoRA becomes one adapter per part sharing A, which computes the same function.
import type { SafetensorsWriteTensor } from "@int21/io";
import type { PeftAdapter, PeftLoraConfig } from "@int21/lora";
import { headSize, kvDim, type LlamaWeights } from "@int21/model-llama";

const KEY = (module: string, which: "A" | "B") => `base_model.model.${module}.lora_${which}.weight`;

/** The fused modules of a Phi-3 layer and their parts, in row order. */
function groups(weights: LlamaWeights, layer: number) {
  const c = weights.config;
  const q = c.nHeads * headSize(c);
  const kv = kvDim(c);
  const p = `model.layers.${layer}`;
  return [
    {
      fused: `${p}.self_attn.qkv_proj`,
      parts: [
        { module: `${p}.self_attn.q_proj`, rows: q },
        { module: `${p}.self_attn.k_proj`, rows: kv },
        { module: `${p}.self_attn.v_proj`, rows: kv },
      ],
    },
    {
      fused: `${p}.mlp.gate_up_proj`,
      parts: [
        { module: `${p}.mlp.gate_proj`, rows: c.hiddenDim },
        { module: `${p}.mlp.up_proj`, rows: c.hiddenDim },
      ],
    },
  ];
}

const SPLIT_TARGETS: Record<string, string[]> = {
  qkv_proj: ["q_proj", "k_proj", "v_proj"],
  gate_up_proj: ["gate_proj", "up_proj"],
};

function short(module: string): string {
  return module.slice(module.lastIndexOf(".") + 1);
}

/**
 * Rewrites PEFT tensors (Hugging Face row order already) and config of a Phi-3 model from split q/k/v and
 * gate/up modules to fused `qkv_proj` / `gate_up_proj` LoRAs (see the file comment). `scaling(module)` is
 * the adapter's `alpha / r` on that module. In place.
 */
export function fusePhi3Adapter(
  weights: LlamaWeights,
  tensors: Record<string, SafetensorsWriteTensor>,
  config: PeftLoraConfig,
  scaling: (module: string) => number,
): void {
  for (let l = 0; l < weights.config.nLayers; l++) {
    for (const g of groups(weights, l)) {
      const present = g.parts.filter((p) => tensors[KEY(p.module, "A")] !== undefined);
      if (present.length === 0) continue;
      const inF = weights.config.dim;
      const dtype = tensors[KEY(present[0].module, "A")].dtype;
      const R = present.reduce((s, p) => s + (tensors[KEY(p.module, "A")].shape[0] as number), 0);
      const rows = g.parts.reduce((s, p) => s + p.rows, 0);
      const A = new Float32Array(R * inF);
      const B = new Float32Array(rows * R);
      let col = 0;
      let row = 0;
      for (const p of g.parts) {
        const a = tensors[KEY(p.module, "A")];
        if (a !== undefined) {
          const b = tensors[KEY(p.module, "B")];
          const r = a.shape[0] as number;
          A.set(a.data as Float32Array, col * inF);
          const s = scaling(p.module);
          const bd = b.data as Float32Array;
          for (let i = 0; i < p.rows; i++)
            for (let j = 0; j < r; j++) B[(row + i) * R + col + j] = s * bd[i * r + j];
          delete tensors[KEY(p.module, "A")];
          delete tensors[KEY(p.module, "B")];
          delete config.rank_pattern[p.module];
          delete config.alpha_pattern[p.module];
          col += r;
        }
        row += p.rows;
      }
      tensors[KEY(g.fused, "A")] = { dtype, shape: [R, inF], data: A };
      tensors[KEY(g.fused, "B")] = { dtype, shape: [rows, R], data: B };
      config.rank_pattern[g.fused] = R;
      config.alpha_pattern[g.fused] = R;
    }
  }
  if (Array.isArray(config.target_modules)) {
    const t = new Set<string>();
    for (const m of config.target_modules)
      t.add(
        SPLIT_TARGETS.qkv_proj.includes(m)
          ? "qkv_proj"
          : SPLIT_TARGETS.gate_up_proj.includes(m)
            ? "gate_up_proj"
            : m,
      );
    config.target_modules = [...t];
  }
}

/**
 * The inverse of {@link fusePhi3Adapter} on a read adapter: each fused `qkv_proj` / `gate_up_proj` LoRA becomes
 * one LoRA per part (same A and rank, the part's rows of B), with the fused alpha; target_modules and the
 * patterns are renamed to the parts. In place.
 */
export function splitPhi3Adapter(weights: LlamaWeights, adapter: PeftAdapter): void {
  const { config } = adapter;
  for (let l = 0; l < weights.config.nLayers; l++) {
    for (const g of groups(weights, l)) {
      const m = adapter.modules.get(g.fused);
      if (m === undefined) continue;
      const rows = g.parts.reduce((s, p) => s + p.rows, 0);
      if (m.outFeatures !== rows)
        throw new Error(`${g.fused}: lora_B has ${m.outFeatures} rows, the fused module has ${rows}`);
      let row = 0;
      for (const p of g.parts) {
        adapter.modules.set(p.module, {
          r: m.r,
          inFeatures: m.inFeatures,
          outFeatures: p.rows,
          loraA: m.loraA,
          loraB: m.loraB.slice(row * m.r, (row + p.rows) * m.r),
        });
        for (const pat of [config.rank_pattern, config.alpha_pattern])
          if (pat[g.fused] !== undefined) pat[p.module] = pat[g.fused];
        row += p.rows;
      }
      adapter.modules.delete(g.fused);
      delete config.rank_pattern[g.fused];
      delete config.alpha_pattern[g.fused];
    }
  }
  if (Array.isArray(config.target_modules))
    config.target_modules = config.target_modules.flatMap((t) => SPLIT_TARGETS[short(t)] ?? [t]);
}
