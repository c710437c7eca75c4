import { runBackendConformance } from "../testing/index";
import { REFERENCE_TOLERANCES } from "../testing/tolerances";
import { createReferenceBackend } from "./backend";
import { plainBlockedSgemm } from "./blocked-sgemm";

// The reference backend against its own oracle (float64 dot products, tight tolerances) and the
// blocked plain-TS sgemm as a backend whose other kernels are the reference.
runBackendConformance("reference", createReferenceBackend, { tolerance: REFERENCE_TOLERANCES });
runBackendConformance(
  "reference + plainBlockedSgemm",
  () => ({ ...createReferenceBackend(), name: "blocked", sgemm: plainBlockedSgemm }),
  { formats: ["int4-g128-asym-f16"], numRuns: 6 },
);
