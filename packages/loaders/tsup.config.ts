import { makeConfig } from "../../tsup.base";

export default makeConfig();
