// Validation of a Hugging Face `tokenizer.json` before anything is built from it, and the special
// tokens its post-processor adds. Every check is one pass over the file's entries: the work is linear
// in the file's size whatever ids it holds (an id of 1e9 is rejected without allocating 1e9 slots).

/** The tokenizer models {@link checkTokenizerJson} accepts (`model.type`). */
export const TOKENIZER_MODEL_TYPES = ["BPE", "Unigram", "WordPiece"] as const;

/** What {@link checkTokenizerJson} learned from a valid `tokenizer.json`. */
export interface TokenizerJsonInfo {
  /** `model.type`. */
  modelType: (typeof TOKENIZER_MODEL_TYPES)[number];
  /** Number of tokens: the model's vocabulary and the added tokens, ids dense in `[0, vocabSize)`. */
  vocabSize: number;
  /** Token text by id. */
  tokens: string[];
  /** Id by token text. */
  ids: Map<string, number>;
  /** Ids of the added tokens marked `special`. */
  specialIds: Set<number>;
  /**
   * Ids the post-processor puts before and after a single sequence (`TemplateProcessing`'s `single`,
   * `BertProcessing` / `RobertaProcessing`'s CLS and SEP); empty for `ByteLevel` or no post-processor.
   */
  prefixIds: number[];
  suffixIds: number[];
}

function kind(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks a parsed `tokenizer.json` completely, so that the tokenizer built from it can only be the one
 * the file describes:
 * - `model.type` is one of {@link TOKENIZER_MODEL_TYPES} (anything else is an error naming the type);
 * - the vocabulary maps each token to an integer id, ids are unique, and the ids of the vocabulary and of
 *   `added_tokens` together are dense: exactly `0 … N−1`;
 * - every BPE merge joins two known tokens into a known token (`a + b`, continuing prefix removed from b);
 * - `unk_token` / `unk_id` name a token; Unigram scores are finite;
 * - `added_tokens` are well-formed, unique in id and content, and agree with the vocabulary where both
 *   hold the same id or the same text;
 * - the post-processor's special tokens are known ids.
 * The time is linear in the number of entries.
 * @param source the file's name, put at the start of every message
 * @throws Error `"<source>: <what is wrong>"`
 */
export function checkTokenizerJson(json: unknown, source: string): TokenizerJsonInfo {
  const fail = (why: string): never => {
    throw new Error(`${source}: ${why}`);
  };
  if (!isRecord(json)) fail(`not a tokenizer.json (the top level is ${kind(json)}, not an object)`);
  const root = json as Record<string, unknown>;
  if (!isRecord(root.model)) fail(`not a tokenizer.json (no "model" object)`);
  const model = root.model as Record<string, unknown>;
  const type = model.type;
  if (typeof type !== "string")
    fail(`model.type is ${kind(type)}; expected one of ${TOKENIZER_MODEL_TYPES.join(", ")}`);
  if (!(TOKENIZER_MODEL_TYPES as readonly string[]).includes(type as string))
    fail(
      `model.type ${JSON.stringify(type)} is not supported (int21 reads ${TOKENIZER_MODEL_TYPES.join(", ")} tokenizers)`,
    );
  const modelType = type as TokenizerJsonInfo["modelType"];

  // the model's vocabulary: [text, id] pairs
  const entries: [string, number][] = [];
  if (modelType === "Unigram") {
    if (!Array.isArray(model.vocab))
      fail(`model.vocab of a Unigram model must be an array, got ${kind(model.vocab)}`);
    const vocab = model.vocab as unknown[];
    for (let i = 0; i < vocab.length; i++) {
      const e = vocab[i];
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== "string" || typeof e[1] !== "number")
        fail(`model.vocab[${i}] must be a [piece, score] pair`);
      const pair = e as [string, number];
      if (!Number.isFinite(pair[1]))
        fail(`model.vocab[${i}] (${JSON.stringify(pair[0])}) has a non-finite score`);
      entries.push([pair[0], i]);
    }
  } else {
    if (!isRecord(model.vocab))
      fail(`model.vocab of a ${modelType} model must be an object, got ${kind(model.vocab)}`);
    for (const [text, id] of Object.entries(model.vocab as Record<string, unknown>)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0)
        fail(
          `model.vocab[${JSON.stringify(text)}] is ${JSON.stringify(id) ?? kind(id)}, not a token id (an integer ≥ 0)`,
        );
      entries.push([text, id as number]);
    }
  }

  // added tokens
  const addedRaw = root.added_tokens ?? [];
  if (!Array.isArray(addedRaw)) fail(`added_tokens must be an array, got ${kind(addedRaw)}`);
  const added: { id: number; content: string; special: boolean }[] = [];
  (addedRaw as unknown[]).forEach((a, i) => {
    if (!isRecord(a)) fail(`added_tokens[${i}] must be an object`);
    const t = a as Record<string, unknown>;
    if (typeof t.id !== "number" || !Number.isInteger(t.id) || t.id < 0)
      fail(`added_tokens[${i}].id is ${JSON.stringify(t.id) ?? kind(t.id)}, not a token id (an integer ≥ 0)`);
    if (typeof t.content !== "string" || t.content === "")
      fail(`added_tokens[${i}].content must be a non-empty string`);
    for (const flag of ["special", "lstrip", "rstrip", "normalized", "single_word"])
      if (t[flag] !== undefined && typeof t[flag] !== "boolean")
        fail(`added_tokens[${i}].${flag} must be a boolean, got ${kind(t[flag])}`);
    added.push({ id: t.id as number, content: t.content as string, special: t.special === true });
  });

  // ids: unique per text, and dense over vocabulary ∪ added tokens. Every id must be below the number
  // of entries (else the ids cannot be dense), so the check allocates nothing bigger than the file.
  const bound = entries.length + added.length;
  const tokens: (string | undefined)[] = new Array(bound);
  const ids = new Map<string, number>();
  for (const [text, id] of entries) {
    if (id >= bound)
      fail(
        `model.vocab[${JSON.stringify(text)}] = ${id}: ids must be dense (0 … N−1) and there are only ${bound} tokens`,
      );
    if (tokens[id] !== undefined)
      fail(`id ${id} is given to two tokens, ${JSON.stringify(tokens[id])} and ${JSON.stringify(text)}`);
    if (ids.has(text))
      fail(`model.vocab holds ${JSON.stringify(text)} twice (ids ${ids.get(text)} and ${id})`);
    tokens[id] = text;
    ids.set(text, id);
  }
  const specialIds = new Set<number>();
  const addedIds = new Set<number>();
  const addedTexts = new Set<string>();
  added.forEach(({ id, content, special }, i) => {
    if (id >= bound)
      fail(
        `added_tokens[${i}] (${JSON.stringify(content)}) has id ${id}: ids must be dense (0 … N−1) and there are only ${bound} tokens`,
      );
    if (addedIds.has(id)) fail(`added_tokens[${i}]: id ${id} is given to two added tokens`);
    if (addedTexts.has(content)) fail(`added_tokens[${i}]: ${JSON.stringify(content)} is added twice`);
    addedIds.add(id);
    addedTexts.add(content);
    if (tokens[id] !== undefined && tokens[id] !== content)
      fail(
        `added_tokens[${i}] gives id ${id} to ${JSON.stringify(content)} but the vocabulary gives it to ${JSON.stringify(tokens[id])}`,
      );
    const known = ids.get(content);
    if (known !== undefined && known !== id)
      fail(
        `added_tokens[${i}] gives ${JSON.stringify(content)} id ${id} but the vocabulary gives it id ${known}`,
      );
    tokens[id] = content;
    ids.set(content, id);
    if (special) specialIds.add(id);
  });
  let vocabSize = 0;
  while (vocabSize < bound && tokens[vocabSize] !== undefined) vocabSize++;
  for (let id = vocabSize + 1; id < bound; id++)
    if (tokens[id] !== undefined)
      fail(`ids are not dense: no token has id ${vocabSize}, but ${JSON.stringify(tokens[id])} has id ${id}`);
  if (vocabSize === 0) fail("the vocabulary is empty");
  tokens.length = vocabSize;

  const optString = (key: string): string | null => {
    const v = model[key];
    if (v === undefined || v === null) return null;
    return typeof v === "string" ? v : fail(`model.${key} must be a string or null, got ${kind(v)}`);
  };
  const prefix = optString("continuing_subword_prefix");
  optString("end_of_word_suffix");
  const unk = optString("unk_token");
  if (unk !== null && !ids.has(unk)) fail(`model.unk_token ${JSON.stringify(unk)} is not a token`);
  for (const flag of ["byte_fallback", "fuse_unk", "ignore_merges"])
    if (model[flag] !== undefined && model[flag] !== null && typeof model[flag] !== "boolean")
      fail(`model.${flag} must be a boolean, got ${kind(model[flag])}`);

  if (modelType === "BPE") {
    const d = model.dropout;
    if (d !== undefined && d !== null && !(typeof d === "number" && d >= 0 && d <= 1))
      fail(`model.dropout must be null or a number in [0, 1], got ${JSON.stringify(d)}`);
    const merges = model.merges ?? [];
    if (!Array.isArray(merges)) fail(`model.merges must be an array, got ${kind(merges)}`);
    (merges as unknown[]).forEach((m, i) => {
      let pair: unknown[];
      if (typeof m === "string") {
        pair = m.split(" ");
        if (pair.length !== 2)
          fail(`model.merges[${i}] ${JSON.stringify(m)} is not two tokens separated by one space`);
      } else if (Array.isArray(m)) pair = m;
      else pair = [];
      if (pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string")
        fail(`model.merges[${i}] must be "a b" or ["a", "b"]`);
      const [a, b] = pair as [string, string];
      for (const part of [a, b])
        if (!ids.has(part))
          fail(
            `model.merges[${i}] (${JSON.stringify(a)} + ${JSON.stringify(b)}) merges the unknown token ${JSON.stringify(part)}`,
          );
      const joined = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
      if (!ids.has(joined))
        fail(
          `model.merges[${i}] (${JSON.stringify(a)} + ${JSON.stringify(b)}) makes ${JSON.stringify(joined)}, which is not a token`,
        );
    });
  } else if (modelType === "Unigram") {
    const u = model.unk_id;
    if (
      u !== undefined &&
      u !== null &&
      !(typeof u === "number" && Number.isInteger(u) && u >= 0 && u < entries.length)
    )
      fail(`model.unk_id ${JSON.stringify(u)} is not an index into model.vocab (${entries.length} pieces)`);
  } else {
    if (unk === null) fail("model.unk_token of a WordPiece model must name a token");
    const m = model.max_input_chars_per_word;
    if (m !== undefined && !(typeof m === "number" && Number.isInteger(m) && m > 0))
      fail(`model.max_input_chars_per_word must be a positive integer, got ${JSON.stringify(m)}`);
  }

  const { prefixIds, suffixIds } = postProcessorTokens(root.post_processor, vocabSize, fail);
  return { modelType, vocabSize, tokens: tokens as string[], ids, specialIds, prefixIds, suffixIds };
}

/** The ids a post-processor adds around a single sequence; throws through `fail` when it is malformed. */
function postProcessorTokens(
  pp: unknown,
  vocabSize: number,
  fail: (why: string) => never,
  where = "post_processor",
): { prefixIds: number[]; suffixIds: number[] } {
  const none = { prefixIds: [], suffixIds: [] };
  if (pp === undefined || pp === null) return none;
  if (!isRecord(pp)) fail(`${where} must be an object or null, got ${kind(pp)}`);
  const p = pp as Record<string, unknown>;
  const checkId = (id: unknown, what: string): number => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize)
      fail(`${where}: ${what} ${JSON.stringify(id)} is not a token id (there are ${vocabSize} tokens)`);
    return id as number;
  };
  switch (p.type) {
    case "ByteLevel":
      return none;
    case "TemplateProcessing": {
      const specials = p.special_tokens ?? {};
      if (!isRecord(specials)) fail(`${where}.special_tokens must be an object`);
      const idsOf = (name: string): number[] => {
        const s = (specials as Record<string, unknown>)[name];
        if (!Object.hasOwn(specials as object, name) || !isRecord(s) || !Array.isArray(s.ids))
          fail(
            `${where}: the template names the special token ${JSON.stringify(name)}, which special_tokens does not define`,
          );
        return ((s as Record<string, unknown>).ids as unknown[]).map((id) =>
          checkId(id, `special token ${JSON.stringify(name)} id`),
        );
      };
      for (const key of ["single", "pair"]) {
        const tpl = p[key];
        if (tpl === undefined) continue;
        if (!Array.isArray(tpl)) fail(`${where}.${key} must be an array`);
        for (const piece of tpl as unknown[]) {
          if (isRecord(piece) && isRecord(piece.SpecialToken) && typeof piece.SpecialToken.id === "string")
            idsOf(piece.SpecialToken.id);
          else if (
            !(
              isRecord(piece) &&
              isRecord(piece.Sequence) &&
              (piece.Sequence.id === "A" || piece.Sequence.id === "B")
            )
          )
            fail(
              `${where}.${key}: each piece must be {"SpecialToken": {"id": …}} or {"Sequence": {"id": "A"|"B"}}`,
            );
        }
      }
      const single = (p.single ?? []) as Record<string, Record<string, unknown>>[];
      const out = { prefixIds: [] as number[], suffixIds: [] as number[] };
      let seen = false;
      for (const piece of single) {
        if (piece.Sequence) {
          if (piece.Sequence.id !== "A") fail(`${where}.single may only hold sequence "A"`);
          if (seen) fail(`${where}.single holds sequence "A" twice`);
          seen = true;
        } else (seen ? out.suffixIds : out.prefixIds).push(...idsOf(piece.SpecialToken.id as string));
      }
      if (!seen) fail(`${where}.single does not hold the sequence ("A")`);
      return out;
    }
    case "BertProcessing":
    case "RobertaProcessing": {
      const tok = (key: string): number => {
        const v = p[key];
        if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== "string")
          fail(`${where}.${key} must be a [token, id] pair`);
        return checkId((v as unknown[])[1], `${key} id`);
      };
      return { prefixIds: [tok("cls")], suffixIds: [tok("sep")] };
    }
    case "Sequence": {
      if (!Array.isArray(p.processors)) fail(`${where}.processors must be an array`);
      const out = { prefixIds: [] as number[], suffixIds: [] as number[] };
      (p.processors as unknown[]).forEach((q, i) => {
        const r = postProcessorTokens(q, vocabSize, fail, `${where}.processors[${i}]`);
        // each processor wraps what the ones before it produced
        out.prefixIds.unshift(...r.prefixIds);
        out.suffixIds.push(...r.suffixIds);
      });
      return out;
    }
    default:
      return fail(
        `${where}.type ${JSON.stringify(p.type)} is not supported (ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing, Sequence)`,
      );
  }
}
