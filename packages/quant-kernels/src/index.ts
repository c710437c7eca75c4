export type { Backend, GemmArgs, KernelName, Linear, QuantFormat, QuantizedLinear, ScaleDtype } from "./types";
