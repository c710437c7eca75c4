// Downloads a Hugging Face model (config, tokenizer, safetensors weights) into a local cache.
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { FileWriteError, writeFileAtomic, writeFileAtomicStream } from "@int21/io";
import { type CliIo, CliError } from "./cli-io";
import { formatBytes } from "./format-table";
import { progressBar } from "./progress";

/** How to pass a local model instead; part of every download failure message. */
export const LOCAL_MODEL_HINT =
  "pass a local path instead: a llama2.c .bin file, a Hugging Face model directory (config.json + *.safetensors + tokenizer.json), or an int21 checkpoint";

/** True when `spec` reads as a Hugging Face repository id (`owner/name`) rather than a path. */
export function isHfId(spec: string): boolean {
  return (
    /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(spec) && !spec.startsWith(".") && !spec.includes("..")
  );
}

/** The cache folder: `INT21_CACHE`, else `~/.cache/int21`. */
export function cacheDir(io: CliIo): string {
  return io.env?.INT21_CACHE ?? join(homedir(), ".cache", "int21");
}

/** Options of {@link downloadHfModel}. */
export interface HfDownloadOptions {
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  quiet?: boolean;
}

const COMPLETE = ".int21-complete";

/**
 * Downloads `config.json`, the tokenizer (`tokenizer.json`, `tokenizer.model` when present) and the
 * safetensors weights (`model.safetensors`, or the index and its shards) of the Hugging Face repository
 * `id` into `<cache>/hf/<owner>--<name>/<revision>`, each file streamed to a `.part` file with a
 * progress bar and renamed into place when complete. A finished download is reused. Endpoint:
 * `HF_ENDPOINT` (default https://huggingface.co); `HF_TOKEN` is sent as a bearer token when set.
 * Throws a {@link CliError} naming the URL and saying how to pass a local path when the network fails.
 */
export async function downloadHfModel(id: string, io: CliIo, opts: HfDownloadOptions = {}): Promise<string> {
  const revision = opts.revision ?? "main";
  const dir = join(cacheDir(io), "hf", id.replace("/", "--"), revision);
  if (existsSync(join(dir, COMPLETE))) return dir;
  const endpoint = (io.env?.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, "");
  const doFetch = io.fetch ?? globalThis.fetch;
  const token = io.env?.HF_TOKEN;
  const url = (file: string) => `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${file}`;
  const get = async (file: string): Promise<Response | undefined> => {
    let res: Response;
    try {
      res = await doFetch(url(file), token ? { headers: { authorization: `Bearer ${token}` } } : {});
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (e as Error).message;
      throw new CliError(
        `cannot download ${id} from ${url(file)} (${why}): the network is unreachable; ${LOCAL_MODEL_HINT}`,
      );
    }
    if (res.status === 404) return undefined;
    if (!res.ok)
      throw new CliError(
        `cannot download ${id}: ${url(file)} answered HTTP ${res.status}${res.status === 401 || res.status === 403 ? " (a gated or private model: set HF_TOKEN)" : ""}; ${LOCAL_MODEL_HINT}`,
      );
    return res;
  };
  const save = async (file: string, res: Response): Promise<void> => {
    const target = join(dir, file);
    const total = Number(res.headers.get("content-length") ?? 0);
    const bar = progressBar(io, `download ${file}`, { quiet: opts.quiet || total === 0 });
    let done = 0;
    try {
      // written atomically: a broken-off or killed download never leaves a partial file under its real name
      await writeFileAtomicStream(target, async (out) => {
        if (!res.body) throw new Error("empty response body");
        const reader = res.body.getReader();
        for (;;) {
          const { done: end, value } = await reader.read();
          if (end) break;
          await out.write(value);
          done += value.byteLength;
          bar.update(done, total, formatBytes(done));
        }
        if (total > 0 && done !== total)
          throw new CliError(
            `cannot download ${id}: ${url(file)} sent ${done} of ${total} bytes; ${LOCAL_MODEL_HINT}`,
          );
      });
    } catch (e) {
      if (e instanceof CliError) throw e;
      if (e instanceof FileWriteError) throw new CliError(`cannot download ${id}: ${e.message}`);
      throw new CliError(
        `cannot download ${id}: ${url(file)} broke off after ${done} bytes (${(e as Error).message}); ${LOCAL_MODEL_HINT}`,
      );
    }
    bar.finish(formatBytes(done));
  };

  await mkdir(dir, { recursive: true });
  const config = await get("config.json");
  if (!config)
    throw new CliError(
      `cannot download ${id}: ${url("config.json")} does not exist (not a model repository?); ${LOCAL_MODEL_HINT}`,
    );
  await save("config.json", config);
  for (const file of ["tokenizer.json", "tokenizer.model"]) {
    const res = await get(file);
    if (res) await save(file, res);
  }
  const single = await get("model.safetensors");
  if (single) await save("model.safetensors", single);
  else {
    const index = await get("model.safetensors.index.json");
    if (!index)
      throw new CliError(
        `cannot download ${id}: it has neither model.safetensors nor model.safetensors.index.json (only safetensors weights are read); ${LOCAL_MODEL_HINT}`,
      );
    await save("model.safetensors.index.json", index);
    const map = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as {
      weight_map?: Record<string, string>;
    };
    const shards = [...new Set(Object.values(map.weight_map ?? {}))];
    for (const shard of shards) {
      if (!/^[\w.-]+\.safetensors$/.test(shard))
        throw new CliError(`cannot download ${id}: its index names an unexpected shard file "${shard}"`);
      const res = await get(shard);
      if (!res) throw new CliError(`cannot download ${id}: shard ${url(shard)} does not exist`);
      await save(shard, res);
    }
  }
  await writeFileAtomic(join(dir, COMPLETE), `${new Date().toISOString()}\n`);
  return dir;
}
