// The nested worker that owns the WebGPU device for the studio's worker when it runs on WebGPU: @int21/gpu's
// webgpu-worker entry (createWebGpuSyncBackend posts kernels here and blocks until they are done).
import "@int21/gpu/webgpu-worker";
