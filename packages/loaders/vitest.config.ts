import { defineConfig } from "vitest/config";

// stories260K runs are short but the machine is shared: allow slow steps.
export default defineConfig({ test: { testTimeout: 120_000, hookTimeout: 60_000 } });
