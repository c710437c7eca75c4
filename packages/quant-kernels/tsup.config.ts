import { makeConfig } from "../../tsup.base";

// Three entries sharing chunks (splitting, ESM and CJS alike): the root, `testing`, and `wasm`, which alone
// holds the WebAssembly module; shared chunks keep one copy of the format registry and of the kernel lookups
// (`trainKernels`/`decodeKernels`) that the wasm backend registers into.
export default makeConfig({
  entry: { index: "src/index.ts", testing: "src/testing/index.ts", wasm: "src/wasm-entry.ts" },
  splitting: true,
});
