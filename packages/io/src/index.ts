// @int21/io: safetensors and GGUF readers/writers. Re-exports only; see README.md.
export {};
