// @int21/lrec: Low-rank error correction (LREC): train LoRA layers so a packed 2-8 bit LLaMA matches its float teacher.
// Re-exports only. The API lands with its issue; see README.md.
export {};
