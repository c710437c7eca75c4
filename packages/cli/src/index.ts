// @int21/cli: The `int21` command line: quantize, lrec, finetune, eval, generate, inspect.
// Re-exports only. The API lands with its issue; see README.md.
export {};
