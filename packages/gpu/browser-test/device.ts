// The nested worker that owns the WebGPU device: @int21/gpu's worker entry.
import "../src/webgpu-worker";
