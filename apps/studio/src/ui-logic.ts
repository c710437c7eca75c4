// Small parsing rules of the page's inputs, kept out of main.ts so they are unit-tested.

/**
 * Token ids typed by the user (`536, 1220 1046`): null when the field is empty; an error naming the bad
 * entry when one is not a non-negative integer.
 */
export function parsePromptIds(text: string): number[] | null {
  const t = text.trim();
  if (t === "") return null;
  return t.split(/[\s,]+/).map((s, i) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(n))
      throw new Error(`prompt token ids: entry ${i + 1} ("${s}") is not a non-negative integer`);
    return n;
  });
}

/** Where the studio runs its matrix products: see {@link parseDeviceChoice}. */
export type DeviceChoice = "auto" | "wasm" | "webgpu";

/** The device choices, in the settings' order. */
export const DEVICE_CHOICES: readonly DeviceChoice[] = ["auto", "wasm", "webgpu"];

/**
 * The page's `?device=` parameter: `auto` (the default, also when the parameter is absent or empty: @int21/gpu's
 * synchronous WebGPU backend on a hardware adapter of a cross-origin-isolated page, else wasm), `wasm`, or
 * `webgpu` (the WebGPU backend even on a software adapter such as SwiftShader). Any other value is an error
 * naming it and the choices.
 */
export function parseDeviceChoice(search: string): DeviceChoice {
  const v = new URLSearchParams(search).get("device");
  if (v === null || v.trim() === "") return "auto";
  const d = v.trim().toLowerCase();
  if ((DEVICE_CHOICES as readonly string[]).includes(d)) return d as DeviceChoice;
  throw new Error(`?device=${v}: not a device choice (one of ${DEVICE_CHOICES.join(", ")})`);
}
