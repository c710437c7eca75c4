// What the browser build gets for `fs` and `path` (vite.config.ts aliases them here). Some modules of
// @int21/model-llama import them at top level (tokenizer.ts, load-source.ts, hf-tokenizer.ts) for their
// file-path entry points; the page only calls the byte-array ones, so these are never reached. If one
// is, it says so instead of failing somewhere obscure.
function unavailable(name: string): () => never {
  return () => {
    throw new Error(`${name} is not available in the browser (examples/browser stubs node:fs and node:path)`);
  };
}

export const readFileSync = unavailable("fs.readFileSync");
export const existsSync = unavailable("fs.existsSync");
export const openSync = unavailable("fs.openSync");
export const fstatSync = unavailable("fs.fstatSync");
export const closeSync = unavailable("fs.closeSync");
export const readSync = unavailable("fs.readSync");
export const join = unavailable("path.join");
export const dirname = unavailable("path.dirname");
