// A Hugging Face folder read tensor by tensor through ByteSources (Blob slices in the worker), so the safetensors
// files are never held whole. model-llama reads a folder by path (`openHfReader`) or from whole files in memory
// (`loadHfBytes`); its reader over a generic source is internal, so this is the same reading for the browser, built
// from the library's exported pieces: `hfConfigToLlama`, `llamaTensorSpecs`, `hfTensorLocation`,
// `unpermuteHfRows`, `checkTensorCount`, and @int21/io's header parser and half-float decoders. Phi-3's fused
// tensors are not handled here (the caller reads that family whole through `loadHfBytes`).
import {
  bf16ToF32,
  f16ToF32,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  type SafetensorsHeader,
} from "@int21/io";
import { headSize, type LlamaConfig, llamaTensorSpecs, type TensorReader } from "@int21/model-llama";
import {
  type ByteSource,
  checkTensorCount,
  hfConfigToLlama,
  hfTensorLocation,
  unpermuteHfRows,
} from "@int21/loaders";

/** The whole (small) file as text. */
export function sourceText(src: ByteSource): string {
  return new TextDecoder().decode(src.read(0, src.size));
}

function parseJson(src: ByteSource, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(sourceText(src));
  } catch (e) {
    throw new Error(`${where}: invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new Error(`${where}: must be a JSON object`);
  return v as Record<string, unknown>;
}

/** The config of a folder's `config.json`. */
export function hfStreamConfig(files: Record<string, ByteSource>, label: string): LlamaConfig {
  const cfg = files["config.json"];
  if (!cfg) throw new Error(`${label}: no config.json (not a Hugging Face model directory)`);
  return hfConfigToLlama(parseJson(cfg, `${label}/config.json`), `${label}/config.json`);
}

/** Whether {@link openHfStream} reads this family (not Phi-3's fused q|k|v and gate|up). */
export function hfStreamable(config: LlamaConfig): boolean {
  return config.family !== "phi3";
}

interface Shard {
  rel: string;
  src: ByteSource;
  header: SafetensorsHeader;
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);

/**
 * Opens a Hugging Face folder given as ByteSources by file name (`config.json`, `model.safetensors` or the index +
 * shards): validates every shard header (names, dtypes, shapes against the config, offsets against the file size)
 * and that no tensor is missing or unexpected, before any weight is read; then a {@link TensorReader} that reads one
 * tensor's byte range at a time, decodes F32/F16/BF16 and un-permutes q/k rows to int21's interleaved RoPE order.
 */
export function openHfStream(files: Record<string, ByteSource>, label: string): TensorReader {
  const config = hfStreamConfig(files, label);
  if (!hfStreamable(config))
    throw new Error(`${label}: ${config.family} checkpoints are read whole (fused tensors), not streamed`);
  const weightMap = new Map<string, string>();
  let shardFiles: string[];
  const indexSrc = files["model.safetensors.index.json"];
  if (indexSrc) {
    const index = parseJson(indexSrc, `${label}/model.safetensors.index.json`) as { weight_map?: unknown };
    if (!index.weight_map || typeof index.weight_map !== "object")
      throw new Error(`${label}/model.safetensors.index.json: no weight_map`);
    for (const [t, f] of Object.entries(index.weight_map as Record<string, unknown>)) {
      if (typeof f !== "string")
        throw new Error(`${label}/model.safetensors.index.json: weight_map["${t}"] is not a file name`);
      weightMap.set(t, f);
    }
    shardFiles = [...new Set(weightMap.values())].sort();
  } else if (files["model.safetensors"]) shardFiles = ["model.safetensors"];
  else throw new Error(`${label}: neither model.safetensors nor model.safetensors.index.json`);

  const shards: Shard[] = shardFiles.map((rel) => {
    const src = files[rel];
    if (!src) throw new Error(`${label}: shard ${rel} is missing (pick the whole folder)`);
    const where = `${label}/${rel}`;
    if (src.size < 8) throw new Error(`${where}: ${src.size} bytes, too short for a safetensors header`);
    const n = readSafetensorsHeaderLength(src.read(0, 8), src.size, where);
    return { rel, src, header: parseSafetensorsHeader(src.read(8, n), src.size, where) };
  });
  const byName = new Map<string, Shard>();
  for (const s of shards) {
    for (const t of s.header.names) {
      if (indexSrc && weightMap.get(t) !== s.rel) {
        if (weightMap.get(t) === undefined && !t.endsWith(".rotary_emb.inv_freq"))
          throw new Error(`${label}/${s.rel}: tensor ${t} is not listed in the index's weight_map`);
        continue;
      }
      byName.set(t, s);
    }
  }
  for (const [t, f] of weightMap)
    if (!byName.has(t))
      throw new Error(`${label}: tensor ${t} is listed in the index under ${f} but ${f} does not hold it`);
  checkTensorCount(config, byName.size, label);

  const wanted = new Map<string, string>(); // hf name → int21 name
  for (const spec of llamaTensorSpecs(config)) {
    const loc = hfTensorLocation(spec.name, config);
    const s = byName.get(loc.tensor);
    if (!s)
      throw new Error(`${label}: missing tensor ${loc.tensor} (${spec.name} [${spec.shape.join("×")}])`);
    const info = s.header.tensors[loc.tensor];
    if (!FLOAT_DTYPES.has(info.dtype))
      throw new Error(
        `${label}/${s.rel}: tensor ${loc.tensor} has dtype ${info.dtype}; supported: F32, F16, BF16`,
      );
    if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i]))
      throw new Error(
        `${label}/${s.rel}: tensor ${loc.tensor} has shape [${info.shape.join("×")}], the config needs [${spec.shape.join("×")}]`,
      );
    wanted.set(loc.tensor, spec.name);
  }
  for (const [t, s] of byName) {
    if (wanted.has(t) || t.endsWith(".rotary_emb.inv_freq")) continue;
    if (t === "lm_head.weight" && config.sharedClassifier) continue;
    throw new Error(`${label}/${s.rel}: unexpected tensor ${t} for a ${config.family ?? "llama"} model`);
  }
  const order: string[] = [];
  const where = new Map<string, [Shard, string]>(); // int21 name → shard, hf name
  for (const s of shards)
    for (const t of s.header.names) {
      const name = wanted.get(t);
      if (name === undefined || byName.get(t) !== s) continue;
      order.push(name);
      where.set(name, [s, t]);
    }
  const hs = headSize(config);
  const offset = config.normOffset ?? 0;
  return {
    config,
    source: label,
    order,
    fileOf: (name) => {
      const w = where.get(name);
      return w ? `${label}/${w[0].rel}` : label;
    },
    async read(name) {
      const w = where.get(name);
      if (!w) throw new Error(`${label}: no tensor ${name} in this model`);
      const [s, t] = w;
      const info = s.header.tensors[t];
      const raw = s.src.read(info.byteOffset, info.byteLength);
      const buf = raw.byteOffset % 4 === 0 ? raw : raw.slice();
      let data: Float32Array;
      if (info.dtype === "F32")
        data = new Float32Array(buf.buffer, buf.byteOffset, info.byteLength / 4).slice();
      else {
        const half = new Uint16Array(buf.buffer, buf.byteOffset, info.byteLength / 2);
        const out = new Float32Array(half.length);
        data = info.dtype === "F16" ? f16ToF32(half, out) : bf16ToF32(half, out);
      }
      const field = name.slice(name.lastIndexOf(".") + 1);
      if (field === "wq" || field === "wk") {
        const rows = data.length / config.dim;
        data = unpermuteHfRows(data, rows / hs, rows, config.dim);
      } else if (field === "bq" || field === "bk" || field === "qNorm" || field === "kNorm") {
        data = unpermuteHfRows(data, data.length / hs, data.length, 1);
      }
      if (offset !== 0 && /^(finalNorm|attnNorm|ffnNorm|postAttnNorm|postFfnNorm|qNorm|kNorm)$/.test(field))
        for (let i = 0; i < data.length; i++) data[i] += offset;
      return data;
    },
    async close() {
      for (const s of shards) s.src.close();
    },
  };
}
