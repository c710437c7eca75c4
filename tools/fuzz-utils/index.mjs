// The corruption harness shared by the readers' property tests (io, model-llama, lora): one way to damage
// a file is a Mutation; `mutation` generates them, `mutate` applies one, `expectNamedError` checks what a
// reader threw.
import fc from "fast-check";

/** Numbers a lying header uses for counts, lengths, offsets and dims. */
export const ABSURD = Object.freeze([
  0n,
  1n,
  3n,
  255n,
  2n ** 31n - 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 40n,
  2n ** 53n + 1n,
  2n ** 63n,
  2n ** 64n - 1n,
]);

const frac = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

/** Truncations, 1–8 bit flips and absurd little-endian integers written over 1/2/4/8 bytes. */
export const mutation = fc.oneof(
  fc.record({ kind: fc.constant("truncate"), at: frac }),
  fc.record({
    kind: fc.constant("flip"),
    flips: fc.array(fc.tuple(frac, fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }),
    headerOnly: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("poke"),
    at: frac,
    width: fc.constantFrom(1, 2, 4, 8),
    value: fc.oneof(fc.constantFrom(...ABSURD), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    headerOnly: fc.boolean(),
  }),
);

/** Applies `m` to a copy of `bytes`; `header` is the length of the header region (where lies hurt most). */
export function mutate(bytes, header, m) {
  if (m.kind === "truncate") return bytes.slice(0, Math.floor(m.at * bytes.length));
  const out = bytes.slice();
  const span = (headerOnly) => (headerOnly ? header : out.length);
  if (m.kind === "flip") {
    for (const [at, bit] of m.flips) out[Math.floor(at * span(m.headerOnly))] ^= 1 << bit;
    return out;
  }
  const pos = Math.min(Math.floor(m.at * span(m.headerOnly)), out.length - m.width);
  let v = m.value;
  for (let i = 0; i < m.width; i++, v >>= 8n) out[pos + i] = Number(v & 255n);
  return out;
}

/** Throws unless `e` is a plain Error (not a TypeError/RangeError from deep inside) naming one of `labels`. */
export function expectNamedError(e, ...labels) {
  const err = e;
  if (!(e instanceof Error) || err.constructor !== Error || !labels.some((l) => err.message.includes(l))) {
    throw new Error(
      `expected a plain Error naming ${labels.join(" or ")}, got ${err?.name}: ${err?.message}\n${err?.stack}`,
    );
  }
}

/** A mutation as text (bigints included), for failure messages. */
export function show(m) {
  return JSON.stringify(m, (_, v) => (typeof v === "bigint" ? String(v) : v));
}
