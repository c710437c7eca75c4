// Sharded safetensors checkpoints: `model.safetensors.index.json` maps each tensor to the shard file holding it.
//
//   { "metadata": { "total_size": 123, ... }, "weight_map": { "model.embed_tokens.weight": "model-00001-of-00002.safetensors", ... } }

import { writeFileAtomic } from "./atomic-write";
import { openFileSource } from "./file-source";
import type { SafetensorsTensorInfo } from "./safetensors-format";
import { SAFETENSORS_DTYPES, shapeSize } from "./safetensors-format";
import { openSafetensors, type RawTensor, type SafetensorsFile } from "./safetensors-reader";
import { type SafetensorsWriteInput, writeSafetensors } from "./safetensors-writer";

/** The default index file name inside a checkpoint directory. */
export const SAFETENSORS_INDEX_FILE = "model.safetensors.index.json";

/** One tensor of a sharded checkpoint: its header entry plus the shard that holds it. */
export interface ShardedTensorInfo extends SafetensorsTensorInfo {
  /** Shard file name, relative to the index's directory. */
  readonly shard: string;
}

/** A tensor yielded while iterating a sharded checkpoint. */
export interface ShardedTensor {
  readonly name: string;
  readonly shard: string;
  readonly info: SafetensorsTensorInfo;
  /** The open shard; valid only until the iteration moves to the next shard. */
  readonly file: SafetensorsFile;
}

/** A sharded safetensors checkpoint; at most one shard file is open at a time. */
export interface SafetensorsIndex {
  /** Path of the index JSON. */
  readonly path: string;
  /** The index's `metadata` object (for example `total_size`), as written. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Every mapped tensor, by name, with its shard. */
  readonly tensors: Readonly<Record<string, ShardedTensorInfo>>;
  /** Shard file names in first-use order of the (sorted) weight map. */
  readonly shards: readonly string[];
  /** Reads one tensor as float32 (opens its shard if it is not the one open). */
  readF32(name: string, out?: Float32Array): Promise<Float32Array>;
  /** Reads one tensor's raw values. */
  readRaw(name: string): Promise<RawTensor>;
  /**
   * Visits every tensor shard by shard (each shard opened once, closed before the next), in file order within a
   * shard. Read the tensor through `file` inside the loop body.
   */
  tensorsByShard(): AsyncGenerator<ShardedTensor>;
  /** Closes the shard that is open, if any. */
  close(): Promise<void>;
}

function joinPath(dir: string, file: string): string {
  return dir === "" ? file : dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/**
 * Opens a sharded checkpoint from its directory (which holds `model.safetensors.index.json`) or from the index
 * path itself. Validates up front that every mapped shard exists, is a valid safetensors file, and contains the
 * tensors mapped to it (reading only the shard headers).
 * @throws Error naming the index, the shard and the tensor
 */
export async function openSafetensorsIndex(dirOrIndexPath: string): Promise<SafetensorsIndex> {
  const { stat, readFile } = await import("node:fs/promises");
  let indexPath = dirOrIndexPath;
  try {
    if ((await stat(dirOrIndexPath)).isDirectory())
      indexPath = joinPath(dirOrIndexPath, SAFETENSORS_INDEX_FILE);
  } catch (e) {
    throw new Error(`safetensors index: cannot open ${dirOrIndexPath}: ${(e as Error).message}`);
  }
  const slash = indexPath.lastIndexOf("/");
  const dir = slash < 0 ? "" : indexPath.slice(0, slash + 1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (e) {
    throw new Error(`safetensors index: ${indexPath}: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`safetensors index: ${indexPath}: must be a JSON object`);
  }
  const { weight_map: weightMap, metadata } = parsed as Record<string, unknown>;
  if (weightMap === null || typeof weightMap !== "object" || Array.isArray(weightMap)) {
    throw new Error(
      `safetensors index: ${indexPath}: "weight_map" must be an object of tensor name → shard file`,
    );
  }
  const byShard = new Map<string, string[]>();
  for (const name of Object.keys(weightMap).sort()) {
    const shard = (weightMap as Record<string, unknown>)[name];
    if (
      typeof shard !== "string" ||
      shard === "" ||
      shard.startsWith("/") ||
      shard.split(/[\\/]/).includes("..")
    ) {
      throw new Error(
        `safetensors index: ${indexPath}: tensor "${name}": shard ${JSON.stringify(shard)} must be a relative file name inside the index's directory`,
      );
    }
    const list = byShard.get(shard);
    if (list === undefined) byShard.set(shard, [name]);
    else list.push(name);
  }
  const tensors: Record<string, ShardedTensorInfo> = Object.create(null);
  for (const [shard, names] of byShard) {
    const shardPath = joinPath(dir, shard);
    try {
      await (await openFileSource(shardPath)).close();
    } catch {
      throw new Error(
        `safetensors index: ${indexPath}: shard "${shard}" (mapped for tensor "${names[0]}") is missing at ${shardPath}`,
      );
    }
    const f = await openSafetensors(shardPath);
    try {
      for (const name of names) {
        if (!Object.hasOwn(f.tensors, name)) {
          throw new Error(
            `safetensors index: ${indexPath}: tensor "${name}" is mapped to shard "${shard}", which does not contain it`,
          );
        }
        tensors[name] = { ...f.tensors[name], shard };
      }
    } finally {
      await f.close();
    }
  }

  let open: { shard: string; file: SafetensorsFile } | undefined;
  const shardFile = async (shard: string): Promise<SafetensorsFile> => {
    if (open?.shard === shard) return open.file;
    await open?.file.close();
    open = undefined;
    const file = await openSafetensors(joinPath(dir, shard));
    open = { shard, file };
    return file;
  };
  const lookup = (name: string): ShardedTensorInfo => {
    if (!Object.hasOwn(tensors, name))
      throw new Error(`safetensors index: ${indexPath}: no tensor named "${name}"`);
    return tensors[name];
  };
  return {
    path: indexPath,
    metadata: metadata !== null && typeof metadata === "object" ? (metadata as Record<string, unknown>) : {},
    tensors,
    shards: [...byShard.keys()],
    async readF32(name, out) {
      return (await shardFile(lookup(name).shard)).readF32(name, out);
    },
    async readRaw(name) {
      return (await shardFile(lookup(name).shard)).readRaw(name);
    },
    async *tensorsByShard() {
      try {
        for (const [shard, names] of byShard) {
          const file = await shardFile(shard);
          const mapped = new Set(names);
          for (const name of file.names) {
            if (mapped.has(name)) yield { name, shard, info: file.tensors[name], file };
          }
        }
      } finally {
        // Also on an early `break` out of the loop: the open shard is closed.
        await open?.file.close();
        open = undefined;
      }
    },
    async close() {
      await open?.file.close();
      open = undefined;
    },
  };
}

/** Options for {@link writeSafetensorsSharded}. */
export interface ShardOptions {
  /** Largest shard in tensor bytes (default 5 GB, as the Hugging Face writer); a larger single tensor gets its own shard. */
  readonly maxShardBytes?: number;
  /** `__metadata__` for every shard (for example `{ format: "pt" }`). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** File name prefix (default `"model"`). */
  readonly prefix?: string;
}

/**
 * Writes tensors as a sharded checkpoint in `dir`: `model-00001-of-0000N.safetensors` files (tensors in the
 * order given, a new shard whenever the next tensor would pass `maxShardBytes`) and `model.safetensors.index.json`
 * with `metadata.total_size` and `weight_map`. With a single shard it writes just `model.safetensors`, as the
 * Hugging Face writer does. Returns the names of the files written.
 */
export async function writeSafetensorsSharded(
  dir: string,
  tensors: SafetensorsWriteInput,
  options: ShardOptions = {},
): Promise<string[]> {
  const { maxShardBytes = 5_000_000_000, metadata, prefix = "model" } = options;
  if (!(maxShardBytes > 0))
    throw new RangeError(`safetensors: maxShardBytes must be positive, got ${maxShardBytes}`);
  const shards: string[][] = [];
  let size = 0;
  let total = 0;
  for (const name of Object.keys(tensors)) {
    const t = tensors[name];
    if (!Object.hasOwn(SAFETENSORS_DTYPES, t.dtype))
      throw new Error(`safetensors: tensor "${name}": unknown dtype ${t.dtype}`);
    const bytes = shapeSize(t.shape, `safetensors: tensor "${name}"`) * SAFETENSORS_DTYPES[t.dtype].bytes;
    if (shards.length === 0 || (size + bytes > maxShardBytes && size > 0)) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(name);
    size += bytes;
    total += bytes;
  }
  if (shards.length <= 1) {
    const file = `${prefix}.safetensors`;
    await writeSafetensors(joinPath(dir, file), tensors, metadata);
    return [file];
  }
  const n = String(shards.length).padStart(5, "0");
  const files = shards.map((_, i) => `${prefix}-${String(i + 1).padStart(5, "0")}-of-${n}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (const [i, names] of shards.entries()) {
    const part: Record<string, SafetensorsWriteInput[string]> = {};
    for (const name of names) {
      part[name] = tensors[name];
      weightMap[name] = files[i];
    }
    await writeSafetensors(joinPath(dir, files[i]), part, metadata);
  }
  const index = `${prefix}.safetensors.index.json`;
  const sorted = Object.fromEntries(
    Object.keys(weightMap)
      .sort()
      .map((k) => [k, weightMap[k]]),
  );
  await writeFileAtomic(
    joinPath(dir, index),
    `${JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2)}\n`,
  );
  return [...files, index];
}
