// @int21/lora: LoRA adapters over float or packed quantized linears: stacking, merging, PEFT-format save/load.
// Re-exports only. The API lands with its issue; see README.md.
export {};
