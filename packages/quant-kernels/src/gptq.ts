// GPTQ (Frantar et al. 2022): one-shot second-order quantization with lazy block updates.
import { upperCholeskyOfInverse } from "./cholesky";
import type { GroupParams } from "./formats/format";
import { blockGridOf, nearestGridCode } from "./formats/ggml-block-grid";
import { blockRowBytes, isBlockFormat } from "./formats/ggml-blocks";
import { quantizedFromGgmlBlocks } from "./ggml-blocks-linear";
import { getFormat } from "./formats/registry";
import type { Hessian } from "./hessian";
import { groupCount, packQuantizedLinear } from "./quantized-linear";
import { type Quantizer, checkWeight } from "./quantizer";
import { plainBlockedSgemm } from "./reference/blocked-sgemm";
import { type RtnOptions, findGroupParams } from "./rtn";
import type { Backend, QuantFormat, QuantizedLinear } from "./types";

/** Options of {@link gptqQuantize}. Group parameters use the RTN options (`mseClip`, `grid`, …). */
export interface GptqOptions extends RtnOptions {
  /** Columns per lazy batch (default 128). */
  blockSize?: number;
  /** Dampening λ as a fraction of the mean diagonal of H (default 0.01). */
  percDamp?: number;
  /** Times to retry a failed Cholesky with λ × 10 (default 3: up to 10× the mean diagonal). */
  dampRetries?: number;
  /** Quantize columns in order of decreasing H diagonal (`desc_act`); grouped formats then carry `gIdx`. */
  actOrder?: boolean;
  /**
   * Fix every group's scale and zero from the original weights before any update (contiguous groups
   * even under act-order, so no `gIdx` is stored). Default false.
   */
  staticGroups?: boolean;
  /** Backend for the trailing block update `W[:, i2:] −= Err · U[i1:i2, i2:]` (default: plain blocked TS). */
  backend?: Backend;
}

/** What {@link gptqQuantizeWithInfo} reports besides the quantized layer. */
export interface GptqInfo {
  /** Dampening fraction that made H positive definite (percDamp × 10^retries). */
  percDamp: number;
  /** Input columns with H[k,k] = 0 (never active in calibration); their weights quantize as 0. */
  deadColumns: number;
  /** GPTQ's proxy loss Σ (w − ŵ)² / U[k,k]² / 2 summed over the layer. */
  loss: number;
  /** Column order used (act-order permutation or identity). */
  perm: Int32Array;
}

function fail(msg: string): never {
  throw new Error(`quant-kernels: gptqQuantize: ${msg}`);
}

function hessianMatrix(h: Hessian | Float64Array, K: number): Float64Array {
  const H = h instanceof Float64Array ? h : h.matrix();
  if (!(h instanceof Float64Array) && h.K !== K)
    fail(`the Hessian is for K = ${h.K} inputs, the weight has K = ${K}`);
  if (H.length !== K * K) fail(`the Hessian has ${H.length} entries, expected K×K = ${K}×${K}`);
  for (let i = 0; i < H.length; i++) {
    if (!Number.isFinite(H[i]))
      fail(`Hessian entry (${Math.floor(i / K)}, ${i % K}) = ${H[i]} is not finite`);
  }
  for (let i = 0; i < K; i++) {
    if (H[i * K + i] < 0)
      fail(`Hessian diagonal entry ${i} = ${H[i * K + i]} is negative: not a Hessian 2XᵀX`);
  }
  return H;
}

/**
 * GPTQ of a weight `[N×K]` (out × in, row-major) given `H = (2/n)·Σ xᵀx` over its calibration inputs
 * (a {@link Hessian} or a K×K Float64Array):
 * ```
 * dead columns (H[k,k] = 0): H[k,k] = 1, W[:,k] = 0
 * act-order: perm = argsort(−diag H); W = W[:, perm]; H = H[perm][:, perm]
 * H += λ·mean(diag H)·I   (λ = percDamp; on a non-positive pivot λ ×= 10, up to dampRetries times)
 * U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), float64
 * for each block [i1, i2) of blockSize columns:
 *   for j in block:   (at a group start: scale, zero = params of W[:, j : j+G] as updated so far)
 *     q = quant(W[:, j]);  err = (W[:, j] − q) / U[j,j];  W[:, j+1:i2] −= err ⊗ U[j, j+1:i2]
 *   W[:, i2:] −= Err[:, block] · U[block, i2:]          (one GEMM, `backend.sgemm` when given)
 * ```
 * Groups are columns `[g·G, (g+1)·G)` of the processing order; under act-order the record stores
 * `gIdx[perm[j]] = floor(j/G)`. ggml block formats (`q4_k`, `q2_k`, …): at each block's first column,
 * ggml's own quantizer (the record's RTN) chooses the block's scales and mins from the block's weights as
 * updated so far (with `staticGroups`: from the original weights, which also allows `actOrder`); each
 * column is then coded to the nearest value of its block's fixed grid, and the error feeds forward as usual.
 * K must be a multiple of the block; `mseClip` is refused. Weights are worked on in float32, H and U in float64.
 * Throws an Error naming the problem for bad shapes, non-finite input, or an H that stays
 * non-positive-definite after every retry.
 *
 * Memory: three K×K Float64Arrays (H, U and Cholesky scratch; 3·8·K² bytes, 400 MB at K = 4096) plus
 * about three N×K float32/uint8 copies of the weight. Layers that share an input (wq/wk/wv, w1/w3)
 * can share one {@link Hessian}.
 */
export function gptqQuantizeWithInfo(
  weight: Float32Array,
  N: number,
  K: number,
  format: QuantFormat | string | number,
  hessian: Hessian | Float64Array,
  opts: GptqOptions = {},
): { q: QuantizedLinear; info: GptqInfo } {
  checkWeight("gptqQuantize", weight, N, K);
  const f = getFormat(format);
  if (hessian === undefined) fail("a Hessian (createHessian + add calibration activations) is required");
  const H = hessianMatrix(hessian, K);
  const B = opts.blockSize ?? 128;
  let percDamp = opts.percDamp ?? 0.01;
  const retries = opts.dampRetries ?? 3;
  if (!Number.isSafeInteger(B) || B < 1) fail(`blockSize must be a positive integer, got ${B}`);
  if (!(percDamp >= 0) || !Number.isFinite(percDamp)) fail(`percDamp must be ≥ 0, got ${percDamp}`);
  const actOrder = opts.actOrder === true;
  const perChannel = f.groupSize === -1;
  const G = perChannel ? K : f.groupSize;
  const staticGroups = opts.staticGroups === true && !perChannel;
  const nG = groupCount(f, K);
  // ggml block formats: each block's scales come from ggml's own quantizer, run on the block's weights as
  // updated so far right before its first column (or on the original weights with staticGroups); the
  // columns are then coded one by one on the block's fixed grid, with GPTQ's error feedback.
  const blk = isBlockFormat(f) ? f : undefined;
  const grid = blk ? blockGridOf(blk) : undefined;
  const rowBytes = blk ? blockRowBytes(blk, K) : 0;
  if (blk) {
    if (K % G !== 0) fail(`K = ${K} is not a multiple of ${f.name}'s block of ${G} weights`);
    if (opts.mseClip === true) fail(`mseClip does not apply to the block format ${f.name}`);
    if (actOrder && !staticGroups)
      fail(
        `actOrder into the block format ${f.name} needs staticGroups (ggml blocks are contiguous columns)`,
      );
  }
  const blocks = new Uint8Array(N * rowBytes);

  // Dead columns and the working copy W (float32), zeroed where the input is never active.
  const dead = new Uint8Array(K);
  let deadColumns = 0;
  let meanDiag = 0;
  for (let k = 0; k < K; k++) {
    if (H[k * K + k] === 0) {
      dead[k] = 1;
      deadColumns++;
    }
    meanDiag += dead[k] ? 1 : H[k * K + k];
  }
  meanDiag /= K;
  const W0 = weight.slice();
  if (deadColumns > 0) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) if (dead[k]) W0[n * K + k] = 0;

  // Static groups: parameters from the (dead-zeroed) original weights, natural contiguous groups.
  const scales = new Float32Array(N * nG);
  const zeros = new Float32Array(N * nG);
  if (staticGroups && blk) {
    for (let n = 0; n < N; n++) blk.quantizeRow(W0, n * K, K, blocks, n * rowBytes, scales, zeros, 0);
  } else if (staticGroups) {
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < nG; g++) {
        const p = findGroupParams(f, W0, n * K + g * G, Math.min(G, K - g * G), 1, opts);
        scales[n * nG + g] = p.scale;
        zeros[n * nG + g] = p.zero;
      }
    }
  }

  const perm = new Int32Array(K);
  for (let k = 0; k < K; k++) perm[k] = k;
  if (actOrder) {
    const diag = (k: number) => (dead[k] ? 1 : H[k * K + k]);
    const order = Array.from(perm).sort((a, b) => diag(b) - diag(a) || a - b);
    perm.set(order);
  }
  const Wp = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let j = 0; j < K; j++) Wp[n * K + j] = W0[n * K + perm[j]];

  // U = upper Cholesky of (H_perm + λ·mean·I)⁻¹, retrying with more damping.
  const U = new Float64Array(K * K);
  const work = new Float64Array(K * K);
  let ok = false;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const damp = percDamp * meanDiag;
    const get = (i: number, j: number): number => {
      const a = perm[i];
      const b = perm[j];
      if (i === j) return (dead[a] ? 1 : H[a * K + a]) + damp;
      return H[a * K + b];
    };
    if (upperCholeskyOfInverse(get, K, U, work)) {
      ok = true;
      break;
    }
    if (attempt < retries) percDamp = percDamp > 0 ? percDamp * 10 : 0.01;
  }
  if (!ok) {
    fail(
      `the Hessian is not positive definite even with dampening ${percDamp} × mean diagonal ` +
        `(${retries} retries); check the calibration activations (K = ${K}, ${deadColumns} dead columns)`,
    );
  }

  // Main loop: quantize column by column, propagate the error inside the block, then GEMM the rest.
  const Q = new Uint8Array(N * K);
  const Err = new Float32Array(N * B);
  const Ublk = new Float32Array(B * K);
  const cur: GroupParams[] = Array.from({ length: N }, () => ({ scale: 1, zero: 0 }));
  const ab = new Float64Array(3);
  const gemm = opts.backend
    ? (a: Parameters<Backend["sgemm"]>[0]) => opts.backend!.sgemm(a)
    : plainBlockedSgemm;
  let loss = 0;
  for (let i1 = 0; i1 < K; i1 += B) {
    const i2 = Math.min(K, i1 + B);
    const cnt = i2 - i1;
    for (let j = i1; j < i2; j++) {
      if (blk && grid) {
        const col = perm[j];
        const bo = Math.floor(col / G) * blk.block.blockBytes;
        if (!staticGroups && j % G === 0) {
          // This block's scales: ggml's quantizer on the updated weights of its columns.
          for (let n = 0; n < N; n++) blk.block.encode(Wp, n * K + j, G, blocks, n * rowBytes + bo);
        }
        const uj = j * K;
        const d = U[uj + j];
        for (let n = 0; n < N; n++) {
          const rn = n * K;
          const w = Wp[rn + j];
          const o = n * rowBytes + bo;
          const c = nearestGridCode(grid, blocks, o, col % G, w, ab);
          grid.setCode(blocks, o, col % G, c);
          const diff = w - ab[2];
          loss += (diff * diff) / (d * d) / 2;
          const e = diff / d;
          Err[n * B + (j - i1)] = e;
          if (e !== 0) for (let c2 = j + 1; c2 < i2; c2++) Wp[rn + c2] -= e * U[uj + c2];
        }
        continue;
      }
      if (staticGroups) {
        const g = Math.floor(perm[j] / G);
        for (let n = 0; n < N; n++) {
          cur[n].scale = scales[n * nG + g];
          cur[n].zero = zeros[n * nG + g];
        }
      } else if (j % G === 0) {
        const g = j / G;
        const len = Math.min(G, K - j);
        for (let n = 0; n < N; n++) {
          const p = findGroupParams(f, Wp, n * K + j, len, 1, opts);
          cur[n] = p;
          scales[n * nG + g] = p.scale;
          zeros[n * nG + g] = p.zero;
        }
      }
      const uj = j * K;
      const d = U[uj + j];
      for (let n = 0; n < N; n++) {
        const rn = n * K;
        const w = Wp[rn + j];
        const { scale, zero } = cur[n];
        const q = f.code(w, scale, zero);
        Q[rn + j] = q;
        const diff = w - f.value(q, scale, zero);
        loss += (diff * diff) / (d * d) / 2;
        const e = diff / d;
        Err[n * B + (j - i1)] = e;
        if (e !== 0) for (let c = j + 1; c < i2; c++) Wp[rn + c] -= e * U[uj + c];
      }
    }
    if (i2 < K) {
      // Ublk = U[i1:i2, i2:]ᵀ (rest × cnt), so the GEMM runs in the weight layout (transB): every
      // output is a dot product of two contiguous rows.
      const rest = K - i2;
      for (let r = 0; r < cnt; r++) {
        const src = (i1 + r) * K + i2;
        for (let c = 0; c < rest; c++) Ublk[c * cnt + r] = U[src + c];
      }
      gemm({
        M: N,
        N: rest,
        K: cnt,
        A: Err,
        lda: B,
        B: Ublk,
        ldb: cnt,
        transB: true,
        C: Wp,
        cOffset: i2,
        ldc: K,
        alpha: -1,
        beta: 1,
      });
    }
  }

  if (blk)
    return { q: quantizedFromGgmlBlocks(blk, blocks, N, K), info: { percDamp, deadColumns, loss, perm } };
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) for (let j = 0; j < K; j++) codes[n * K + perm[j]] = Q[n * K + j];
  let gIdx: Int32Array | undefined;
  if (actOrder && !staticGroups && !perChannel) {
    gIdx = new Int32Array(K);
    for (let j = 0; j < K; j++) gIdx[perm[j]] = Math.floor(j / G);
  }
  const q = packQuantizedLinear(f, N, K, codes, scales, zeros, gIdx);
  return { q, info: { percDamp, deadColumns, loss, perm } };
}

/** {@link gptqQuantizeWithInfo} without the report. */
export function gptqQuantize(
  weight: Float32Array,
  N: number,
  K: number,
  format: QuantFormat | string | number,
  hessian: Hessian | Float64Array,
  opts: GptqOptions = {},
): QuantizedLinear {
  return gptqQuantizeWithInfo(weight, N, K, format, hessian, opts).q;
}

/** Options of the {@link gptq} quantizer: {@link GptqOptions}, with `dampening` as the name of `percDamp`. */
export interface GptqQuantizerOptions extends GptqOptions {
  /** Dampening λ as a fraction of the mean diagonal of H (default 0.01); the same as `percDamp`. */
  dampening?: number;
}

/**
 * GPTQ as a {@link Quantizer}: `needsHessian` is true, so `quantizeModel` runs its sequential calibration and
 * passes each layer's Hessian in `opts.hessian` (required; `opts.backend` runs the block updates).
 * `gptq({ actOrder: true, dampening: 0.01, blockSize: 128 })`. The options are checked here, naming the bad one.
 */
export function gptq(opts: GptqQuantizerOptions = {}): Quantizer {
  const { dampening, ...rest } = opts;
  if (dampening !== undefined && opts.percDamp !== undefined && dampening !== opts.percDamp)
    fail(`dampening ${dampening} and percDamp ${opts.percDamp} disagree; give one`);
  const percDamp = dampening ?? opts.percDamp;
  if (percDamp !== undefined && !(Number.isFinite(percDamp) && percDamp >= 0))
    fail(`dampening must be a finite number ≥ 0, got ${percDamp}`);
  const B = opts.blockSize;
  if (B !== undefined && !(Number.isSafeInteger(B) && B >= 1))
    fail(`blockSize must be a positive integer, got ${B}`);
  const R = opts.dampRetries;
  if (R !== undefined && !(Number.isSafeInteger(R) && R >= 0))
    fail(`dampRetries must be an integer ≥ 0, got ${R}`);
  const settings: GptqOptions = { ...rest, ...(percDamp !== undefined ? { percDamp } : {}) };
  return {
    name: "gptq",
    needsHessian: true,
    quantize(weight, N, K, format, qopts = {}) {
      if (qopts.hessian === undefined) fail("the GPTQ quantizer needs opts.hessian (calibration statistics)");
      return gptqQuantize(weight, N, K, format, qopts.hessian, {
        ...settings,
        backend: qopts.backend ?? settings.backend,
      });
    },
  };
}

/** {@link gptq} under its older name. */
export const createGptqQuantizer: (opts?: GptqQuantizerOptions) => Quantizer = gptq;
