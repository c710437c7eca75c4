// WGSL sources of the WebGPU kernels. Packed weights are read as array<u32>, so codes unpack exactly;
// every kernel uses 64 invocations per workgroup (WebGPU compatibility mode allows 128) and at most four
// storage buffers (the compatibility-mode limit), which is why scales, zeros and group indices share one.

/** Invocations per workgroup of every kernel. */
export const WORKGROUP = 64;
/** Rows of x (qmatmul) or g (qmatmulT) handled together: one vec4 lane each. */
export const ROW_TILE = 4;
/** Output tile of the sgemm kernel (TILE × TILE, 8×8 invocations computing 4×4 each). */
export const GEMM_TILE = 32;

/**
 * Uniform block shared by the quantized kernels (8 × u32):
 * N, K, rows, G (groups per row), wpr (u32 words per packed row), zerosAt and groupAt (offsets into
 * `prm`, which holds `scales[N·G] | zeros[N·G] | groupOf[K]` as f32), rowTiles = ceil(rows / 4).
 */
const QUANT_HEADER = (bits: number) => `
const BITS: u32 = ${bits}u;
const MASK: u32 = ${(2 ** bits - 1) >>> 0}u;
struct Params { N: u32, K: u32, rows: u32, G: u32, wpr: u32, zerosAt: u32, groupAt: u32, rowTiles: u32 }
@group(0) @binding(0) var<uniform> p: Params;

// Code (n, k): bit offset k·BITS inside row n; a code may straddle two words (INT3).
fn code(rowBase: u32, k: u32) -> u32 {
  let bit = k * BITS;
  let wi = rowBase + (bit >> 5u);
  let s = bit & 31u;
  var v = qw[wi] >> s;
  if (s + BITS > 32u) {
    v = v | (qw[wi + 1u] << (32u - s));
  }
  return v & MASK;
}

// w[n, k] = scales[n·G + g(k)] · (code(n, k) − zeros[n·G + g(k)])
fn weight(n: u32, k: u32, g: u32) -> f32 {
  let gi = n * p.G + g;
  return prm[gi] * (f32(code(n * p.wpr, k)) - prm[p.zerosAt + gi]);
}
`;

/**
 * qmatmul: `y[r·N + n] = Σ_k x[r·K + k] · w[n, k]`.
 * Workgroup (x: 64 output columns n) × (row tiles of 4, grid-strided). The 4 rows' x values for a chunk
 * of 64 k are staged in workgroup memory as vec4 (one lane per row), so each weight is unpacked once and
 * multiplied into four rows at once.
 */
export function qmatmulWgsl(bits: number): string {
  return `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> qw: array<u32>;
@group(0) @binding(3) var<storage, read> prm: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
${QUANT_HEADER(bits)}
var<workgroup> xs: array<vec4<f32>, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let t = lid.x;
  let n = wid.x * ${WORKGROUP}u + t;
  let nn = min(n, p.N - 1u);
  for (var tile = wid.y; tile < p.rowTiles; tile += nwg.y) {
    let r0 = tile * 4u;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.K; k0 += ${WORKGROUP}u) {
      let k = k0 + t;
      var v = vec4<f32>(0.0);
      if (k < p.K) {
        for (var i = 0u; i < 4u; i++) {
          if (r0 + i < p.rows) { v[i] = x[(r0 + i) * p.K + k]; }
        }
      }
      xs[t] = v;
      workgroupBarrier();
      let kEnd = min(${WORKGROUP}u, p.K - k0);
      for (var kk = 0u; kk < kEnd; kk++) {
        let kx = k0 + kk;
        acc += xs[kk] * weight(nn, kx, u32(prm[p.groupAt + kx]));
      }
      workgroupBarrier();
    }
    if (n < p.N) {
      for (var i = 0u; i < 4u; i++) {
        if (r0 + i < p.rows) { y[(r0 + i) * p.N + n] = acc[i]; }
      }
    }
  }
}
`;
}

/**
 * qmatmulT: `dx[r·K + k] = Σ_n g[r·N + n] · w[n, k]`.
 * Workgroup (x: 64 input columns k) × (row tiles of 4); g for a chunk of 64 n is staged as vec4.
 * Neighbouring invocations read neighbouring codes of the same packed word.
 */
export function qmatmulTWgsl(bits: number): string {
  return `
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> qw: array<u32>;
@group(0) @binding(3) var<storage, read> prm: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
${QUANT_HEADER(bits)}
var<workgroup> gs: array<vec4<f32>, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let t = lid.x;
  let k = wid.x * ${WORKGROUP}u + t;
  let kk = min(k, p.K - 1u);
  let gk = u32(prm[p.groupAt + kk]);
  for (var tile = wid.y; tile < p.rowTiles; tile += nwg.y) {
    let r0 = tile * 4u;
    var acc = vec4<f32>(0.0);
    for (var n0 = 0u; n0 < p.N; n0 += ${WORKGROUP}u) {
      let n = n0 + t;
      var v = vec4<f32>(0.0);
      if (n < p.N) {
        for (var i = 0u; i < 4u; i++) {
          if (r0 + i < p.rows) { v[i] = g[(r0 + i) * p.N + n]; }
        }
      }
      gs[t] = v;
      workgroupBarrier();
      let nEnd = min(${WORKGROUP}u, p.N - n0);
      for (var j = 0u; j < nEnd; j++) {
        acc += gs[j] * weight(n0 + j, kk, gk);
      }
      workgroupBarrier();
    }
    if (k < p.K) {
      for (var i = 0u; i < 4u; i++) {
        if (r0 + i < p.rows) { dx[(r0 + i) * p.K + k] = acc[i]; }
      }
    }
  }
}
`;
}

/** dequantize: `out[n·K + k] = w[n, k]`; workgroup (x: 64 columns) × (rows n, grid-strided). */
export function dequantizeWgsl(bits: number): string {
  return `
@group(0) @binding(2) var<storage, read> qw: array<u32>;
@group(0) @binding(3) var<storage, read> prm: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
${QUANT_HEADER(bits)}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let k = gid.x;
  if (k >= p.K) { return; }
  let gk = u32(prm[p.groupAt + k]);
  for (var n = wid.y; n < p.N; n += nwg.y) {
    dst[n * p.K + k] = weight(n, k, gk);
  }
}
`;
}

/**
 * Dense sgemm: `acc[m·N + n] = Σ_k op(A)[m, k] · op(B)[k, n]` (alpha, beta and ldc are applied on the
 * host). 32×32 output tiles, k in chunks of 16; A is staged as f32 [16][32], B as vec4 [16][8] so each
 * invocation's inner step is 4 scalar × vec4 FMAs into its 4×4 block.
 * Uniform: M, N, K, aOff, sAm, sAk, bOff, sBk, sBn, tilesM (strides encode lda/ldb and the transposes).
 */
export const SGEMM_WGSL = `
struct Params { M: u32, N: u32, K: u32, aOff: u32, sAm: u32, sAk: u32, bOff: u32, sBk: u32, sBn: u32, tilesM: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<array<f32, 32>, 16>;
var<workgroup> Bs: array<array<vec4<f32>, 8>, 16>;

fn a(m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  return A[p.aOff + m * p.sAm + k * p.sAk];
}
fn b(k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) { return 0.0; }
  return B[p.bOff + k * p.sBk + n * p.sBn];
}

@compute @workgroup_size(8, 8)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let li = lid.y * 8u + lid.x;
  let n0 = wid.x * 32u;
  for (var tm = wid.y; tm < p.tilesM; tm += nwg.y) {
    let m0 = tm * 32u;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.K; k0 += 16u) {
      for (var i = 0u; i < 8u; i++) {
        let e = li + i * 64u;
        As[e / 32u][e % 32u] = a(m0 + e % 32u, k0 + e / 32u);
      }
      for (var i = 0u; i < 2u; i++) {
        let e = li + i * 64u;
        let kk = e / 8u;
        let nb = n0 + (e % 8u) * 4u;
        Bs[kk][e % 8u] = vec4<f32>(b(k0 + kk, nb), b(k0 + kk, nb + 1u), b(k0 + kk, nb + 2u), b(k0 + kk, nb + 3u));
      }
      workgroupBarrier();
      for (var kk = 0u; kk < 16u; kk++) {
        let bv = Bs[kk][lid.x];
        for (var i = 0u; i < 4u; i++) {
          acc[i] += As[kk][lid.y * 4u + i] * bv;
        }
      }
      workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
      let m = m0 + lid.y * 4u + i;
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + lid.x * 4u + j;
        if (m < p.M && n < p.N) { C[m * p.N + n] = acc[i][j]; }
      }
    }
  }
}
`;

/**
 * Skinny sgemm (M ≤ {@link GEMV_MAX_ROWS}, e.g. the decoding matvec): `acc[m·N + n] = Σ_k op(A)[m, k] · op(B)[k, n]`.
 * The 32×32 tile kernel would spend 31/32 of its work on padding at M = 1, so here one invocation owns
 * one column n for 4 rows at once (vec4 lanes); op(A) for a chunk of 64 k is staged in workgroup
 * memory. Same uniform block as {@link SGEMM_WGSL} (tilesM counts 4-row tiles here).
 */
export const SGEMV_WGSL = `
struct Params { M: u32, N: u32, K: u32, aOff: u32, sAm: u32, sAk: u32, bOff: u32, sBk: u32, sBn: u32, tilesM: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
var<workgroup> as4: array<vec4<f32>, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let t = lid.x;
  let n = wid.x * ${WORKGROUP}u + t;
  let nn = min(n, p.N - 1u);
  for (var tile = wid.y; tile < p.tilesM; tile += nwg.y) {
    let m0 = tile * 4u;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.K; k0 += ${WORKGROUP}u) {
      let k = k0 + t;
      var v = vec4<f32>(0.0);
      if (k < p.K) {
        for (var i = 0u; i < 4u; i++) {
          if (m0 + i < p.M) { v[i] = A[p.aOff + (m0 + i) * p.sAm + k * p.sAk]; }
        }
      }
      as4[t] = v;
      workgroupBarrier();
      let kEnd = min(${WORKGROUP}u, p.K - k0);
      for (var kk = 0u; kk < kEnd; kk++) {
        acc += as4[kk] * B[p.bOff + (k0 + kk) * p.sBk + nn * p.sBn];
      }
      workgroupBarrier();
    }
    if (n < p.N) {
      for (var i = 0u; i < 4u; i++) {
        if (m0 + i < p.M) { C[(m0 + i) * p.N + n] = acc[i]; }
      }
    }
  }
}
`;

/** Row count up to which sgemm takes the {@link SGEMV_WGSL} path. */
export const GEMV_MAX_ROWS = 8;

/**
 * Adam / AdamW update of one tensor (quant-kernels' `AdamWArgs` maths), grid-strided. `s` holds
 * `params[n] | m[n] | v[n]` and stays resident between steps; uniform: n, stride, then f32
 * β1, β2, 1−β1, 1−β2, lr, c1 = 1/(1−β1ᵗ), c2 = 1/(1−β2ᵗ), eps, decay (1 − lr·wd or 1), l2 (0 or wd).
 */
export const ADAMW_WGSL = `
struct Params { n: u32, stride: u32, b1: f32, b2: f32, ob1: f32, ob2: f32, lr: f32, c1: f32, c2: f32, eps: f32, decay: f32, l2: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  for (var j = gid.x; j < p.n; j = j + p.stride) {
    let w = s[j];
    let gj = g[j] + p.l2 * w;
    let m = p.b1 * s[p.n + j] + p.ob1 * gj;
    let v = p.b2 * s[2u * p.n + j] + p.ob2 * gj * gj;
    s[p.n + j] = m;
    s[2u * p.n + j] = v;
    s[j] = w * p.decay - (p.lr * (m * p.c1)) / (sqrt(v * p.c2) + p.eps);
  }
}
`;
