// What the browser build gets for `fs`, `fs/promises` and `path` (vite.config.ts aliases them here):
// @int21/model-llama and friends import them for their file-path entry points. Reads are served from the picked
// files (blob-files.ts), writes go to an in-memory scratch folder (blob-files.ts: the PEFT adapter is written by
// model-llama's saveLlamaAdapter and read back); the rest are never reached — if one is, it says so.
import {
  accessBlobFile,
  joinPath,
  mkdirScratch,
  openBlobFile,
  openScratchFile,
  readBlobFile,
  renameScratch,
  rmScratch,
  statScratch,
} from "./blob-files";

function unavailable(name: string): () => never {
  return () => {
    throw new Error(
      `${name} is not available in the browser (the studio stubs node:fs, node:fs/promises and node:path)`,
    );
  };
}

export const readFileSync = unavailable("fs.readFileSync");
export const existsSync = unavailable("fs.existsSync");
export const openSync = unavailable("fs.openSync");
export const fstatSync = unavailable("fs.fstatSync");
export const closeSync = unavailable("fs.closeSync");
export const readSync = unavailable("fs.readSync");
/** Joins the paths of picked files (blob-files.ts). */
export const join = joinPath;
export const dirname = unavailable("path.dirname");

function unavailableAsync(name: string): () => Promise<never> {
  return async () => unavailable(name)();
}

// fs/promises, imported dynamically by the file-writing and file-reading helpers of @int21/io,
// @int21/lora and @int21/model-llama.
export const access = (path: string) => accessBlobFile(path);
/** Folders of the in-memory scratch area (blob-files.ts), where the libraries' file writers write. */
export const mkdir = (path: string) => mkdirScratch(path);
/** Serves files picked in the page and registered by the worker (see blob-files.ts): GGUFs stream from disk; `w`/`wx`: a scratch file. */
export const open = (path: string, flags?: string) =>
  flags === "w" || flags === "wx" ? openScratchFile(path, flags) : openBlobFile(path, flags);
export const readFile = (path: string, encoding?: unknown) => readBlobFile(path, encoding);
export const readdir = unavailableAsync("fs/promises.readdir");
export const rename = (from: string, to: string) => renameScratch(from, to);
export const rm = (path: string, opts?: { force?: boolean }) => rmScratch(path, opts);
export const stat = (path: string) => statScratch(path);
export const writeFile = unavailableAsync("fs/promises.writeFile");

// The rest of what the libraries name from fs, path and crypto (file-path helpers only).
export const statSync = unavailable("fs.statSync");
export const readdirSync = unavailable("fs.readdirSync");
export const mkdirSync = unavailable("fs.mkdirSync");
export const createReadStream = unavailable("fs.createReadStream");
export const basename = unavailable("path.basename");
export const extname = unavailable("path.extname");
export const resolve = unavailable("path.resolve");
export const createHash = unavailable("crypto.createHash");
