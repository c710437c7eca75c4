// @int21/autograd: A small, memory-aware reverse-mode autograd over strided Float32Array views, with the ops LLaMA training needs.
// Re-exports only. The API lands with its issue; see README.md.
export {};
