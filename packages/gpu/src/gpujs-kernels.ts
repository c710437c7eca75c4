// gpu.js kernel sources. Strings, not functions: gpu.js parses the source text, and a string survives
// any bundler or minifier unchanged. Only float arithmetic (no bit operations): every non-cpu gpu.js mode
// passes arguments as float32, and WebGL emulates bit operations with loops.
//
// Each kernel has a 1-D output of `outer × inner` values; thread t is (o, i) with
// `o = floor((t + 0.5) / inner)`, `i = t − o·inner` (the +0.5 keeps the division exact under a GPU's
// approximate reciprocal). Indices stay below 2^24, where float32 integers are exact (the backend checks).

/**
 * `y[r*N + n] = Σ_k x[r*K + k] · scales[n*G + g(k)] · (code(n, k) − zeros[n*G + g(k)])`, output `[rows × N]`.
 * Constants: N, K, G, E (elements per row), C (codes per element), R (radix 2^bits).
 */
export const QMATMUL_SOURCE = `function (x, codes, groupOf, scales, zeros) {
  const t = this.thread.x;
  const r = Math.floor((t + 0.5) / this.constants.N);
  const n = t - r * this.constants.N;
  let acc = 0.0;
  for (let e = 0; e < this.constants.E; e++) {
    let v = codes[n * this.constants.E + e];
    for (let j = 0; j < this.constants.C; j++) {
      const k = e * this.constants.C + j;
      if (k < this.constants.K) {
        const hi = Math.floor(v / this.constants.R);
        const gi = n * this.constants.G + groupOf[k];
        acc = acc + x[r * this.constants.K + k] * (scales[gi] * ((v - hi * this.constants.R) - zeros[gi]));
        v = hi;
      }
    }
  }
  return acc;
}`;

/**
 * `dx[r*K + k] = Σ_n g[r*N + n] · scales[n*G + g(k)] · (code(n, k) − zeros[n*G + g(k)])`, output `[rows × K]`.
 * Each thread fixes k, so its element `e = floor(k / C)` and divisor `R^(k mod C)` are computed once.
 */
export const QMATMUL_T_SOURCE = `function (g, codes, groupOf, scales, zeros) {
  const t = this.thread.x;
  const r = Math.floor((t + 0.5) / this.constants.K);
  const k = t - r * this.constants.K;
  const e = Math.floor((k + 0.5) / this.constants.C);
  const j = k - e * this.constants.C;
  let div = 1.0;
  for (let i = 0; i < this.constants.C; i++) {
    if (i < j) {
      div = div * this.constants.R;
    }
  }
  const gk = groupOf[k];
  let acc = 0.0;
  for (let n = 0; n < this.constants.N; n++) {
    const s = Math.floor(codes[n * this.constants.E + e] / div);
    const gi = n * this.constants.G + gk;
    acc = acc + g[r * this.constants.N + n] * (scales[gi] * ((s - Math.floor(s / this.constants.R) * this.constants.R) - zeros[gi]));
  }
  return acc;
}`;

/** `out[n*K + k] = scales[n*G + g(k)] · (code(n, k) − zeros[n*G + g(k)])`, output `[N × K]`. */
export const DEQUANTIZE_SOURCE = `function (codes, groupOf, scales, zeros) {
  const t = this.thread.x;
  const n = Math.floor((t + 0.5) / this.constants.K);
  const k = t - n * this.constants.K;
  const e = Math.floor((k + 0.5) / this.constants.C);
  const j = k - e * this.constants.C;
  let div = 1.0;
  for (let i = 0; i < this.constants.C; i++) {
    if (i < j) {
      div = div * this.constants.R;
    }
  }
  const s = Math.floor(codes[n * this.constants.E + e] / div);
  const gi = n * this.constants.G + groupOf[k];
  return scales[gi] * ((s - Math.floor(s / this.constants.R) * this.constants.R) - zeros[gi]);
}`;

/**
 * Dense product `acc[m*N + n] = Σ_k op(A)[m, k] · op(B)[k, n]`, output `[M × N]`; the host applies
 * alpha, beta and ldc. op(A)[m, k] = A[AO + m*SAM + k*SAK] (strides SAM/SAK encode lda and transA),
 * likewise B with SBK/SBN.
 */
export const GEMM_SOURCE = `function (a, b) {
  const t = this.thread.x;
  const m = Math.floor((t + 0.5) / this.constants.N);
  const n = t - m * this.constants.N;
  let acc = 0.0;
  for (let k = 0; k < this.constants.K; k++) {
    acc = acc + a[this.constants.AO + m * this.constants.SAM + k * this.constants.SAK] * b[this.constants.BO + k * this.constants.SBK + n * this.constants.SBN];
  }
  return acc;
}`;
