// @int21/gpu: GPU backends for @int21/quant-kernels (gpu.js and WebGPU), both optional peers.
/// <reference types="@webgpu/types" />
export { type AsyncBackend, asyncBackendFrom } from "./async-backend";
export {
  buildFloatLayout,
  codesPerFloat,
  FLOAT_PAYLOAD_BITS,
  type FloatLayout,
  floatLayoutCode,
  floatLayoutOf,
} from "./float-layout";
export {
  createGpuJsBackend,
  GPUJS_MAX_INDEX,
  type GpuJsBackend,
  type GpuJsBackendOptions,
  type GpuJsMode,
  type GpuJsModule,
} from "./gpujs-backend";
export { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions } from "./webgpu-backend";
export {
  createWebGpuSyncBackend,
  type SyncBackendStats,
  type SyncKernelName,
  type SyncWorkerLike,
  type WebGpuSyncBackend,
  type WebGpuSyncBackendOptions,
} from "./webgpu-sync-backend";
export {
  requestWebGpuDevice,
  type WebGpuContext,
  type WebGpuDeviceOptions,
  type WebGpuModule,
} from "./webgpu-device";
