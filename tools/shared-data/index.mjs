// ESM entry of the shared-data resolver: the implementation lives once, in index.cjs.
import resolver from "./index.cjs";

export const { sharedRoot, sharedPath, hasShared, SHARED } = resolver;
