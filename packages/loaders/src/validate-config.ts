// Sanity of configs read from files: field types and values, and whether a checkpoint has enough tensors for the
// layers its config claims (checked before any per-layer work, so a corrupt count costs nothing).

import type { FileProblem } from "@int21/io";
import { CONFIG_NUMBER_FIELDS, type LlamaConfig, validateConfig } from "@int21/model-llama";

/**
 * Checks a config parsed from a file (an int21 checkpoint's `config` metadata): a JSON object whose numeric
 * fields are numbers and whose `sharedClassifier` is a boolean, then {@link validateConfig} (dims positive
 * integers, dim divisible by the heads, heads by the KV heads, an even head size…).
 * @throws Error naming `source` and the field
 */
export function checkConfigObject(value: unknown, source: string): LlamaConfig {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new Error(`${source}: the config must be a JSON object, got ${JSON.stringify(value)}`);
  const c = value as Record<string, unknown>;
  for (const k of CONFIG_NUMBER_FIELDS) {
    if (typeof c[k] !== "number")
      throw new Error(
        `${source}: config field ${k} must be a number, got ${JSON.stringify(c[k]) ?? "nothing"}`,
      );
  }
  if (typeof c.sharedClassifier !== "boolean") {
    throw new Error(
      `${source}: config field sharedClassifier must be true or false, got ${JSON.stringify(c.sharedClassifier) ?? "nothing"}`,
    );
  }
  return validateConfig(c as unknown as LlamaConfig, source);
}

/**
 * A lower bound on the tensors a checkpoint of `config` holds, true for every family and storage: each layer
 * has at least one tensor of its own, plus the token embedding and the final norm. Checking it first bounds
 * every per-layer loop by the file's real tensor count.
 */
export function minTensorCount(config: LlamaConfig): number {
  return config.nLayers + 2;
}

/**
 * Throws naming `source` when a checkpoint holding `available` tensors cannot be a model of `config` (its
 * `nLayers` claims more layers than there are tensors). Loaders call it before any per-layer work, so a corrupt
 * layer count costs nothing.
 */
export function checkTensorCount(config: LlamaConfig, available: number, source: string): void {
  const need = minTensorCount(config);
  if (need > available) {
    throw new Error(
      `${source}: the config's nLayers ${config.nLayers} needs at least ${need} tensors, but the checkpoint holds ${available}`,
    );
  }
}

/** A thrown error as a {@link FileProblem} (the message already names the file; prefixed when it does not). */
export function problemOf(file: string, e: unknown, tensor?: string): FileProblem {
  const msg = e instanceof Error ? e.message : String(e);
  return {
    file,
    ...(tensor !== undefined ? { tensor } : {}),
    message: msg.includes(file) ? msg : `${file}: ${msg}`,
  };
}
