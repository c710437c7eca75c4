// @int21/quant-kernels/testing: the backend conformance suite (vitest + fast-check, peer dependencies).
export {
  CONFORMANCE_ROWS,
  CONFORMANCE_SHAPES,
  type ConformanceOptions,
  type ConformanceShape,
  type GemmCase,
  checkQuantKernels,
  checkSgemmCase,
  runBackendConformance,
  worstViolation,
} from "./conformance";
export { gaussian, makeRng, randomGIdx, randomUniform, randomWeights } from "./random";
export {
  type CheckName,
  FLOAT32_TOLERANCES,
  REFERENCE_TOLERANCES,
  type Tolerance,
  type ToleranceFor,
} from "./tolerances";
