import type fc from "fast-check";

/** Numbers a lying header uses for counts, lengths, offsets and dims. */
export declare const ABSURD: readonly bigint[];
/** One way to damage a file; positions are fractions of the file (or header), so one mutation fits any file. */
export type Mutation =
  | { kind: "truncate"; at: number }
  | { kind: "flip"; flips: [number, number][]; headerOnly: boolean }
  | { kind: "poke"; at: number; width: 1 | 2 | 4 | 8; value: bigint; headerOnly: boolean };
/** Truncations, 1–8 bit flips and absurd little-endian integers written over 1/2/4/8 bytes. */
export declare const mutation: fc.Arbitrary<Mutation>;
/** Applies `m` to a copy of `bytes`; `header` is the length of the header region (where lies hurt most). */
export declare function mutate(bytes: Uint8Array, header: number, m: Mutation): Uint8Array;
/** Throws unless `e` is a plain Error (not a TypeError/RangeError from deep inside) naming one of `labels`. */
export declare function expectNamedError(e: unknown, ...labels: string[]): void;
/** A mutation as text (bigints included), for failure messages. */
export declare function show(m: unknown): string;
