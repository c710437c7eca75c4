// The one resolver for int21's real data (see ../shared/README.md beside the repository); index.mjs re-exports it.
// INT21_SHARED overrides the location; the default is ../shared relative to the repository root.
const { existsSync } = require("node:fs");
const { isAbsolute, join, resolve } = require("node:path");

const repoRoot = resolve(__dirname, "..", "..");
function sharedRoot() {
  const env = process.env.INT21_SHARED;
  if (env && env.length > 0) return isAbsolute(env) ? env : resolve(process.cwd(), env);
  return resolve(repoRoot, "..", "shared");
}
function sharedPath(relative) {
  const p = join(sharedRoot(), relative);
  if (!existsSync(p)) {
    throw new Error(
      `int21 shared data: missing file '${relative}' (looked for ${p}). ` +
        "Set INT21_SHARED to the folder that holds models/ and data/ (default: ../shared beside the repository).",
    );
  }
  return p;
}
function hasShared(relative) {
  return existsSync(join(sharedRoot(), relative));
}
const SHARED = Object.freeze({
  stories260K: "models/stories260K/stories260K.bin",
  tok512: "models/stories260K/tok512.bin",
  llama2Tokenizer: "models/llama2-tokenizer-32k/tokenizer.bin",
  llama2SentencePiece: "models/llama2-tokenizer-32k/tokenizer.model",
  tinystoriesValid: "data/tinystories-valid/tinystories_valid_first1000.txt",
  wikitext2Test: "data/wikitext-2/wiki.test.tokens",
  wikitext2Raw: "data/wikitext-2/wikitext2_raw_test_hf_rows.txt",
});
module.exports = { sharedRoot, sharedPath, hasShared, SHARED };
