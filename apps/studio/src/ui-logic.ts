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
