import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SHARED, sharedPath } from "@int21/shared-data";
import { defineConfig, type Plugin } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

/** Shared-memory wasm threads need a cross-origin isolated page (COOP + COEP). */
const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

/**
 * Copies the default model (stories260K + tok512) and default texts (TinyStories validation stories: the
 * first 40 for calibration / LREC / training, 10 held-out ones for perplexity) from the shared data folder
 * into the served public dir (gitignored, never committed), for dev, build and preview alike.
 */
function sharedModels(): Plugin {
  return {
    name: "int21-studio-shared-models",
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
        // read + write (not copyFileSync): the shared files are read-only and the copies must stay replaceable
        if (!existsSync(to) || statSync(to).size !== statSync(from).size)
          writeFileSync(to, readFileSync(from));
      }
      const stories = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8").split("<|endoftext|>");
      writeFileSync(
        join(dir, "train.txt"),
        stories
          .slice(0, 40)
          .map((s) => s.trim())
          .join("\n<|endoftext|>\n"),
      );
      writeFileSync(
        join(dir, "eval.txt"),
        stories
          .slice(900, 910)
          .map((s) => s.trim())
          .join("\n"),
      );
    },
  };
}

export default defineConfig({
  root: here,
  base: "./",
  publicDir: join(here, "public"),
  plugins: [sharedModels()],
  resolve: {
    // The libraries import node:fs / path (and lora crypto) for their file-path entry points: all go to a stub.
    alias: [
      {
        find: /^(node:)?(fs|fs\/promises|path|crypto)$/,
        replacement: join(here, "src/node-builtins-stub.ts"),
      },
    ],
  },
  // @int21/io's atomic writer names its temporary files after process.pid (the PEFT export writes through it into
  // the stub's in-memory scratch folder); a browser has no process object.
  define: { "process.pid": "0" },
  server: { headers: isolation },
  preview: { headers: isolation },
  build: {
    target: "es2022",
    outDir: join(here, "dist"),
    emptyOutDir: true,
    chunkSizeWarningLimit: 4096,
    rolldownOptions: {
      onwarn(warning, warn) {
        if (warning.code === "INEFFECTIVE_DYNAMIC_IMPORT" && warning.message.includes("node-builtins-stub"))
          return;
        warn(warning);
      },
    },
  },
  worker: { format: "es" },
});
