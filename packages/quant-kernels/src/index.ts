export type { Backend, GemmArgs, KernelName, QuantFormat, QuantizedLinear, ScaleDtype } from "./types";
