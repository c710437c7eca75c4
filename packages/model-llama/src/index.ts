// @int21/model-llama: LLaMA models: load llama2.c / Hugging Face checkpoints, tokenize, run, generate, evaluate, and train through @int21/autograd.
// Re-exports only. The API lands with its issue; see README.md.
export {};
