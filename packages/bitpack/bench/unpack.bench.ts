// bitpack unpack throughput: values per second for 2/3/4/8 bits on 16M values, with the ratio to a plain
// Uint8Array copy of the same number of values measured in the same run.
import { consume, report, time } from "@int21/bench-utils";
import { type Bits, packStream, unpackStream } from "@int21/bitpack";

const quick = process.env.INT21_BENCH_QUICK === "1";
const n = quick ? 1 << 18 : 16 * 1024 * 1024;
const opts = { minTimeMs: quick ? 50 : 1500, minRuns: 3 };

const src = new Uint8Array(n);
const dst = new Uint8Array(n);
let seed = 12345;
for (let i = 0; i < n; i++) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  src[i] = seed >>> 24;
}
const copy = time(
  "copy",
  () => {
    dst.set(src);
    return dst[n - 1];
  },
  opts,
);
const copyRate = n / (copy.medianMs / 1000);

const rows = [];
rows.push({
  name: `bitpack:copy-u8:${n}`,
  bits: 8,
  valuesPerSec: copyRate,
  gbPerSecOut: copyRate / 1e9,
  ratioToCopy: 1,
});
for (const bits of [2, 3, 4, 8] as Bits[]) {
  const vals = new Uint8Array(n);
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) vals[i] = src[i] & mask;
  const words = packStream(vals, bits);
  // validate before timing
  unpackStream(words, bits, n, dst);
  for (let i = 0; i < n; i += 9973)
    if (dst[i] !== vals[i]) throw new Error(`unpack mismatch at ${i} (${bits} bits)`);
  const t = time(
    `unpack${bits}`,
    () => {
      unpackStream(words, bits, n, dst);
      return dst[n >> 1];
    },
    opts,
  );
  const rate = n / (t.medianMs / 1000);
  rows.push({
    name: `bitpack:unpack:int${bits}:${n}`,
    bits,
    valuesPerSec: rate,
    gbPerSecOut: rate / 1e9,
    ratioToCopy: rate / copyRate,
  });
}
consume(dst);
report("bitpack-unpack", rows, {
  notes: [`${n} values; ratioToCopy = unpack values/s ÷ Uint8Array.set values/s (same run)`],
  chart: { title: "bitpack unpack throughput (values/s)", value: "valuesPerSec" },
});
