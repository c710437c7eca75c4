import { makeConfig } from "../../tsup.base";

export default makeConfig({ entry: { index: "src/index.ts", testing: "src/testing/index.ts" } });
