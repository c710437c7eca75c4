// Resolving `<model>` arguments (path or Hugging Face id), tokenizers found beside a model, and adapters.
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import { type SafetensorsInfo, openGguf, readGgufTokenizer } from "@int21/io";
import { LoRAModel, attachPeftAdapter, decodePeftAdapter } from "@int21/lora";
import {
  type LlamaWeights,
  type LoadOptions,
  type Tokenizer,
  llamaModules,
  setLlamaModules,
} from "@int21/model-llama";
import {
  type CheckpointAdapters,
  HfTokenizer,
  type Int21AdapterMeta,
  Llama2cTokenizer,
  type LoadedModel,
  ggufTokenizerToLlama2c,
  loadLlamaAdapter,
  loadModel,
  readSentencePieceTokenizer,
} from "@int21/loaders";
import { type CliIo, CliError } from "./cli-io";
import { LOCAL_MODEL_HINT, downloadHfModel, isHfId } from "./hf-download";
import { progressBar } from "./progress";

// Adapters are stored by loaders' checkpointAdaptersOf (re-exported here: the CLI's index exports it).
export { checkpointAdaptersOf } from "@int21/loaders";

/**
 * The local path of a `<model>` argument: an existing file or directory as given; otherwise a Hugging
 * Face id (`owner/name`) is downloaded to the cache ({@link downloadHfModel}). Throws naming `spec`.
 */
export async function resolveModelPath(
  spec: string,
  io: CliIo,
  opts: { quiet?: boolean; what?: string } = {},
): Promise<string> {
  if (existsSync(spec)) return spec;
  if (isHfId(spec)) {
    io.stderr.write(`${spec}: not a local path; downloading it from Hugging Face\n`);
    return downloadHfModel(spec, io, { quiet: opts.quiet });
  }
  throw new CliError(`${opts.what ?? "model"} ${spec}: no such file or directory; ${LOCAL_MODEL_HINT}`);
}

/** A model loaded for a command: where it came from and its weights (adapters stored in it attached). */
export interface OpenedModel extends LoadedModel {
  path: string;
  /** The LoRA adapters attached from the checkpoint or `--adapter`, when any. */
  lora?: LoRAModel;
}

/**
 * Loads `spec` ({@link resolveModelPath}, then `loadModel`) with a progress bar; adapters stored in an
 * int21 checkpoint ({@link checkpointAdaptersOf}) are attached.
 */
export async function openModel(
  spec: string,
  io: CliIo,
  opts: LoadOptions & { quiet?: boolean; what?: string } = {},
): Promise<OpenedModel> {
  const path = await resolveModelPath(spec, io, opts);
  // in a log (not a terminal) small models load without a bar
  const small = !io.stderrIsTTY && statSync(path).isFile() && statSync(path).size < 64 * 2 ** 20;
  if (statSync(path).isDirectory()) refusePickleOnly(path);
  const bar = progressBar(io, `load ${basename(path)}`, { quiet: opts.quiet || small });
  let m: LoadedModel;
  try {
    m = await loadModel(path, { ...opts, onProgress: (p) => bar.update(p.done, p.total) });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  bar.finish();
  const opened: OpenedModel = { ...m, path };
  if (m.adapters) opened.lora = attachCheckpointAdapters(m.weights, m.adapters, path);
  return opened;
}

/**
 * Throws a {@link CliError} for a model directory whose weights are only PyTorch pickles
 * (`pytorch_model*.bin`, `*.pt`, `*.pth`): int21 reads safetensors, and says how to convert.
 */
export function refusePickleOnly(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  if (
    names.some(
      (n) => n.endsWith(".safetensors") || n.endsWith(".safetensors.index.json") || n.endsWith(".gguf"),
    )
  )
    return;
  const pickles = names.filter((n) => /^pytorch_model.*\.bin$/.test(n) || /\.(pt|pth)$/.test(n));
  if (pickles.length === 0) return;
  throw new CliError(
    `${dir}: holds PyTorch pickle weights (${pickles.slice(0, 3).join(", ")}${pickles.length > 3 ? ", …" : ""}) and no safetensors; ` +
      "int21 reads model.safetensors (pickles can run code, so they are never loaded): convert the folder with transformers, " +
      `AutoModelForCausalLM.from_pretrained("${dir}").save_pretrained("<out>", safe_serialization=True), and copy the tokenizer files`,
  );
}

/** The LoRA view of `weights`, reusing `existing` when given. */
export function loraModelOf(weights: LlamaWeights, existing?: LoRAModel): LoRAModel {
  return existing ?? new LoRAModel(llamaModules(weights));
}

/**
 * Stacks the PEFT adapter directory `dir` onto `weights` (in place) with model-llama's `loadLlamaAdapter`
 * (q/k rows in Hugging Face's order, as PEFT files hold them). Adapters already on `weights` stay.
 * Returns the LoRA view of the model. Throws naming `dir`.
 */
export async function attachAdapterDir(
  weights: LlamaWeights,
  dir: string,
  existing?: LoRAModel,
): Promise<LoRAModel> {
  if (!existsSync(dir)) throw new CliError(`adapter ${dir}: no such directory`);
  const taken = new Set(existing?.adapterNames() ?? []);
  let name = "adapter";
  for (let i = 1; taken.has(name); i++) name = `adapter${i}`;
  try {
    return (await loadLlamaAdapter(dir, weights, { name })).model;
  } catch (e) {
    throw new CliError(`adapter ${dir}: ${(e as Error).message}`);
  }
}

/** Attaches adapters stored by {@link checkpointAdaptersOf} to `weights`. Throws naming `file`. */
export function attachCheckpointAdapters(
  weights: LlamaWeights,
  adapters: CheckpointAdapters,
  file: string,
): LoRAModel {
  const meta = adapters.meta as Partial<Int21AdapterMeta> | undefined;
  if (!meta || !Array.isArray(meta.int21Adapters))
    throw new CliError(`${file}: holds adapters int21 cannot attach (no int21Adapters metadata)`);
  const model = new LoRAModel(llamaModules(weights));
  for (const a of meta.int21Adapters) {
    const keys = Object.keys(adapters.tensors).filter((k) => k.startsWith(a.prefix));
    const tensors: Record<string, { dtype: "F32"; shape: number[]; byteLength: number; byteOffset: number }> =
      {};
    for (const k of keys) {
      const t = adapters.tensors[k];
      tensors[k.slice(a.prefix.length)] = {
        dtype: "F32",
        shape: t.shape,
        byteLength: t.data.byteLength,
        byteOffset: 0,
      };
    }
    const info: SafetensorsInfo = { path: file, metadata: {}, tensors, names: Object.keys(tensors) };
    try {
      const peft = decodePeftAdapter(
        JSON.stringify(a.config),
        info,
        (k) => adapters.tensors[a.prefix + k].data,
        `${file} (adapter ${a.name})`,
      );
      attachPeftAdapter(model, peft, { name: a.name });
    } catch (e) {
      throw new CliError(`${file}: adapter ${a.name}: ${(e as Error).message}`);
    }
  }
  setLlamaModules(weights, model.modules);
  return model;
}

function tokenizerCandidates(dir: string, vocabSize: number): string[] {
  const names = [`tok${vocabSize}.bin`, "tokenizer.bin", "tokenizer.json", "tokenizer.model"];
  const out = names.map((n) => join(dir, n)).filter((p) => existsSync(p));
  if (out.length > 0) return out;
  try {
    return readdirSync(dir)
      .filter((n) => /^tok.*\.bin$/.test(n))
      .map((n) => join(dir, n));
  } catch {
    return [];
  }
}

/**
 * The tokenizer file for `modelPath`: `explicit` when given, else the first of `tok<vocab>.bin`,
 * `tokenizer.bin`, `tokenizer.json`, `tokenizer.model` (then any `tok*.bin`) inside a model directory or
 * beside a model file.
 */
export function findTokenizer(modelPath: string, vocabSize: number, explicit?: string): string {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) throw new CliError(`tokenizer ${explicit}: no such file`);
    return explicit;
  }
  const dir = statSync(modelPath).isDirectory() ? modelPath : dirname(modelPath);
  const found = tokenizerCandidates(dir, vocabSize);
  if (found.length === 0)
    throw new CliError(
      `${modelPath}: no tokenizer beside the model (looked for tok${vocabSize}.bin, tokenizer.bin, tokenizer.json, tokenizer.model in ${dir}); pass --tokenizer <file>`,
    );
  return found[0];
}

/**
 * Loads a llama2.c `tokenizer.bin`, a Hugging Face `tokenizer.json` (with `tokenizer_config.json` and
 * `chat_template.jinja` beside it) or a Llama-2-style SentencePiece `tokenizer.model` for a model of
 * `vocabSize` tokens. A `tokenizer.json` or `tokenizer.model` may have fewer tokens than the model has rows
 * (a padded vocabulary: generation masks the padding), never more.
 */
export function loadTokenizer(path: string, vocabSize: number): Tokenizer {
  try {
    if (extname(path) === ".model") {
      const tok = readSentencePieceTokenizer(path);
      if (tok.vocabSize > vocabSize)
        throw new Error(`has ${tok.vocabSize} tokens, more than the model's vocabulary of ${vocabSize}`);
      return tok;
    }
    if (extname(path) === ".json") {
      const tok = HfTokenizer.fromFile(path);
      if (tok.vocabSize > vocabSize)
        throw new Error(`has ${tok.vocabSize} tokens, more than the model's vocabulary of ${vocabSize}`);
      return tok;
    }
    return Llama2cTokenizer.fromFile(path, vocabSize);
  } catch (e) {
    const msg = (e as Error).message;
    throw new CliError(msg.includes(path) ? msg : `tokenizer ${path}: ${msg}`);
  }
}

/**
 * The tokenizer stored in a GGUF model's metadata (`tokenizer.ggml.*`): a SentencePiece ("llama")
 * vocabulary as a llama2.c tokenizer, a byte-level BPE ("gpt2") one as `HfTokenizer.fromGguf`; either adds
 * BOS / EOS as `tokenizer.ggml.add_bos_token` / `add_eos_token` say.
 */
export async function ggufTokenizer(path: string, vocabSize: number): Promise<Tokenizer> {
  let tok: Tokenizer;
  try {
    const g = await openGguf(path);
    await g.close();
    const stored = readGgufTokenizer(g.metadata, path);
    if (stored.model === "gpt2") tok = HfTokenizer.fromGguf(stored, path);
    else {
      const llama = ggufTokenizerToLlama2c(stored, path);
      // llama.cpp's defaults when the file does not say: BOS for SentencePiece vocabularies only
      llama.addBos = stored.addBos ?? stored.model === "llama";
      llama.addEos = stored.addEos ?? false;
      tok = llama;
    }
  } catch (e) {
    throw new CliError(`${path}: ${(e as Error).message}; pass --tokenizer <file>`);
  }
  return checkSize(tok, path, vocabSize);
}

function checkSize(tok: Tokenizer, path: string, vocabSize: number): Tokenizer {
  if (tok.vocabSize > vocabSize)
    throw new CliError(
      `${path}: its tokenizer has ${tok.vocabSize} tokens, more than the model's vocabulary of ${vocabSize}`,
    );
  return tok;
}

/**
 * The tokenizer of a model: `explicit` when given; else one found beside the model
 * ({@link findTokenizer}); else, for a GGUF model, the vocabulary stored in the file.
 */
export async function openTokenizer(
  modelPath: string,
  vocabSize: number,
  explicit?: string,
): Promise<Tokenizer> {
  let path: string;
  try {
    path = findTokenizer(modelPath, vocabSize, explicit);
  } catch (e) {
    if (explicit === undefined && /\.gguf$/i.test(modelPath)) return ggufTokenizer(modelPath, vocabSize);
    throw e;
  }
  return loadTokenizer(path, vocabSize);
}
