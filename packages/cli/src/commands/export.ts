// `int21 export gguf|hf|peft <model> -o <path> [--adapter <dir>] [--merge]`: artifacts for llama.cpp,
// Ollama, transformers and PEFT, through model-llama's exportModel.
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { HfTokenizer, Llama2cTokenizer, exportModel } from "@int21/model-llama";
import { Command, Option } from "commander";
import { type CliIo, EXIT, UsageError } from "../cli-io";
import { runProgram, writeJson } from "../command";
import { attachAdapterDir, ggufTokenizer, loadTokenizer, openModel } from "../model-loading";

const TARGETS = ["gguf", "hf", "peft"] as const;
const GGUF_TYPES = ["F32", "F16", "Q8_0", "Q4_0", "Q4_1"] as const;
const HF_DTYPES = ["F32", "F16", "BF16"] as const;
/** Files of a Hugging Face folder that `export hf` copies beside the weights. */
const HF_SIDE_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "tokenizer.model",
  "special_tokens_map.json",
  "generation_config.json",
  "chat_template.jinja",
];

/** The options of `int21 export`. */
export function exportProgram(): Command {
  return new Command("export")
    .description(
      "write a model (and its adapters) for a peer: gguf (llama.cpp, Ollama), hf (transformers), peft (adapters)",
    )
    .addArgument(
      new Command().createArgument("<target>", "gguf, hf or peft").choices(TARGETS as unknown as string[]),
    )
    .argument("<model>", "int21 checkpoint, llama2.c .bin, GGUF file or Hugging Face directory")
    .requiredOption(
      "-o, --output <path>",
      "gguf: the .gguf file (adapters and a Modelfile go beside it); hf, peft: the folder",
    )
    .option("--adapter <dir>", "a PEFT LoRA adapter directory to attach first (stacked on stored adapters)")
    .option(
      "--merge",
      "fold the adapters into the weights (in float; a packed base is dequantized) instead of writing adapter files",
      false,
    )
    .option(
      "--allow-lossy-merge",
      "gguf --merge into Q8_0/Q4_0/Q4_1: write it even where the rounding error exceeds the merged correction",
      false,
    )
    .addOption(
      new Option("--type <type>", "gguf: type of the 2-D tensors").choices(GGUF_TYPES).default("F16"),
    )
    .addOption(
      new Option("--embedding-type <type>", "gguf: type of token_embd (a quantized table costs accuracy)")
        .choices(GGUF_TYPES)
        .default("F16"),
    )
    .addOption(
      new Option("--lora-type <type>", "gguf: type of the LoRA GGUF tensors")
        .choices(["F32", "F16"])
        .default("F16"),
    )
    .addOption(new Option("--dtype <dtype>", "hf: tensor dtype").choices(HF_DTYPES).default("F32"))
    .addOption(
      new Option(
        "--adapter-dtype <dtype>",
        "hf, peft: dtype of the PEFT adapter tensors (F16/BF16 halve them)",
      )
        .choices(HF_DTYPES)
        .default("F32"),
    )
    .option(
      "--base-model <id>",
      "the adapters' base_model_name_or_path (default: the exported folder for hf, the adapter's own for peft)",
    )
    .option(
      "--tokenizer <file>",
      "gguf: the tokenizer to embed (default: tok<vocab>.bin, tokenizer.bin, tokenizer.model or tokenizer.json beside the model, or the GGUF's own)",
    )
    .option("--json", "print the result as JSON", false)
    .option("--quiet", "no progress bars", false);
}

interface ExportOpts {
  output: string;
  adapter?: string;
  merge: boolean;
  allowLossyMerge: boolean;
  type: (typeof GGUF_TYPES)[number];
  embeddingType: (typeof GGUF_TYPES)[number];
  loraType: "F32" | "F16";
  dtype: (typeof HF_DTYPES)[number];
  adapterDtype: (typeof HF_DTYPES)[number];
  baseModel?: string;
  tokenizer?: string;
  json: boolean;
  quiet: boolean;
}

/** `int21 export`: prints each file written, and for gguf the llama.cpp command that runs it. */
export function exportCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runProgram(exportProgram(), argv, io, async ([target, model], opts) => {
    const o = opts as unknown as ExportOpts;
    const to = target as (typeof TARGETS)[number];
    if (to === "peft" && o.merge)
      throw new UsageError("--merge does not apply to export peft (it writes adapters)");
    const m = await openModel(model as string, io, { quiet: o.quiet });
    let lora = m.lora;
    if (o.adapter !== undefined) lora = await attachAdapterDir(m.weights, o.adapter, lora);
    const notes: string[] = [];
    let tokenizer: Llama2cTokenizer | HfTokenizer | undefined;
    let copyFiles: string[] = [];
    if (to === "gguf") {
      const V = m.weights.config.vocabSize;
      const dir = statSync(m.path).isDirectory() ? m.path : dirname(m.path);
      // a SentencePiece tokenizer.model before tokenizer.json: llama.cpp's `llama` vocabulary keeps its scores
      const path =
        o.tokenizer ??
        [`tok${V}.bin`, "tokenizer.bin", "tokenizer.model", "tokenizer.json"]
          .map((n) => join(dir, n))
          .find((p) => existsSync(p));
      try {
        const tok =
          path !== undefined
            ? loadTokenizer(path, V)
            : /\.gguf$/i.test(m.path)
              ? await ggufTokenizer(m.path, V)
              : undefined;
        if (tok instanceof Llama2cTokenizer || tok instanceof HfTokenizer) tokenizer = tok;
        else
          notes.push(
            `the GGUF holds no tokenizer (none found beside ${m.path}; pass --tokenizer): llama.cpp cannot load it without one`,
          );
      } catch (e) {
        if (o.tokenizer !== undefined) throw e;
        notes.push(`the GGUF holds no tokenizer: ${(e as Error).message}`);
      }
    }
    if (to === "hf") {
      const dir = statSync(m.path).isDirectory() ? m.path : dirname(m.path);
      copyFiles = HF_SIDE_FILES.map((f) => join(dir, f)).filter((p) => existsSync(p));
      if (!copyFiles.some((p) => /tokenizer\.(json|model)$/.test(p)))
        notes.push(
          `no tokenizer.json or tokenizer.model beside ${m.path}: the folder has weights and config only; add the tokenizer files before AutoTokenizer or convert_hf_to_gguf.py can read it`,
        );
    }
    const report = await exportModel(m.weights, {
      to,
      out: o.output,
      ...(lora !== undefined ? { lora } : {}),
      merge: o.merge,
      allowLossyMerge: o.allowLossyMerge,
      ggufType: o.type,
      ggufEmbeddingType: o.embeddingType,
      ggufLoraType: o.loraType,
      dtype: o.dtype,
      adapterDtype: o.adapterDtype,
      copyFiles,
      ...(tokenizer !== undefined ? { tokenizer } : {}),
      ...(o.baseModel !== undefined ? { baseModel: o.baseModel } : {}),
    });
    if (o.json) writeJson(io, { model: m.path, ...report, notes });
    else {
      for (const f of report.files) io.stdout.write(`wrote ${f.path} (${f.what})\n`);
      if (report.merged.length > 0) io.stdout.write(`merged adapters: ${report.merged.join(", ")}\n`);
      if (report.llamaCppCommand !== undefined) io.stdout.write(`run it: ${report.llamaCppCommand}\n`);
      for (const n of notes) io.stderr.write(`note: ${n}\n`);
    }
    return EXIT.ok;
  });
}
