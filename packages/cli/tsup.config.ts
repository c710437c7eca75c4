import { makeConfig } from "../../tsup.base";

export default makeConfig({ entry: ["src/index.ts", "src/main.ts"], platform: "node" });
