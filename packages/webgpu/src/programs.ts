/**
 * WGSL programs for tfjs-backend-webgpu 4.22 (`backend.runWebGPUProgram(program, inputs, dtype,
 * uniforms)`). The backend prepends to `getUserCode()` the declarations of the output (`result:
 * array<f32>`), one `var<storage, read> <name>: array<f32>` per entry of `variableNames` (in
 * order, bound after the output), a `uniforms` struct (NAN, INFINITY, every input's shape and
 * strides, outShape, outShapeStrides, `size` when `program.size`, then `program.uniforms`) and a
 * `_start` entry point that calls `main(index)` (index = the flat global invocation index).
 *
 * Every dimension is a uniform, never a literal in the code: the backend caches a compiled
 * pipeline under `shaderKey` + the inputs' ranks and dtypes (not their sizes), so one pipeline
 * serves every shape. Only the workgroup size is baked in (it is part of the cache key).
 *
 * Names of inputs avoid WGSL built-ins (`cos`, `sin`, ...): they become module-scope variables.
 */

/** What the backend needs of a program (tfjs-backend-webgpu's `WebGPUProgram`). */
export interface WebGpuProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  dispatch: [number, number, number];
  variableNames: string[];
  uniforms?: string;
  size?: boolean;
  workgroupSize: [number, number, number];
  getUserCode(): string;
}

const flat = (shape: number[]) => ({ x: shape.map((_, i) => i) });

/** The workgroup of a per-row reduction: 64 lanes, 256 for long rows. A power of two. */
export function rowWorkgroupSize(d: number): number {
  return d >= 1024 ? 256 : 64;
}

/** Tree reduction of `partial` (WG lanes) into partial[0]; every lane reaches every barrier. */
const treeSum = (buf: string) => `
  for (var s = WG / 2; s > 0; s = s / 2) {
    if (tid < s) { ${buf}[tid] = ${buf}[tid] + ${buf}[tid + s]; }
    workgroupBarrier();
  }`;

/**
 * One workgroup per row of `x [rows, d]` (the row index from the workgroup id, so a 2-D dispatch
 * of many rows works too): lanes stride over the row, a shared-memory tree sum of x², then
 * `y = x · rsqrt(mean(x²) + eps) · w′`. Rows past `rows` (an oversized dispatch) do no memory
 * access but still reach every barrier.
 */
export function rmsNormProgram(rows: number, d: number): WebGpuProgram {
  const wg = rowWorkgroupSize(d);
  return {
    outputShape: [rows, d],
    shaderKey: 'para_rmsnorm',
    dispatchLayout: flat([rows, d]),
    dispatch: [rows, 1, 1],
    variableNames: ['xs', 'weight'],
    uniforms: 'rows : i32, d : i32, eps : f32, unitOffset : i32,',
    workgroupSize: [wg, 1, 1],
    getUserCode: () => `
  const WG = ${wg};
  var<workgroup> partial : array<f32, ${wg}>;
  fn main(index : i32) {
    let row = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
    let tid = i32(localId.x);
    let d = uniforms.d;
    let n = select(0, d, row < uniforms.rows);
    let base = row * d;
    var acc = 0.0;
    for (var c = tid; c < n; c = c + WG) {
      let v = xs[base + c];
      acc = acc + v * v;
    }
    partial[tid] = acc;
    workgroupBarrier();
    ${treeSum('partial')}
    let r = inverseSqrt(partial[0] / f32(d) + uniforms.eps);
    let off = select(0.0, 1.0, uniforms.unitOffset != 0);
    for (var c = tid; c < n; c = c + WG) {
      result[base + c] = xs[base + c] * r * (weight[c] + off);
    }
  }
`,
  };
}

/** `rinv [rows]` = rsqrt(mean(x²) + eps) per row of `x [rows, d]` (the gradient's first pass). */
export function rmsInvProgram(rows: number, d: number): WebGpuProgram {
  const wg = rowWorkgroupSize(d);
  return {
    outputShape: [rows],
    shaderKey: 'para_rmsinv',
    dispatchLayout: flat([rows]),
    dispatch: [rows, 1, 1],
    variableNames: ['xs'],
    uniforms: 'rows : i32, d : i32, eps : f32,',
    workgroupSize: [wg, 1, 1],
    getUserCode: () => `
  const WG = ${wg};
  var<workgroup> partial : array<f32, ${wg}>;
  fn main(index : i32) {
    let row = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
    let tid = i32(localId.x);
    let d = uniforms.d;
    let n = select(0, d, row < uniforms.rows);
    let base = row * d;
    var acc = 0.0;
    for (var c = tid; c < n; c = c + WG) {
      let v = xs[base + c];
      acc = acc + v * v;
    }
    partial[tid] = acc;
    workgroupBarrier();
    ${treeSum('partial')}
    if (tid == 0 && row < uniforms.rows) {
      result[row] = inverseSqrt(partial[0] / f32(d) + uniforms.eps);
    }
  }
`,
  };
}

/**
 * `dx [rows, d]` of RMSNorm: with r = rinv[row] and g = dy · w′, `dx = r·g − x·r³·mean(g·x)`
 * (one workgroup per row, a tree sum of g·x).
 */
export function rmsNormDxProgram(rows: number, d: number): WebGpuProgram {
  const wg = rowWorkgroupSize(d);
  return {
    outputShape: [rows, d],
    shaderKey: 'para_rmsnorm_dx',
    dispatchLayout: flat([rows, d]),
    dispatch: [rows, 1, 1],
    variableNames: ['dy', 'xs', 'weight', 'rinv'],
    uniforms: 'rows : i32, d : i32, unitOffset : i32,',
    workgroupSize: [wg, 1, 1],
    getUserCode: () => `
  const WG = ${wg};
  var<workgroup> partial : array<f32, ${wg}>;
  fn main(index : i32) {
    let row = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
    let tid = i32(localId.x);
    let d = uniforms.d;
    let live = row < uniforms.rows;
    let n = select(0, d, live);
    let base = row * d;
    let off = select(0.0, 1.0, uniforms.unitOffset != 0);
    var acc = 0.0;
    for (var c = tid; c < n; c = c + WG) {
      acc = acc + dy[base + c] * (weight[c] + off) * xs[base + c];
    }
    partial[tid] = acc;
    workgroupBarrier();
    ${treeSum('partial')}
    let r = rinv[select(0, row, live)];
    let k = r * r * r * (partial[0] / f32(d));
    for (var c = tid; c < n; c = c + WG) {
      let g = dy[base + c] * (weight[c] + off);
      result[base + c] = r * g - xs[base + c] * k;
    }
  }
`,
  };
}

/** `dweight [d]` = Σ_rows dy · x · rinv (one invocation per column; `rows` a uniform, summed in order). */
export function rmsNormDwProgram(d: number): WebGpuProgram {
  return {
    outputShape: [d],
    shaderKey: 'para_rmsnorm_dw',
    dispatchLayout: flat([d]),
    dispatch: [Math.ceil(d / 64), 1, 1],
    variableNames: ['dy', 'xs', 'rinv'],
    uniforms: 'rows : i32, d : i32,',
    workgroupSize: [64, 1, 1],
    getUserCode: () => `
  fn main(index : i32) {
    let d = uniforms.d;
    if (index >= d) { return; }
    var acc = 0.0;
    for (var row = 0; row < uniforms.rows; row = row + 1) {
      let i = row * d + index;
      acc = acc + dy[i] * xs[i] * rinv[row];
    }
    result[index] = acc;
  }
`,
  };
}

/** An elementwise program over `n` float32 values: `body` sets `v` from index `i`. */
function elementwise(
  key: string,
  n: number,
  variableNames: string[],
  body: string,
  uniforms?: string,
): WebGpuProgram {
  const program: WebGpuProgram = {
    outputShape: [n],
    shaderKey: key,
    dispatchLayout: flat([n]),
    dispatch: [Math.ceil(n / 64), 1, 1],
    variableNames,
    size: true,
    workgroupSize: [64, 1, 1],
    getUserCode: () => `
  fn main(index : i32) {
    if (index >= uniforms.size) { return; }
    let i = index;
    ${body}
    result[i] = v;
  }
`,
  };
  if (uniforms !== undefined) program.uniforms = uniforms;
  return program;
}

/** σ as tfjs-backend-webgpu's Sigmoid: 1 / (1 + exp(−g)). */
const SIGMOID = 'let s = 1.0 / (1.0 + exp(-1.0 * g));';

/** `y = gate · σ(gate) · up` (the generic path's order of operations). */
export function swigluProgram(n: number): WebGpuProgram {
  return elementwise(
    'para_swiglu',
    n,
    ['gate', 'up'],
    `let g = gate[i]; ${SIGMOID} let v = (g * s) * up[i];`,
  );
}

/** `dgate = dy · up · s · (1 + gate · (1 − s))`. */
export function swigluDgateProgram(n: number): WebGpuProgram {
  return elementwise(
    'para_swiglu_dgate',
    n,
    ['dy', 'gate', 'up'],
    `let g = gate[i]; ${SIGMOID} let v = dy[i] * up[i] * s * (1.0 + g * (1.0 - s));`,
  );
}

/** `dup = dy · gate · s`. */
export function swigluDupProgram(n: number): WebGpuProgram {
  return elementwise(
    'para_swiglu_dup',
    n,
    ['dy', 'gate'],
    `let g = gate[i]; ${SIGMOID} let v = dy[i] * (g * s);`,
  );
}

/**
 * RoPE, rotate-half, over `x [B, H, T, hd]` with tables `[B or 1, 1, T, hd]` (`tableBatch` 1 or
 * B, a uniform): forward `y[j] = x[j]·c[j] − x[j+h]·s[j]`, `y[j+h] = x[j+h]·c[j+h] + x[j]·s[j+h]`; inverse
 * (the transpose) `y[j] = x[j]·c[j] + x[j+h]·s[j+h]`, `y[j+h] = x[j+h]·c[j+h] − x[j]·s[j]`.
 */
export function ropeProgram(
  shape: [number, number, number, number],
  inverse: boolean,
): WebGpuProgram {
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  const body = inverse
    ? `
    if (j < half) {
      v = xs[i] * cosTable[c] + xs[i + half] * sinTable[c + half];
    } else {
      v = xs[i] * cosTable[c] - xs[i - half] * sinTable[c - half];
    }`
    : `
    if (j < half) {
      v = xs[i] * cosTable[c] - xs[i + half] * sinTable[c];
    } else {
      v = xs[i] * cosTable[c] + xs[i - half] * sinTable[c];
    }`;
  return elementwise(
    inverse ? 'para_rope_inv' : 'para_rope',
    n,
    ['xs', 'cosTable', 'sinTable'],
    `
    let hd = uniforms.hd;
    let half = hd / 2;
    let j = i % hd;
    let t = (i / hd) % uniforms.t;
    let b = i / (hd * uniforms.t * uniforms.h);
    let tb = select(0, b, uniforms.tableBatch > 1);
    let c = (tb * uniforms.t + t) * hd + j;
    var v = 0.0;
    ${body}`,
    'h : i32, t : i32, hd : i32, tableBatch : i32,',
  );
}

/** Keys scored per pass of {@link attentionProgram} (its shared-memory tile, 4 KiB). */
export const ATTENTION_CHUNK = 1024;
/** The largest head dimension {@link attentionProgram} handles (4 accumulators per lane). */
export const ATTENTION_MAX_HEAD_DIM = 256;

/**
 * Attention of every query row over a (preallocated) cache, all heads, GQA, in one dispatch:
 * one workgroup of 64 lanes per query row `(b, h, t)` of `q [B, Hq, T, hd]`, against kv head
 * `h / (Hq / Hkv)` of `k`/`v [B, Hkv, S, hd]`, with an additive `mask [B or 1, 1, T, S]` (or
 * none). Keys are taken in tiles of {@link ATTENTION_CHUNK}: the lanes score a tile into shared
 * memory (q·k · scale + mask), then an online softmax (the running max and sum, the
 * accumulators rescaled by exp(m − m′)) adds the tile's weighted values; lane `tid` owns output
 * dims tid, tid + 64, ... (hd ≤ {@link ATTENTION_MAX_HEAD_DIM}). Long caches split over tiles
 * inside the workgroup rather than over workgroups (decode has B·Hq rows: enough workgroups for
 * small models; a split-K across workgroups is the next step for a GPU with many cores).
 */
export function attentionProgram(
  rows: number,
  hd: number,
  masked: boolean,
  splits = 0,
): WebGpuProgram {
  const wg = 64;
  const units = Math.ceil(hd / wg);
  const acc = Array.from({ length: units }, (_, u) => u);
  const split = splits > 0;
  // Split-K: workgroup (row, part) scores keys [part·CH, part·CH + CH) only and writes its
  // unnormalised accumulators, running max and sum (hd + 2 values) for attentionCombineProgram.
  const store = split
    ? `if (live) {
      let pBase = (r * uniforms.splits + part) * (hd + 2);
      ${acc.map((u) => `if (tid + ${u * wg} < hd) { result[pBase + tid + ${u * wg}] = acc${u}; }`).join('\n      ')}
      if (tid == 0) { result[pBase + hd] = m; result[pBase + hd + 1] = l; }
    }`
    : `if (live) {
      ${acc.map((u) => `if (tid + ${u * wg} < hd) { result[qBase + tid + ${u * wg}] = acc${u} / l; }`).join('\n      ')}
    }`;
  return {
    outputShape: split ? [rows * splits * (hd + 2)] : [rows, hd],
    shaderKey: `para_attention_${units}${masked ? '_mask' : ''}${split ? '_split' : ''}`,
    dispatchLayout: flat(split ? [rows * splits * (hd + 2)] : [rows, hd]),
    dispatch: [rows * Math.max(1, splits), 1, 1],
    variableNames: masked ? ['q', 'k', 'v', 'mask'] : ['q', 'k', 'v'],
    uniforms:
      'rows : i32, hq : i32, hkv : i32, t : i32, s : i32, hd : i32, maskBatch : i32, scale : f32, splits : i32,',
    workgroupSize: [wg, 1, 1],
    getUserCode: () => `
  const WG = ${wg};
  const CH = ${ATTENTION_CHUNK};
  var<workgroup> sc : array<f32, ${ATTENTION_CHUNK}>;
  var<workgroup> red : array<f32, ${wg}>;
  fn main(index : i32) {
    let wgi = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
    let nsplit = max(1, uniforms.splits);
    let row = wgi / nsplit;
    let part = wgi % nsplit;
    let tid = i32(localId.x);
    let live = row < uniforms.rows;
    let hd = uniforms.hd;
    let T = uniforms.t;
    let S = uniforms.s;
    let r = select(0, row, live);
    let t = r % T;
    let h = (r / T) % uniforms.hq;
    let b = r / (T * uniforms.hq);
    let kvh = h / (uniforms.hq / uniforms.hkv);
    let qBase = r * hd;
    let kvBase = (b * uniforms.hkv + kvh) * S * hd;
    let mb = select(0, b, uniforms.maskBatch > 1);
    let maskBase = (mb * T + t) * S;
    var m = -3.402823e+38;
    var l = 0.0;
    ${acc.map((u) => `var acc${u} = 0.0;`).join('\n    ')}
    // Every workgroup walks every tile (barriers need uniform control flow, and the workgroup id
    // is not uniform to WGSL's analysis); with split-K only its own tile has keys.
    for (var c0 = 0; c0 < S; c0 = c0 + CH) {
      let mine = uniforms.splits == 0 || c0 / CH == part;
      let n = select(0, min(CH, S - c0), live && mine);
      // Scores of this tile.
      for (var i = tid; i < n; i = i + WG) {
        let kb = kvBase + (c0 + i) * hd;
        var dot = 0.0;
        for (var j = 0; j < hd; j = j + 1) {
          dot = dot + q[qBase + j] * k[kb + j];
        }
        ${masked ? 'sc[i] = dot * uniforms.scale + mask[maskBase + c0 + i];' : 'sc[i] = dot * uniforms.scale;'}
      }
      workgroupBarrier();
      var lm = -3.402823e+38;
      for (var i = tid; i < n; i = i + WG) { lm = max(lm, sc[i]); }
      red[tid] = lm;
      workgroupBarrier();
      for (var s2 = WG / 2; s2 > 0; s2 = s2 / 2) {
        if (tid < s2) { red[tid] = max(red[tid], red[tid + s2]); }
        workgroupBarrier();
      }
      let newm = max(m, red[0]);
      workgroupBarrier();
      let alpha = exp(m - newm);
      var ls = 0.0;
      for (var i = tid; i < n; i = i + WG) {
        let p = exp(sc[i] - newm);
        sc[i] = p;
        ls = ls + p;
      }
      red[tid] = ls;
      workgroupBarrier();
      ${treeSum('red')}
      l = l * alpha + red[0];
      ${acc
        .map(
          (u) => `{
        let j = tid + ${u * wg};
        var a = acc${u} * alpha;
        if (j < hd) {
          for (var i = 0; i < n; i = i + 1) {
            a = a + sc[i] * v[kvBase + (c0 + i) * hd + j];
          }
        }
        acc${u} = a;
      }`,
        )
        .join('\n      ')}
      m = newm;
      workgroupBarrier();
    }
    ${store}
  }
`,
  };
}

/**
 * `dx [rows, d]` of the residual add + RMSNorm at `sum`: `dsum + r·g − sum·r³·mean(g·sum)` (the
 * RMSNorm dx of {@link rmsNormDxProgram} plus the gradient that reached `sum` directly).
 */
export function addRmsNormDxProgram(rows: number, d: number): WebGpuProgram {
  const p = rmsNormDxProgram(rows, d);
  return {
    ...p,
    shaderKey: 'para_addrmsnorm_dx',
    variableNames: ['dy', 'xs', 'weight', 'rinv', 'dsum'],
    getUserCode: () =>
      p
        .getUserCode()
        .replace(
          'result[base + c] = r * g - xs[base + c] * k;',
          'result[base + c] = dsum[base + c] + (r * g - xs[base + c] * k);',
        ),
  };
}

/**
 * `y [B, T, F] = gate · σ(gate) · up · scale` with `scale [B or 1, 1, F]` (`scaleBatch` 1 or B,
 * a uniform): SwiGLU with PARA's `up` scale or IA3's down_proj-input scale folded in.
 */
export function swigluScaledProgram(n: number): WebGpuProgram {
  return elementwise(
    'para_swiglu_scaled',
    n,
    ['gate', 'up', 'scale'],
    `let g = gate[i]; ${SIGMOID}
    let f = i % uniforms.f;
    let b = i / (uniforms.f * uniforms.t);
    let sb = select(0, b, uniforms.scaleBatch > 1);
    let v = ((g * s) * up[i]) * scale[sb * uniforms.f + f];`,
    't : i32, f : i32, scaleBatch : i32,',
  );
}

/**
 * Split-K's second pass: `out [rows, hd]` from `parts [rows, splits, hd + 2]` (accumulators, max,
 * sum per key tile): with M the largest max, `out = Σ acc·e^(m − M) / Σ l·e^(m − M)`.
 */
export function attentionCombineProgram(rows: number, hd: number): WebGpuProgram {
  return elementwise(
    'para_attention_combine',
    rows * hd,
    ['parts'],
    `
    let hd = uniforms.hd;
    let r = i / hd;
    let j = i % hd;
    let w = hd + 2;
    let base = r * uniforms.splits * w;
    var mm = -3.402823e+38;
    for (var p = 0; p < uniforms.splits; p = p + 1) { mm = max(mm, parts[base + p * w + hd]); }
    var num = 0.0;
    var den = 0.0;
    for (var p = 0; p < uniforms.splits; p = p + 1) {
      let e = exp(parts[base + p * w + hd] - mm);
      num = num + parts[base + p * w + j] * e;
      den = den + parts[base + p * w + hd + 1] * e;
    }
    let v = num / den;`,
    'hd : i32, splits : i32,',
  );
}
