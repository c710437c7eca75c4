import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SHARED, sharedPath } from "@int21/shared-data";
import { defineConfig, type Plugin } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

/** Shared-memory wasm threads need a cross-origin isolated page. */
const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

/** Stories (separated by `<|endoftext|>`) copied as the default LoRA training text. */
const TRAIN_STORIES = 20;

/**
 * Copies the default model, tokenizer and a few TinyStories validation stories from the shared data
 * folder into the served public dir (gitignored; never committed), for dev, build and preview alike.
 */
function sharedModels(): Plugin {
  return {
    name: "int21-shared-models",
    configResolved(config) {
      if (!config.publicDir) return;
      const dir = join(config.publicDir, "models");
      mkdirSync(dir, { recursive: true });
      for (const [key, name] of [
        ["stories260K", "stories260K.bin"],
        ["tok512", "tok512.bin"],
      ] as const) {
        const from = sharedPath(SHARED[key]);
        const to = join(dir, name);
        // Read + write (not copyFileSync): the shared files are read-only and the copies must stay replaceable.
        if (!existsSync(to) || statSync(to).size !== statSync(from).size)
          writeFileSync(to, readFileSync(from));
      }
      const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
      writeFileSync(join(dir, "train.txt"), stories.slice(0, TRAIN_STORIES).join("<|endoftext|>"));
    },
  };
}

export default defineConfig({
  root: here,
  publicDir: join(here, "public"),
  plugins: [sharedModels()],
  resolve: {
    // @int21/model-llama imports node:fs / node:path at top level (tsup writes them as "fs" / "path"), and
    // io / lora / model-llama import fs/promises dynamically in their file helpers: all go to a stub.
    alias: [
      { find: /^(node:)?(fs|fs\/promises|path)$/, replacement: join(here, "src/node-builtins-stub.ts") },
    ],
  },
  server: { headers: isolation },
  preview: { headers: isolation },
  build: {
    target: "es2022",
    outDir: join(here, "dist"),
    emptyOutDir: true,
    rolldownOptions: {
      onwarn(warning, warn) {
        // lora / model-llama import fs both statically and dynamically; both land on the stub, as intended.
        if (warning.code === "INEFFECTIVE_DYNAMIC_IMPORT" && warning.message.includes("node-builtins-stub"))
          return;
        warn(warning);
      },
    },
  },
  worker: { format: "es" },
});
