import { readFileSync } from "node:fs";
import { gradCheck, linear, noGrad, parameter, setBackend, tensor, withBackend } from "@int21/autograd";
import { evaluateNll, type LlamaWeights, quantizeModel, trainForward } from "@int21/model-llama";
import { Llama2cTokenizer, loadLlama2c } from "@int21/loaders";
import {
  type Backend,
  createReferenceBackend,
  getFormat,
  rtnQuantize,
  referenceDequantize,
} from "@int21/quant-kernels";
import { createWasmBackend } from "@int21/quant-kernels/wasm";
import { SHARED, sharedPath } from "@int21/shared-data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addLrecAdapter } from "./adapter";
import { windowData } from "./data";
import { storyTokens } from "./evaluate";
import { runLrec } from "./run-lrec";
import { groupDequantize, quantCodes, TrainableScales } from "./trainable-scales";

function randomMatrix(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = a / 2 ** 32 - 0.5;
  }
  return out;
}

describe("groupDequantize", () => {
  const N = 6;
  const K = 40; // one full group of 32 and a short one of 8
  const fmt = getFormat("int3-g32-asym-f16");
  const W = randomMatrix(N * K, 7);

  it("with zero offsets equals the reference dequantization (incl. a short last group)", () => {
    const q = rtnQuantize(W, N, K, fmt);
    const { codes, groupOf, nGroups } = quantCodes(q);
    const G = nGroups;
    const w = groupDequantize(
      tensor(new Float32Array(N * G), [N, G]),
      tensor(new Float32Array(N * G), [N, G]),
      {
        codes,
        N,
        K,
        nGroups,
        groupOf,
        scale0: q.scales,
        zero0: q.zeros,
      },
    ).values();
    const ref = new Float32Array(N * K);
    referenceDequantize(q, ref);
    for (let i = 0; i < ref.length; i++) expect(w[i]).toBeCloseTo(ref[i], 6);
  });

  it("its gradients in the log-scales and zero offsets match finite differences, through a linear", () => {
    const q = rtnQuantize(W, N, K, fmt);
    const { codes, groupOf, nGroups } = quantCodes(q);
    const G = nGroups;
    const attrs = { codes, N, K, nGroups, groupOf, scale0: q.scales, zero0: q.zeros, rate: 3 };
    const u = parameter(
      randomMatrix(N * G, 3).map((x) => 0.2 * x),
      [N, G],
    );
    const v = parameter(
      randomMatrix(N * G, 4).map((x) => 0.5 * x),
      [N, G],
    );
    const x = parameter(randomMatrix(5 * K, 5), [5, K]);
    // autograd has no default backend: the linear's matmul runs on the reference one
    const r = withBackend(createReferenceBackend(), () =>
      gradCheck((uu, vv, xx) => linear(xx, groupDequantize(uu, vv, attrs)), [u, v, x], {
        eps: 1e-2,
        maxPerInput: 64,
      }),
    );
    expect(r.checked).toBe(2 * N * G + 64); // every u and v, 64 of x
  });

  it("refuses mismatched shapes with a message naming them", () => {
    const q = rtnQuantize(W, N, K, fmt);
    const { codes, groupOf, nGroups } = quantCodes(q);
    expect(() =>
      groupDequantize(tensor(new Float32Array(3), [3]), tensor(new Float32Array(3), [3]), {
        codes,
        N,
        K,
        nGroups,
        groupOf,
        scale0: q.scales,
        zero0: q.zeros,
      }),
    ).toThrow(/N × G = 6×2/);
  });
});

describe("TrainableScales on stories260K INT2", () => {
  let backend: Backend;
  let teacher: LlamaWeights;
  let train: number[];
  let text: string;
  let tok: Llama2cTokenizer;
  beforeAll(async () => {
    backend = await createWasmBackend({ threads: 1 });
    setBackend(backend);
    teacher = loadLlama2c(sharedPath(SHARED.stories260K), { backend });
    tok = Llama2cTokenizer.fromFile(sharedPath(SHARED.tok512));
    text = readFileSync(sharedPath(SHARED.tinystoriesValid), "utf8");
    train = storyTokens(text, tok, { from: 100, to: 300, ctx: 1 << 30 }).flat();
  });
  afterAll(() => backend?.dispose());
  const int2 = () => quantizeModel(teacher, { format: "int2-g32-asym-f16", method: "rtn", backend }).weights;

  it("the hook's forward equals the packed student's before training; commit keeps format and size", () => {
    const student = int2();
    addLrecAdapter(student, { r: 2, alpha: 4, init: "svd", teacher, backend });
    const ts = TrainableScales.attach(student);
    const ids = [[1, 50, 60, 70, 80, 90]];
    const a = noGrad(() => trainForward(student, ids, { checkpoint: false })).values();
    const b = noGrad(() => trainForward(student, ids, { checkpoint: false, linearOp: ts.hook })).values();
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    expect(worst).toBeLessThan(2e-3);
    const bytes = student.layers[0].wq.bytes();
    ts.commit(backend);
    expect(student.layers[0].wq.bytes()).toBe(bytes);
    const c = noGrad(() => trainForward(student, ids, { checkpoint: false })).values();
    for (let i = 0; i < a.length; i++) expect(c[i]).toBeCloseTo(a[i], 4);
  });

  it("LREC with trainable scales lowers held-out KL below LREC alone (same steps) and leaves packed layers", async () => {
    const held = storyTokens(text, tok, { from: 0, to: 4, ctx: 256 });
    const run = async (trainScales: boolean) => {
      const s = int2();
      await runLrec(teacher, s, windowData(train, { batch: 2, seq: 32, seed: 1 }), {
        steps: 25,
        r: 2,
        alpha: 4,
        lr: 3e-3,
        lambda: 10,
        trainScales,
        log: () => {},
      });
      return { kl: evaluateNll(s, held, { teacher }).meanKl, s };
    };
    const plain = await run(false);
    const withScales = await run(true);
    expect(withScales.kl).toBeLessThan(plain.kl);
    const base = (withScales.s.layers[0].wq as unknown as { base: { q?: unknown } }).base;
    expect(base.q).toBeDefined();
  }, 120_000);
});
