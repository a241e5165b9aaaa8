/*
 * @para/blas: fused float32 kernels for TensorFlow.js's wasm backend (RMSNorm, residual add +
 * RMSNorm, SwiGLU, RoPE, attention, cross-entropy and their gradients; SwiGLU with a scale and RoPE +
 * KV cache write, forward only; AdamW's update; Σ x² over many tensors), computed directly on the wasm heap like matmulHeap.
 *
 *   rmsNormHeap(heap, params)       params: [x, w, y, rows, d, eps, unitOffset]
 *   rmsNormGradHeap(heap, params)   params: [dy, x, w, dx, dw, rows, d, eps, unitOffset]
 *   addRmsNormHeap(heap, params)    params: [x, res, w, sum, y, rows, d, eps, unitOffset]
 *   addRmsNormGradHeap(heap, params) params: [dy, ds, sum, w, dx, dw, rows, d, eps, unitOffset]
 *   swigluHeap(heap, params)        params: [gate, up, y, n]
 *   swigluGradHeap(heap, params)    params: [dy, gate, up, dgate, dup, n]
 *   ropeHeap(heap, params)          params: [x, cos, sin, y, B, H, T, hd, cosBatch, inverse]
 *   swigluScaledHeap(heap, params)  params: [gate, up, scale, y, B, T, F, scaleBatch]
 *   ropeKvWriteHeap(heap, params)   params: [q, k, v, cos, sin, kCache, vCache, qScale, kScale, vScale, qOut,
 *                                   B, Hq, Hkv, T, hd, C, cosBatch, qScaleBatch, kScaleBatch, vScaleBatch,
 *                                   slots[0..B)] (a scale: -1 for none; the caches written in place)
 *   attentionHeap(heap, params)     params: [q, k, v, mask, out, B, Hq, Hkv, T, S, hd, maskBatch, scale]
 *   attentionGradHeap(heap, params) params: [dy, q, k, v, mask, dq, dk, dv, B, Hq, Hkv, T, S, hd, maskBatch, scale]
 *                                   (mask: -1 for none)
 *   crossEntropyHeap(heap, params)  params: [logits, targets (int32), weights, loss, lse, N, V]
 *   crossEntropyGradHeap(heap, params) params: [dy, logits, targets, weights, lse, dlogits, N, V]
 *   adamWHeap(heap, params)         params: [count, lr, beta1, 1-beta1, beta2, 1-beta2, bc1, bc2, eps, gradScale,
 *                                   then per parameter p, m, v, g, p', m', v', n, keep]
 *   sumSquaresHeap(heap, params)    params: [out, count, then per tensor x, n] (out: one float, Σ x² in double)
 *   fusedInfo()                     -> { threads, parallelMinElements, attentionIsa }
 *
 * Offsets are byte offsets into `heap` (an ArrayBuffer); every operand is contiguous float32.
 * Everything is checked against heap.byteLength (4-byte aligned, in bounds, no overflow, outputs
 * not overlapping inputs or each other) before anything is read or written; a violation throws a
 * RangeError/TypeError and touches nothing. The math is documented with the kernels' contract in
 * @para/ops (src/fused.ts).
 *
 * Threads: a small pool of threads (libuv's; as many as OpenBLAS uses, or PARA_FUSED_THREADS, at
 * most MAX_THREADS, the calling thread included) splits rows (or elements) into contiguous ranges; inputs below a few
 * tens of thousands of elements run on the calling thread alone. Idle workers sleep on a
 * condition variable (no spinning), and the kernels never run at the same time as an OpenBLAS
 * call (JavaScript calls them one after another). Loops are plain C the compiler auto-vectorises
 * (-O3, no -march, so the binary runs on any x86-64; an AVX2 clone of each hot loop is picked at
 * load time where the CPU has it); exp is a polynomial (Cephes expf's, ~1 ulp)
 * written so that it vectorises too. Attention's small products are a register-blocked kernel
 * (para_tile.h) built for AVX-512, AVX2 + FMA and the baseline, the widest the CPU has picked
 * at first use (PARA_FUSED_ISA=avx2 or baseline caps it; fusedInfo().attentionIsa names it).
 */
/* uv.h needs POSIX declarations that -std=c11 hides. */
#if defined(__APPLE__)
#define _DARWIN_C_SOURCE
#else
#define _XOPEN_SOURCE 700
#endif
#include <math.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

int openblas_get_num_threads(void);
char *openblas_get_corename(void);

/*
 * The hot loops are compiled twice on x86-64 Linux with GCC: for AVX2 and for the x86-64
 * baseline (SSE2), chosen at load time by the CPU (an ifunc). The AVX2 clone is about 2.4x
 * faster on SwiGLU's exp; both compute the same values (no FMA contraction in ISO C mode).
 * HOT_WIDE loops get an AVX-512 clone too: SwiGLU and its gradient (and the scaled SwiGLU, the
 * same loop), cross-entropy and its gradient, AdamW (1.2–1.8x on a Zen 5, one process, old and
 * new binary alternating); the RMSNorm and RoPE loops were slower as AVX-512 clones there
 * (0.5–0.9x) and attention's softmax rows no faster, so they stay AVX2.
 * -DPARA_FUSED_NO_CLONES builds the baseline only.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(PARA_FUSED_NO_CLONES)
#define HOT __attribute__((target_clones("avx2", "default")))
#define HOT_WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#define HOT_WIDE
#endif

#define MAX_THREADS 8
/* Work (in elements) below which a kernel runs on the calling thread only. */
#define PARALLEL_MIN_ELEMENTS 32768
#define MAX_VALUE ((double)(1ULL << 50))

/* ---------- thread pool ---------- */

/*
 * libuv's threads, mutexes and condition variables (exported by the node binary, as N-API is),
 * rather than pthreads directly: glibc 2.34 moved pthread_* to new symbol versions, and a
 * prebuild linked against them would not load on older systems (Ubuntu 20.04's glibc 2.31).
 */

typedef void (*task_fn)(void *ctx, int64_t begin, int64_t end, int tid);

static struct {
  uv_mutex_t mu;
  uv_cond_t work_cv;
  uv_cond_t done_cv;
  uv_mutex_t busy; /* one parallel_for at a time (Node worker threads share the pool) */
  int threads;     /* total, calling thread included */
  uint64_t generation;
  task_fn fn;
  void *ctx;
  int64_t n;
  int parts;
  int pending;
} pool;

static uv_once_t pool_once = UV_ONCE_INIT;

static void pool_worker(void *arg) {
  const int tid = (int)(intptr_t)arg;
  uint64_t seen = 0;
  uv_mutex_lock(&pool.mu);
  for (;;) {
    while (pool.generation == seen) uv_cond_wait(&pool.work_cv, &pool.mu);
    seen = pool.generation;
    const task_fn fn = pool.fn;
    void *ctx = pool.ctx;
    const int64_t n = pool.n;
    const int parts = pool.parts;
    uv_mutex_unlock(&pool.mu);
    if (tid < parts) {
      const int64_t b = n * tid / parts, e = n * (tid + 1) / parts;
      if (b < e) fn(ctx, b, e, tid);
    }
    uv_mutex_lock(&pool.mu);
    if (--pool.pending == 0) uv_cond_signal(&pool.done_cv);
  }
}

static void pool_start(void) {
  pool.threads = 1;
  if (uv_mutex_init(&pool.mu) != 0 || uv_mutex_init(&pool.busy) != 0 || uv_cond_init(&pool.work_cv) != 0 ||
      uv_cond_init(&pool.done_cv) != 0) {
    return; /* single-threaded */
  }
  int t = openblas_get_num_threads();
  const char *env = getenv("PARA_FUSED_THREADS");
  if (env != NULL && *env != '\0') {
    /* A positive integer (parsed by hand: no libc symbol versions to depend on). */
    int v = 0, ok = 1;
    for (const char *c = env; *c != '\0'; c++) {
      if (*c < '0' || *c > '9' || v > 1000) {
        ok = 0;
        break;
      }
      v = v * 10 + (*c - '0');
    }
    if (ok && v >= 1) t = v;
  }
  if (t < 1) t = 1;
  if (t > MAX_THREADS) t = MAX_THREADS;
  int created = 1;
  for (int i = 1; i < t; i++) {
    uv_thread_t th;
    uv_thread_options_t opts;
    opts.flags = UV_THREAD_HAS_STACK_SIZE;
    opts.stack_size = 1 << 20;
    if (uv_thread_create_ex(&th, &opts, pool_worker, (void *)(intptr_t)i) != 0) break; /* ids stay contiguous */
    created++;
  }
  pool.threads = created;
}

static int pool_threads(void) {
  uv_once(&pool_once, pool_start);
  return pool.threads;
}

/*
 * fn(ctx, begin, end, tid) over [0, n) in up to pool_threads() contiguous parts; `work` is the
 * total element count, for the single-thread threshold. tid < pool_threads().
 */
static void parallel_for(int64_t n, int64_t work, task_fn fn, void *ctx) {
  if (n <= 0) return;
  const int t = work >= PARALLEL_MIN_ELEMENTS ? pool_threads() : 1;
  int parts = t;
  if (parts > n) parts = (int)n;
  if (parts <= 1 || uv_mutex_trylock(&pool.busy) != 0) {
    fn(ctx, 0, n, 0);
    return;
  }
  uv_mutex_lock(&pool.mu);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n = n;
  pool.parts = parts;
  pool.pending = pool.threads - 1;
  pool.generation++;
  uv_cond_broadcast(&pool.work_cv);
  uv_mutex_unlock(&pool.mu);
  fn(ctx, 0, n / parts, 0);
  uv_mutex_lock(&pool.mu);
  while (pool.pending > 0) uv_cond_wait(&pool.done_cv, &pool.mu);
  uv_mutex_unlock(&pool.mu);
  uv_mutex_unlock(&pool.busy);
}

/* ---------- math ---------- */

/*
 * exp(x) in float32, Cephes expf's range reduction and polynomial (relative error ~1e-7),
 * branch-free so that loops calling it vectorise. Overflows to +inf above ~88.4, underflow is
 * clamped at exp(-87.3) ~ 1.2e-38 (callers only use it inside 1 / (1 + exp(-x))); NaN stays NaN.
 */
static inline float exp_f(float x) {
  const int nan_in = x != x;
  float xc = nan_in ? 0.0f : x;
  xc = xc < -87.3f ? -87.3f : xc;
  xc = xc > 88.8f ? 88.8f : xc;
  const float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
  float r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)fn + 127) << 23; /* 2^n; n = 128 gives +inf */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  const float y = p * scale;
  return nan_in ? x : y;
}

static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

/* Σ x[j]² in eight float lanes (the compiler turns them into vector registers), summed in double. */
static inline double sum_squares(const float *x, int64_t d) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    for (int l = 0; l < 8; l++) acc[l] += x[j + l] * x[j + l];
  }
  double s = 0;
  for (; j < d; j++) s += (double)x[j] * (double)x[j];
  for (int l = 0; l < 8; l++) s += acc[l];
  return s;
}

/* Σ a[j] · b[j] · c[j] (c[j] + off: the weight, or 1 + weight), the same way. */
static inline double sum_triple(const float *a, const float *b, const float *c, float off, int64_t d) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    for (int l = 0; l < 8; l++) acc[l] += a[j + l] * (c[j + l] + off) * b[j + l];
  }
  double s = 0;
  for (; j < d; j++) s += (double)a[j] * (double)(c[j] + off) * (double)b[j];
  for (int l = 0; l < 8; l++) s += acc[l];
  return s;
}

/* ---------- RMSNorm (and residual add + RMSNorm) ---------- */

typedef struct {
  const float *x, *w, *dy;
  const float *res; /* forward with a residual: sum = x + res is normalised (and written) */
  const float *ds;  /* backward of the add + norm: the sum's own upstream gradient, added to dx */
  float *y, *dx, *sum;
  double *dw_parts; /* [threads][d] */
  int64_t d;
  double eps;
  float off; /* 0, or 1 with unitOffset */
} rms_t;

static inline float rms_inv(const float *x, int64_t d, double eps) {
  return (float)(1.0 / sqrt(sum_squares(x, d) / (double)d + eps));
}

HOT static void rms_forward_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const rms_t *c = (const rms_t *)vctx;
  const int64_t d = c->d;
  const float *w = c->w;
  const float off = c->off;
  for (int64_t r = begin; r < end; r++) {
    const float *x = c->x + r * d;
    float *y = c->y + r * d;
    if (c->res != NULL) {
      /* sum = x + res, written out, then normalised (read back while it is in cache) */
      const float *res = c->res + r * d;
      float *sum = c->sum + r * d;
      for (int64_t j = 0; j < d; j++) sum[j] = x[j] + res[j];
      x = sum;
    }
    const float inv = rms_inv(x, d, c->eps);
    for (int64_t j = 0; j < d; j++) y[j] = x[j] * inv * (w[j] + off);
  }
}

/*
 * r = rsqrt(mean(x²) + eps), g = dy · w′:  dx = r · g − x · r³ · Σ(g · x) / d (+ ds, the add's
 * own gradient, for the add + norm); dw (this thread's part) += dy · x · r.
 */
HOT static void rms_backward_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  const rms_t *c = (const rms_t *)vctx;
  const int64_t d = c->d;
  const float *w = c->w;
  const float off = c->off;
  double *dw = c->dw_parts + (int64_t)tid * d;
  for (int64_t r = begin; r < end; r++) {
    const float *x = c->x + r * d;
    const float *dy = c->dy + r * d;
    float *dx = c->dx + r * d;
    const double ms = sum_squares(x, d) / (double)d + c->eps;
    const double invd = 1.0 / sqrt(ms);
    const float inv = (float)invd;
    const float k = (float)(invd * invd * invd * sum_triple(dy, x, w, off, d) / (double)d);
    if (c->ds == NULL) {
      for (int64_t j = 0; j < d; j++) {
        dx[j] = inv * (dy[j] * (w[j] + off)) - x[j] * k;
        dw[j] += (double)(dy[j] * x[j] * inv);
      }
    } else {
      const float *ds = c->ds + r * d;
      for (int64_t j = 0; j < d; j++) {
        dx[j] = ds[j] + (inv * (dy[j] * (w[j] + off)) - x[j] * k);
        dw[j] += (double)(dy[j] * x[j] * inv);
      }
    }
  }
}

/* ---------- SwiGLU ---------- */

typedef struct {
  const float *g, *u, *dy;
  float *y, *dg, *du;
} swiglu_t;

HOT_WIDE static void swiglu_forward_range(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const swiglu_t *c = (const swiglu_t *)vctx;
  const float *g = c->g, *u = c->u;
  float *y = c->y;
  for (int64_t i = begin; i < end; i++) {
    const float s = sigmoid_f(g[i]);
    y[i] = g[i] * s * u[i];
  }
}

HOT_WIDE static void swiglu_backward_range(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const swiglu_t *c = (const swiglu_t *)vctx;
  const float *g = c->g, *u = c->u, *dy = c->dy;
  float *dg = c->dg, *du = c->du;
  for (int64_t i = begin; i < end; i++) {
    const float s = sigmoid_f(g[i]);
    const float gs = g[i] * s;
    du[i] = dy[i] * gs;
    dg[i] = dy[i] * u[i] * (s + gs * (1.0f - s));
  }
}

/* ---------- RoPE ---------- */

typedef struct {
  const float *x, *cos, *sin;
  float *y;
  int64_t h, t, hd;
  int64_t cos_batch_stride; /* T·hd, or 0 when cos/sin broadcast over the batch */
  int inverse;
} rope_t;

/* One row of hd = 2·half: the rotation (or its transpose) of (x1[j], x2[j]) by (c, s). */
static inline void rope_row(const float *restrict x1, const float *restrict x2, const float *restrict c1,
                            const float *restrict c2, const float *restrict s1, const float *restrict s2,
                            float *restrict y1, float *restrict y2, int64_t half, int inverse) {
  if (!inverse) {
    for (int64_t j = 0; j < half; j++) {
      y1[j] = x1[j] * c1[j] - x2[j] * s1[j];
      y2[j] = x2[j] * c2[j] + x1[j] * s2[j];
    }
  } else {
    for (int64_t j = 0; j < half; j++) {
      y1[j] = x1[j] * c1[j] + x2[j] * s2[j];
      y2[j] = x2[j] * c2[j] - x1[j] * s1[j];
    }
  }
}

/* Rows are (b, head, t) in x's order; row r reads the tables at (b, t). */
HOT static void rope_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const rope_t *c = (const rope_t *)vctx;
  const int64_t hd = c->hd, half = hd / 2, T = c->t, H = c->h;
  for (int64_t r = begin; r < end; r++) {
    const int64_t t = r % T, b = r / (T * H);
    const float *x = c->x + r * hd;
    float *y = c->y + r * hd;
    const float *cs = c->cos + b * c->cos_batch_stride + t * hd;
    const float *sn = c->sin + b * c->cos_batch_stride + t * hd;
    /* restrict holds: the output never overlaps an input (checked before the call). */
    rope_row(x, x + half, cs, cs + half, sn, sn + half, y, y + half, half, c->inverse);
  }
}


/* ---------- SwiGLU with a per-row scale (forward only) ---------- */

/*
 * y[b, t, f] = ((gate · σ(gate)) · up) · scale[b|0, 0, f] over rows (b, t) of F: PARA's up_proj
 * scale or IA3's down_proj-input scale folded into the gate (both, multiplied into one by the op).
 */
typedef struct {
  const float *g, *u, *scale;
  float *y;
  int64_t t, f;
  int64_t scale_batch_stride; /* F, or 0 when the scale broadcasts over the batch */
} swiglu_scaled_t;

HOT_WIDE static void swiglu_scaled_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const swiglu_scaled_t *c = (const swiglu_scaled_t *)vctx;
  const int64_t F = c->f;
  for (int64_t r = begin; r < end; r++) {
    const float *restrict g = c->g + r * F;
    const float *restrict u = c->u + r * F;
    const float *restrict sc = c->scale + (r / c->t) * c->scale_batch_stride;
    float *restrict y = c->y + r * F;
    for (int64_t j = 0; j < F; j++) {
      const float s = sigmoid_f(g[j]);
      y[j] = ((g[j] * s) * u[j]) * sc[j];
    }
  }
}

/* ---------- a per-row scale and its gradient ---------- */

/*
 * y[b, t, f] = x[b, t, f] · scale[b|0, 0, f] (PARA's and IA3's vectors on a projection's output);
 * the gradient: dx = dy · scale and dscale[b|0, 0, f] = Σ_t dy · x (Σ over b too when the scale
 * broadcasts over the batch), accumulated in double. The forward splits rows across threads. The
 * backward splits batch rows when each has its own scale (a thread owns its rows of dscale), and
 * otherwise rows of B·T, each thread summing into its own [F] part, added up afterwards.
 */
typedef struct {
  const float *x, *scale, *dy;
  float *y, *dx, *ds;
  double *acc; /* [threads, F] (backward): each thread's running sums */
  int64_t t, f;
  int64_t scale_batch_stride; /* F, or 0 when the scale broadcasts over the batch */
} scale_t;

HOT static void scale_forward_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const scale_t *c = (const scale_t *)vctx;
  const int64_t F = c->f;
  for (int64_t r = begin; r < end; r++) {
    const float *restrict x = c->x + r * F;
    const float *restrict sc = c->scale + (r / c->t) * c->scale_batch_stride;
    float *restrict y = c->y + r * F;
    for (int64_t j = 0; j < F; j++) y[j] = x[j] * sc[j];
  }
}

/* Rows [begin, end) of B·T: dx, and acc[tid] += dy · x (sums start at zero: calloc). */
HOT static void scale_backward_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  const scale_t *c = (const scale_t *)vctx;
  const int64_t F = c->f;
  double *restrict acc = c->acc + (int64_t)tid * F;
  for (int64_t r = begin; r < end; r++) {
    const float *restrict sc = c->scale + (r / c->t) * c->scale_batch_stride;
    const float *restrict x = c->x + r * F;
    const float *restrict dy = c->dy + r * F;
    float *restrict dx = c->dx + r * F;
    for (int64_t j = 0; j < F; j++) {
      dx[j] = dy[j] * sc[j];
      acc[j] += (double)(dy[j] * x[j]);
    }
  }
}

/* Batch rows [begin, end), each with its own scale: dx and ds[b] over its T rows. */
HOT static void scale_backward_batches(void *vctx, int64_t begin, int64_t end, int tid) {
  const scale_t *c = (const scale_t *)vctx;
  const int64_t F = c->f, T = c->t;
  double *restrict acc = c->acc + (int64_t)tid * F;
  for (int64_t b = begin; b < end; b++) {
    for (int64_t j = 0; j < F; j++) acc[j] = 0;
    scale_backward_rows(vctx, b * T, (b + 1) * T, tid);
    float *restrict ds = c->ds + b * F;
    for (int64_t j = 0; j < F; j++) ds[j] = (float)acc[j];
  }
}

/* ---------- RoPE + KV cache write (forward only, the caches written in place) ---------- */

/*
 * q′ = RoPE(q ⊙ qScale) for q [B, Hq, T, hd]; for rows b with slots[b] ≥ 0,
 * kCache[b, h, slots[b] + t] = RoPE(k ⊙ kScale), vCache[b, h, slots[b] + t] = v ⊙ vScale
 * (k, v [B, Hkv, T, hd]; caches [B, Hkv, C, hd]). A scale [B|1, 1, H·hd] indexes by head and
 * dimension (scale[b|0, 0, h·hd + j]) and multiplies before the rotation: x′[j] = x[j] · s[j],
 * then the forward rotate-half of ParaRope on x′. Work rows: the B·Hq·T rows of q, then the
 * B·Hkv·T rows of k (each also moves its row of v).
 */
typedef struct {
  const float *q, *k, *v, *cos, *sin;
  const float *qs, *ks, *vs; /* NULL: no scale */
  float *qo, *kc, *vc;
  const int64_t *slots; /* [B]: first slot, or -1 */
  int64_t hq, hkv, t, hd, cap;
  int64_t cos_batch_stride;                        /* T·hd, or 0 */
  int64_t qs_batch_stride, ks_batch_stride, vs_batch_stride; /* H·hd, or 0 */
  int64_t q_rows;                                  /* B·Hq·T */
} rope_kv_t;

/* y = RoPE(x ⊙ s) of one row (s NULL: RoPE(x)); the products rounded as the unfused ops round them. */
static inline void rope_scaled_row(const float *restrict x, const float *restrict s, const float *restrict cs,
                                   const float *restrict sn, float *restrict y, int64_t half) {
  if (s == NULL) {
    rope_row(x, x + half, cs, cs + half, sn, sn + half, y, y + half, half, 0);
    return;
  }
  for (int64_t j = 0; j < half; j++) {
    const float x1 = x[j] * s[j], x2 = x[j + half] * s[j + half];
    y[j] = x1 * cs[j] - x2 * sn[j];
    y[j + half] = x2 * cs[j + half] + x1 * sn[j + half];
  }
}

HOT static void rope_kv_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const rope_kv_t *c = (const rope_kv_t *)vctx;
  const int64_t hd = c->hd, half = hd / 2, T = c->t;
  for (int64_t r = begin; r < end; r++) {
    if (r < c->q_rows) {
      const int64_t t = r % T, h = (r / T) % c->hq, b = r / (T * c->hq);
      const int64_t to = b * c->cos_batch_stride + t * hd;
      const float *s = c->qs == NULL ? NULL : c->qs + b * c->qs_batch_stride + h * hd;
      /* restrict holds: q′ overlaps no input (checked before the call). */
      rope_scaled_row(c->q + r * hd, s, c->cos + to, c->sin + to, c->qo + r * hd, half);
    } else {
      const int64_t kr = r - c->q_rows;
      const int64_t t = kr % T, h = (kr / T) % c->hkv, b = kr / (T * c->hkv);
      const int64_t slot = c->slots[b];
      if (slot < 0) continue;
      const int64_t to = b * c->cos_batch_stride + t * hd;
      const int64_t dst = ((b * c->hkv + h) * c->cap + slot + t) * hd;
      const float *ks = c->ks == NULL ? NULL : c->ks + b * c->ks_batch_stride + h * hd;
      /* The caches overlap neither each other nor any input (checked): restrict holds here too. */
      rope_scaled_row(c->k + kr * hd, ks, c->cos + to, c->sin + to, c->kc + dst, half);
      const float *restrict vx = c->v + kr * hd;
      float *restrict vy = c->vc + dst;
      if (c->vs == NULL) {
        memcpy(vy, vx, (size_t)hd * sizeof(float));
      } else {
        const float *restrict vs = c->vs + b * c->vs_batch_stride + h * hd;
        for (int64_t j = 0; j < hd; j++) vy[j] = vx[j] * vs[j];
      }
    }
  }
}

/* ---------- attention (forward and backward; softmax statistics recomputed per query row) ---------- */

/*
 * The query rows of kv head g in batch b are contiguous in q: rows (b·Hq + g·nRep)·T + i for
 * i < nRep·T (query head g·nRep + i / T, position t = i % T) — the generic path's folded
 * [B, Hkv, nRep·T, hd]. They are walked in blocks of up to ATT_R rows that share every key and
 * value load (a block's R dot products per key, R output rows per value). Per row, scores for
 * all S keys go into a per-thread scratch row of S floats (never a [B, Hq, T, S] tensor), then
 * max, exp and Σ, two passes over the keys. Keys whose score lies more than 87 below the row's
 * maximum (exp < 1.7e-38 of the maximum's 1) are skipped; the generic path adds those
 * negligible terms. A row whose scores are all −Infinity yields 0 (the generic path: NaN; the
 * contract allows either); a NaN score gives a NaN row, as the generic path.
 */
typedef struct {
  const float *q, *k, *v, *mask, *dy;
  float *out, *dq, *dk, *dv;
  int64_t hq, hkv, t, s, hd;
  int64_t mask_batch_stride; /* T·S, or 0 when the mask broadcasts over the batch */
  int64_t blocks_per_group;  /* ceil(nRep·T / ATT_R) */
  float scale;
  int failed; /* a thread could not allocate its scratch */
} att_t;

#define ATT_R 4
#define ATT_SKIP 87.0f
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Σ a[j]·b[j] as eight float lanes, reduced pairwise at the end (the same order everywhere). */
#define LANES_SUM(acc) (((acc)[0] + (acc)[4]) + ((acc)[1] + (acc)[5])) + (((acc)[2] + (acc)[6]) + ((acc)[3] + (acc)[7]))

/* out[r] = a[r] · b for R rows a[r] (R a constant at every call: the loops unroll). */
static ALWAYS_INLINE void dots_r(const float *const a[ATT_R], const float *restrict b, int64_t n, float out[ATT_R],
                                 const int R) {
  float acc[ATT_R][8];
  for (int r = 0; r < R; r++)
    for (int l = 0; l < 8; l++) acc[r][l] = 0;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int r = 0; r < R; r++)
      for (int l = 0; l < 8; l++) acc[r][l] += a[r][j + l] * b[j + l];
  }
  for (int r = 0; r < R; r++) {
    float tail = 0;
    for (int64_t jj = j; jj < n; jj++) tail += a[r][jj] * b[jj];
    out[r] = LANES_SUM(acc[r]) + tail;
  }
}

/*
 * Masked-slot skip: a key whose mask value lies at least ATT_MASK_GAP below the highest mask
 * value of its row is never dotted. With s the scaled scores and i a key at the row's highest
 * mask, the row's maximum is at least s_i + mask_i, so such a key's shifted score is at most
 * (s_j − s_i) − ATT_MASK_GAP: below −ATT_SKIP, where the exp is skipped anyway, for every score
 * spread under ~1e6 (realistic scores are within ±100; at a spread near 1e6 the generic path's
 * s + MASK_NEGATIVE has already lost all precision). This makes a decode step's cost follow the
 * row's live slots (plus mask reads), not the cache's capacity, and skips the future keys of
 * a small causal block (larger ones take the tile path, which skips by block). A row
 * whose mask is −Infinity everywhere skips every key (its output is 0, as before); a row of
 * MASK_NEGATIVE everywhere (an idle row) skips none; NaN in a mask is never skipped.
 */
#define ATT_MASK_GAP 1e6f

/* The skip threshold of one mask row (NULL: nothing to skip). */
static inline float att_mask_cut(const float *restrict mrow, int64_t S) {
  if (mrow == NULL) return -INFINITY;
  float hi = -INFINITY;
  for (int64_t j = 0; j < S; j++) hi = mrow[j] > hi ? mrow[j] : hi;
  return hi - ATT_MASK_GAP;
}

/* Whether key j is live for any of the R rows (not skipped by att_mask_cut's threshold). */
static ALWAYS_INLINE int att_key_live(const float *const mr[ATT_R], const float cut[ATT_R], int64_t j, const int R) {
  int live = 0;
  for (int r = 0; r < R; r++) live |= mr[r] == NULL || !(mr[r][j] <= cut[r]);
  return live;
}

/*
 * Probabilities of R query rows (qr[r], mask rows mr[r] or NULL) into sc[r·S + j] for j in the
 * block's live range [*lo, *hi) (keys outside it are skipped for every row: callers read only
 * that range), unnormalised (exp(s − max), 0 where skipped); inv[r] = 1/Σ, 0 for an all
 * −Infinity row, NaN for a NaN row. A decode row's live slots are a prefix of the cache, so the
 * free tail costs one mask scan, not three passes.
 */
static ALWAYS_INLINE void att_probs(const att_t *c, const float *const qr[ATT_R], const float *const mr[ATT_R],
                                    const float *restrict kh, float *restrict sc, float inv[ATT_R], int64_t *lo,
                                    int64_t *hi, const int R) {
  const int64_t S = c->s, hd = c->hd;
  float m[ATT_R], cut[ATT_R];
  int nan[ATT_R];
  for (int r = 0; r < R; r++) {
    m[r] = -INFINITY;
    nan[r] = 0;
    cut[r] = att_mask_cut(mr[r], S);
  }
  int64_t j0 = 0, j1 = S;
  while (j0 < j1 && !att_key_live(mr, cut, j0, R)) j0++;
  while (j1 > j0 && !att_key_live(mr, cut, j1 - 1, R)) j1--;
  *lo = j0;
  *hi = j1;
  for (int64_t j = j0; j < j1; j++) {
    /* A key masked far below the row's best (a free cache slot, a future position) is not
     * dotted at all: its probability is exactly 0 either way (see att_mask_cut). */
    if (!att_key_live(mr, cut, j, R)) {
      for (int r = 0; r < R; r++) sc[r * S + j] = -INFINITY;
      continue;
    }
    float d[ATT_R];
    dots_r(qr, kh + j * hd, hd, d, R);
    for (int r = 0; r < R; r++) {
      float x = d[r] * c->scale;
      if (mr[r] != NULL) x = mr[r][j] <= cut[r] ? -INFINITY : x + mr[r][j];
      sc[r * S + j] = x;
      nan[r] |= x != x;
      m[r] = x > m[r] ? x : m[r];
    }
  }
  for (int r = 0; r < R; r++) {
    float *row = sc + r * S;
    if (nan[r] || !(m[r] > -INFINITY)) {
      for (int64_t j = j0; j < j1; j++) row[j] = 0;
      inv[r] = nan[r] ? NAN : 0.0f;
      continue;
    }
    float sum = 0;
    const float mx = m[r];
    for (int64_t j = j0; j < j1; j++) {
      const float z = row[j] - mx;
      const float e = z < -ATT_SKIP ? 0.0f : exp_f(z);
      row[j] = e;
      sum += e;
    }
    inv[r] = 1.0f / sum;
  }
}

/* Row pointers of block `blk` of group (b, g): R live rows; returns R. */
static inline int att_block_rows(const att_t *c, int64_t b, int64_t g, int64_t blk, int64_t row[ATT_R],
                                 const float *mr[ATT_R]) {
  const int64_t T = c->t, S = c->s, rows = (c->hq / c->hkv) * T;
  const int64_t i0 = blk * ATT_R;
  int R = 0;
  for (int64_t i = i0; i < i0 + ATT_R && i < rows; i++, R++) {
    row[R] = (b * c->hq + g * (c->hq / c->hkv)) * T + i;
    mr[R] = c->mask != NULL ? c->mask + b * c->mask_batch_stride + (i % T) * S : NULL;
  }
  return R;
}

/* o[r][·] += p[r] · v_j for R rows of a local accumulator (restrict: vectorises over d). */
static ALWAYS_INLINE void axpy_r(float *restrict o, const float p[ATT_R], const float *restrict vj, int64_t hd,
                                 const int R) {
  for (int r = 0; r < R; r++) {
    const float pr = p[r];
    float *restrict orow = o + r * hd;
    for (int64_t d = 0; d < hd; d++) orow[d] += pr * vj[d];
  }
}

static ALWAYS_INLINE void att_forward_block(const att_t *c, const int64_t row[ATT_R], const float *const mr[ATT_R],
                                            const float *kh, const float *vh, float *restrict sc,
                                            float *restrict acc, const int R) {
  const int64_t S = c->s, hd = c->hd;
  const float *qr[ATT_R];
  float inv[ATT_R];
  for (int r = 0; r < R; r++) qr[r] = c->q + row[r] * hd;
  for (int64_t d = 0; d < R * hd; d++) acc[d] = 0;
  int64_t lo, hi;
  att_probs(c, qr, mr, kh, sc, inv, &lo, &hi, R);
  for (int64_t j = lo; j < hi; j++) {
    float p[ATT_R];
    int any = 0;
    for (int r = 0; r < R; r++) {
      p[r] = sc[r * S + j];
      any |= p[r] != 0;
    }
    if (any) axpy_r(acc, p, vh + j * hd, hd, R);
  }
  for (int r = 0; r < R; r++) {
    const float s = inv[r];
    float *o = c->out + row[r] * hd;
    const float *a = acc + r * hd;
    for (int64_t d = 0; d < hd; d++) o[d] = s != s ? NAN : a[d] * s;
  }
}

HOT static void att_forward_blocks(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  att_t *c = (att_t *)vctx;
  const int64_t S = c->s, hd = c->hd;
  float *sc = (float *)malloc((size_t)(ATT_R * (S + hd)) * sizeof(float));
  if (sc == NULL) {
    c->failed = 1;
    return;
  }
  float *acc = sc + ATT_R * S;
  for (int64_t task = begin; task < end; task++) {
    const int64_t grp = task / c->blocks_per_group, blk = task % c->blocks_per_group;
    const int64_t b = grp / c->hkv, g = grp % c->hkv;
    const int64_t kvo = (b * c->hkv + g) * S * hd;
    int64_t row[ATT_R];
    const float *mr[ATT_R];
    const int R = att_block_rows(c, b, g, blk, row, mr);
    switch (R) {
      case 4: att_forward_block(c, row, mr, c->k + kvo, c->v + kvo, sc, acc, 4); break;
      case 3: att_forward_block(c, row, mr, c->k + kvo, c->v + kvo, sc, acc, 3); break;
      case 2: att_forward_block(c, row, mr, c->k + kvo, c->v + kvo, sc, acc, 2); break;
      default: att_forward_block(c, row, mr, c->k + kvo, c->v + kvo, sc, acc, 1); break;
    }
  }
  free(sc);
}

/*
 * Backward of one block: the probabilities again, dp[r][j] = dy_r·v_j, D_r = Σ_j p·dp,
 * ds = p·(dp − D_r); dq_r = scale · Σ_j ds·k_j; dk_j += scale · Σ_r ds·q_r; dv_j += Σ_r p·dy_r.
 */
/* One key's update of a block: dq[r] += ds[r]·k_j; dk_j += Σ_r dss[r]·q[r]; dv_j += Σ_r p[r]·dy[r]. */
static ALWAYS_INLINE void att_key_update(float *restrict dkj, float *restrict dvj, float *restrict dq,
                                         const float *restrict kj, const float *restrict q,
                                         const float *restrict dy, const float ds[ATT_R], const float dss[ATT_R],
                                         const float p[ATT_R], int64_t hd, const int R) {
  for (int r = 0; r < R; r++) {
    const float a = ds[r];
    float *restrict dqr = dq + r * hd;
    for (int64_t d = 0; d < hd; d++) dqr[d] += a * kj[d];
  }
  for (int64_t d = 0; d < hd; d++) {
    float sk = dkj[d], sv = dvj[d];
    for (int r = 0; r < R; r++) {
      sk += dss[r] * q[r * hd + d];
      sv += p[r] * dy[r * hd + d];
    }
    dkj[d] = sk;
    dvj[d] = sv;
  }
}

static ALWAYS_INLINE void att_backward_block(const att_t *c, const int64_t row[ATT_R], const float *const mr[ATT_R],
                                             const float *kh, const float *vh, float *dkh, float *dvh,
                                             float *restrict sc, float *restrict dp, float *restrict loc,
                                             const int R) {
  const int64_t S = c->s, hd = c->hd;
  const float scale = c->scale;
  /* loc: the block's q rows, dy rows and dq accumulators, [R][hd] each */
  float *restrict lq = loc, *restrict ldy = loc + ATT_R * hd, *restrict ldq = loc + 2 * ATT_R * hd;
  const float *qr[ATT_R], *dyr[ATT_R];
  float inv[ATT_R], D[ATT_R];
  for (int r = 0; r < R; r++) {
    qr[r] = c->q + row[r] * hd;
    dyr[r] = c->dy + row[r] * hd;
    memcpy(lq + r * hd, qr[r], (size_t)hd * sizeof(float));
    memcpy(ldy + r * hd, dyr[r], (size_t)hd * sizeof(float));
    D[r] = 0;
  }
  for (int64_t d = 0; d < R * hd; d++) ldq[d] = 0;
  int64_t lo, hi; /* keys outside [lo, hi) have probability 0 for every row: no gradient */
  att_probs(c, qr, mr, kh, sc, inv, &lo, &hi, R);
  int nan_rows = 0;
  for (int r = 0; r < R; r++) {
    nan_rows |= inv[r] != inv[r];
    const float s = inv[r] != inv[r] ? 0.0f : inv[r];
    for (int64_t j = lo; j < hi; j++) sc[r * S + j] *= s;
  }
  for (int64_t j = lo; j < hi; j++) {
    int any = 0;
    for (int r = 0; r < R; r++) any |= sc[r * S + j] != 0;
    if (!any) {
      for (int r = 0; r < R; r++) dp[r * S + j] = 0;
      continue;
    }
    float x[ATT_R];
    dots_r(dyr, vh + j * hd, hd, x, R);
    for (int r = 0; r < R; r++) {
      dp[r * S + j] = x[r];
      D[r] += sc[r * S + j] * x[r];
    }
  }
  for (int64_t j = lo; j < hi; j++) {
    float p[ATT_R], ds[ATT_R], dss[ATT_R];
    int any = 0;
    for (int r = 0; r < R; r++) {
      p[r] = sc[r * S + j];
      ds[r] = p[r] * (dp[r * S + j] - D[r]);
      dss[r] = ds[r] * scale;
      any |= p[r] != 0;
    }
    if (any) att_key_update(dkh + j * hd, dvh + j * hd, ldq, kh + j * hd, lq, ldy, ds, dss, p, hd, R);
  }
  for (int r = 0; r < R; r++) {
    const int bad = inv[r] != inv[r];
    float *dqr = c->dq + row[r] * hd;
    for (int64_t d = 0; d < hd; d++) dqr[d] = bad ? NAN : ldq[r * hd + d] * scale;
  }
  if (nan_rows) { /* a NaN row poisons every key it reads, as in the generic path */
    for (int64_t j = 0; j < S * hd; j++) {
      dkh[j] = NAN;
      dvh[j] = NAN;
    }
  }
}

/* Backward over tasks (b, g): the task owns dk and dv of (b, g) and walks its blocks. */
HOT static void att_backward_tasks(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  att_t *c = (att_t *)vctx;
  const int64_t S = c->s, hd = c->hd;
  float *sc = (float *)malloc((size_t)(ATT_R * (2 * S + 3 * hd)) * sizeof(float));
  if (sc == NULL) {
    c->failed = 1;
    return;
  }
  float *dp = sc + ATT_R * S, *loc = sc + 2 * ATT_R * S;
  for (int64_t task = begin; task < end; task++) {
    const int64_t b = task / c->hkv, g = task % c->hkv;
    const int64_t kvo = (b * c->hkv + g) * S * hd;
    const float *kh = c->k + kvo, *vh = c->v + kvo;
    float *dkh = c->dk + kvo, *dvh = c->dv + kvo;
    for (int64_t blk = 0; blk < c->blocks_per_group; blk++) {
      int64_t row[ATT_R];
      const float *mr[ATT_R];
      const int R = att_block_rows(c, b, g, blk, row, mr);
      switch (R) {
        case 4: att_backward_block(c, row, mr, kh, vh, dkh, dvh, sc, dp, loc, 4); break;
        case 3: att_backward_block(c, row, mr, kh, vh, dkh, dvh, sc, dp, loc, 3); break;
        case 2: att_backward_block(c, row, mr, kh, vh, dkh, dvh, sc, dp, loc, 2); break;
        default: att_backward_block(c, row, mr, kh, vh, dkh, dvh, sc, dp, loc, 1); break;
      }
    }
  }
  free(sc);
}



/*
 * The tile path (query blocks of at least ATT_TILE_MIN_ROWS rows: prefill and training). Per
 * kv-head group (b, g), each query head's T rows go in blocks of up to ATT_TILE_BLOCK positions
 * (T ≤ ATT_TILE_BLOCK: the group's nRep heads together, one block of nRep·T rows).
 * A block attends only to its live key range [lo, hi): the union of its rows' keys that the
 * mask does not skip (ATT_MASK_GAP, as the row-block path), so a causal block of positions
 * [t0, t1) reads keys [0, t1) — the future half of a causal T × S is hardly multiplied (T = 256,
 * blocks of 32: 56% of the products) — and a packed row's block only its own document's keys.
 * A blk × (hi − lo) scratch per thread (never [B, Hq, T, S]) holds the scores, then the
 * probabilities:
 *   forward:  P = softmax(Q Kᵀ · scale + mask);  out = P V
 *   backward: P again;  dP = dY Vᵀ;  dS = P ⊙ (dP − Σ_j P ⊙ dP) · scale;  dq = dS K;
 *             dk += dSᵀ Q;  dv += Pᵀ dY   (dk, dv zeroed first: blocks add to their ranges only)
 * A block whose rows skip every key (all −Infinity) gets zeros, as the row-block path.
 * The products are tile_gemm's (para_tile.h), one whole block on one pool thread, so the blocks
 * of all groups run in parallel with no synchronisation inside one. Before, each block made 2
 * (forward) or 5 (backward) OpenBLAS sgemm calls, each waking OpenBLAS's threads for a 64 × 256
 * × 64 product, with the softmax on one thread between them; measured in one process on 8 × 256
 * causal training attention (Hq 4 / Hkv 2, hd 64; Zen 5, AVX-512), kernel times forward 8.1 →
 * 2.7 ms, backward 15.5 → 4.4 ms (BENCHMARKS.md, issue 16 part 6). The score products read keys
 * transposed, [hd, S] with TILE_PAD + up to TILE_PAD − 1 zero columns after S, so a block's live
 * range [lo, hi) is read in whole vectors from any lo (the columns past hi are computed, never
 * stored). No product reads a key outside a block's live range, so garbage in a masked slot
 * (even NaN) cannot reach the output or the gradients.
 *   forward:  tasks (b, g, head stack, position block), after one pass over (b, g) that
 *             transposes K and finds each mask row's live keys;
 *   backward: tasks (b, g), each owning dk and dv of its group and walking its blocks in order.
 */
#define ATT_TILE_MIN_ROWS 16
#define ATT_TILE_BLOCK 32
#define ATT_TILE_SCRATCH (1 << 22)

typedef struct {
  float *p, *dp;     /* [rows, w] */
  const float *mask; /* the block's first position's mask at key lo, or NULL */
  int64_t w, s;      /* the block's keys; the mask's row stride S */
  int64_t npos;      /* the block's positions: row i is position i % npos (heads stacked) */
  float scale;
} att_rows_t;

/* p[i] = softmax(p[i] · scale + mask[i]) in place over the block's w keys; all −Infinity: 0; NaN: NaN. */
HOT static void att_softmax_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const att_rows_t *c = (const att_rows_t *)vctx;
  const int64_t W = c->w;
  for (int64_t i = begin; i < end; i++) {
    float *row = c->p + i * W;
    const float *mr = c->mask != NULL ? c->mask + (i % c->npos) * c->s : NULL;
    float m = -INFINITY;
    int nan = 0;
    for (int64_t j = 0; j < W; j++) {
      float x = row[j] * c->scale;
      if (mr != NULL) x += mr[j];
      row[j] = x;
      nan |= x != x;
      m = x > m ? x : m;
    }
    if (nan || !(m > -INFINITY)) {
      const float f = nan ? NAN : 0.0f;
      for (int64_t j = 0; j < W; j++) row[j] = f;
      continue;
    }
    float sum = 0;
    for (int64_t j = 0; j < W; j++) {
      const float z = row[j] - m;
      const float e = z < -ATT_SKIP ? 0.0f : exp_f(z);
      row[j] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < W; j++) row[j] *= inv;
  }
}

/* dp[i] = p[i] ⊙ (dp[i] − Σ_j p[i]·dp[i]) · scale in place. */
HOT static void att_dscores_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const att_rows_t *c = (const att_rows_t *)vctx;
  const int64_t W = c->w;
  for (int64_t i = begin; i < end; i++) {
    const float *p = c->p + i * W;
    float *dp = c->dp + i * W;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= W; j += 8) {
      for (int l = 0; l < 8; l++) acc[l] += p[j + l] * dp[j + l];
    }
    float D = 0;
    for (; j < W; j++) D += p[j] * dp[j];
    D += LANES_SUM(acc);
    for (j = 0; j < W; j++) dp[j] = p[j] * (dp[j] - D) * c->scale;
  }
}

/* The live keys [lo[t], hi[t]) of each mask row t < T (hi ≤ lo: none), for att_mask_cut's cut. */
static void att_live_ranges(const float *mask, int64_t T, int64_t S, int64_t *lo, int64_t *hi) {
  for (int64_t t = 0; t < T; t++) {
    if (mask == NULL) {
      lo[t] = 0;
      hi[t] = S;
      continue;
    }
    const float *mr = mask + t * S;
    const float cut = att_mask_cut(mr, S);
    int64_t a = 0, e = S;
    while (a < S && mr[a] <= cut) a++;
    while (e > a && mr[e - 1] <= cut) e--;
    lo[t] = a;
    hi[t] = e;
  }
}

/* ---------- attention's tile path (see the comment above att_rows_t) ---------- */

typedef void (*tile_gemm_fn)(int64_t M, int64_t N, int64_t K, const float *restrict L, int64_t lsm, int64_t lsk,
                             const float *restrict R, int64_t rs, int r_padded, float *restrict C, int64_t cs,
                             int accumulate);

#define TILE_MR 4
#define TILE_PAD 16

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TILE_X86 1
#define TILE_NAME tile_gemm_avx512
#define TILE_VW 16
#define TILE_NV 4
#define TILE_ATTR __attribute__((target("avx512f,fma"), optimize("fp-contract=fast")))
#include "para_tile.h"
#undef TILE_NAME
#undef TILE_VW
#undef TILE_NV
#undef TILE_ATTR
#define TILE_NAME tile_gemm_avx2
#define TILE_VW 8
#define TILE_NV 2
#define TILE_ATTR __attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
#include "para_tile.h"
#undef TILE_NAME
#undef TILE_VW
#undef TILE_NV
#undef TILE_ATTR
#endif
#define TILE_NAME tile_gemm_baseline
#define TILE_VW 4
#define TILE_NV 2
#define TILE_ATTR
#include "para_tile.h"
#undef TILE_NAME
#undef TILE_VW
#undef TILE_NV
#undef TILE_ATTR

static const char *tile_isa_name = "baseline";
static tile_gemm_fn tile_gemm = tile_gemm_baseline;
static uv_once_t tile_once = UV_ONCE_INIT;

/* The widest instruction set the CPU has, or a narrower one named by PARA_FUSED_ISA (tests, debugging). */
static void tile_pick(void) {
#ifdef TILE_X86
  const char *want = getenv("PARA_FUSED_ISA");
  const int any = want == NULL || *want == '\0';
  __builtin_cpu_init();
  if ((any || strcmp(want, "avx512") == 0) && __builtin_cpu_supports("avx512f")) {
    tile_gemm = tile_gemm_avx512;
    tile_isa_name = "avx512";
  } else if ((any || strcmp(want, "avx512") == 0 || strcmp(want, "avx2") == 0) && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma")) {
    tile_gemm = tile_gemm_avx2;
    tile_isa_name = "avx2";
  }
#endif
}

static tile_gemm_fn tile_gemm_get(void) {
  uv_once(&tile_once, tile_pick);
  return tile_gemm;
}

/* ---------- matrix products on the tile kernel (BatchMatMul where OpenBLAS runs no AVX-512) ---------- */

/*
 * C[M, N] = op(A) · op(B) for para_blas.c's BatchMatMul, on the tile kernel instead of OpenBLAS,
 * where that is faster: the CPU has AVX-512 and OpenBLAS was made to run an AVX2 kernel
 * (OPENBLAS_CORETYPE=Haswell on an AVX-512 machine, as the machines this was measured on are
 * set). There, on Zen 5 (2 vCPUs), the training update's products ran at 224–324 GFLOP/s against
 * OpenBLAS's 136–196 on the same two threads, 2048-row ones at 355–363 against 165–200 (BENCHMARKS.md,
 * issue 16 part 7). The choice is made once per process:
 *
 *   PARA_MATMUL=openblas   always OpenBLAS           PARA_MATMUL=tile   always the tile kernel
 *   unset (auto)           the tile kernel when its instruction set is AVX-512 (PARA_FUSED_ISA
 *                          caps it) and OpenBLAS's core is not an AVX-512 one (SkylakeX,
 *                          Cooperlake, SapphireRapids)
 *
 * Blocking (BLIS's loops, no assembly): the output is split over the pool in column ranges of
 * whole 64-column panels (or row ranges of 4-row tiles when N is narrow), so no two threads write
 * the same element and every element is summed in the same order whatever the thread count. Each
 * thread walks its range in blocks of GEMM_NC columns × GEMM_KC of K × GEMM_MC rows (the tile
 * kernel keeps a 4 × 64 block of C in registers over a K block; the B block, 256 KB, stays in L2).
 * With B stored [N, K] (transB: every linear layer's forward, W [out, in]) each thread first
 * copies its B block transposed into its own buffer, padded to whole vectors.
 */
#define GEMM_KC 256
#define GEMM_NC 256
#define GEMM_MC 128
#define GEMM_PANEL 64       /* columns of one tile (4 AVX-512 vectors) */
#define GEMM_MIN_ROWS 96
#define GEMM_MIN_PARALLEL (1 << 18) /* multiply-adds below which the caller's thread does it all */

typedef struct {
  const float *a, *b;
  float *c;
  int64_t m, n, k;
  int ta, tb, by_cols;
  int64_t parts;
  tile_gemm_fn gemm;
  float *pack; /* [parts][GEMM_PACK] when tb, else NULL */
} tile_mm_t;

#define GEMM_PACK ((size_t)GEMM_KC * GEMM_NC) /* floats of one part's buffer for B's transposed blocks */

/*
 * The buffers for B's transposed blocks, one per part (not per pool thread: a caller that finds
 * the pool busy runs every part itself, and the addon may be called from several JavaScript
 * threads at once). Kept between calls for whoever holds gemm_cache_mu; a caller that finds it
 * held allocates its own for the call.
 */
static uv_mutex_t gemm_cache_mu;
static int gemm_cache_ok = 0;
static float *gemm_cache = NULL;
static size_t gemm_cache_floats = 0;

/* C[m0:m1, n0:n1], with `pack` (GEMM_PACK floats) for B's blocks when B is stored [N, K]. */
static void tile_mm_range(const tile_mm_t *t, int64_t m0, int64_t m1, int64_t n0, int64_t n1, float *pack) {
  const int64_t M = t->m, N = t->n, K = t->k;
  for (int64_t j0 = n0; j0 < n1; j0 += GEMM_NC) {
    const int64_t nc = n1 - j0 < GEMM_NC ? n1 - j0 : GEMM_NC;
    for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
      const int64_t kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
      const float *R = t->b + k0 * N + j0; /* B [K, N] as it is */
      int64_t rs = N;
      int padded = 0;
      if (t->tb) {
        /*
         * B stored [N, K]: pack[kk, j] = B[j0 + j, k0 + kk], 16 × 16 blocks at a time (a whole
         * column of pack at once thrashed L1: its rows are 1 KB apart), rows padded with zeros
         * to whole vectors.
         */
        const int64_t ncp = (nc + TILE_PAD - 1) / TILE_PAD * TILE_PAD;
        for (int64_t jb = 0; jb < ncp; jb += 16) {
          for (int64_t kb = 0; kb < kc; kb += 16) {
            const int64_t ke = kc - kb < 16 ? kc - kb : 16;
            for (int64_t j = jb; j < jb + 16; j++) {
              float *dst = pack + kb * ncp + j;
              if (j < nc) {
                const float *src = t->b + (j0 + j) * K + k0 + kb;
                for (int64_t kk = 0; kk < ke; kk++) dst[kk * ncp] = src[kk];
              } else {
                for (int64_t kk = 0; kk < ke; kk++) dst[kk * ncp] = 0.0f;
              }
            }
          }
        }
        R = pack;
        rs = ncp;
        padded = 1;
      }
      for (int64_t i0 = m0; i0 < m1; i0 += GEMM_MC) {
        const int64_t mc = m1 - i0 < GEMM_MC ? m1 - i0 : GEMM_MC;
        const float *L = t->ta ? t->a + k0 * M + i0 : t->a + i0 * K + k0;
        t->gemm(mc, nc, kc, L, t->ta ? 1 : K, t->ta ? M : 1, R, rs, padded, t->c + i0 * N + j0, N, k0 > 0);
      }
    }
  }
}

static void tile_mm_part(void *ctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const tile_mm_t *t = (const tile_mm_t *)ctx;
  for (int64_t p = begin; p < end; p++) {
    if (t->by_cols) {
      const int64_t panels = (t->n + GEMM_PANEL - 1) / GEMM_PANEL;
      const int64_t n0 = panels * p / t->parts * GEMM_PANEL;
      int64_t n1 = panels * (p + 1) / t->parts * GEMM_PANEL;
      if (n1 > t->n) n1 = t->n;
      if (n0 < n1) tile_mm_range(t, 0, t->m, n0, n1, t->pack == NULL ? NULL : t->pack + p * GEMM_PACK);
    } else {
      const int64_t tiles = (t->m + TILE_MR - 1) / TILE_MR;
      const int64_t m0 = tiles * p / t->parts * TILE_MR;
      int64_t m1 = tiles * (p + 1) / t->parts * TILE_MR;
      if (m1 > t->m) m1 = t->m;
      if (m0 < m1) tile_mm_range(t, m0, m1, 0, t->n, t->pack == NULL ? NULL : t->pack + p * GEMM_PACK);
    }
  }
}

/* ASCII case-insensitive equality (OpenBLAS names its cores "SkylakeX", "Haswell", ...). */
static int same_name(const char *x, const char *lower) {
  for (; *x != '\0' && *lower != '\0'; x++, lower++) {
    const char c = *x >= 'A' && *x <= 'Z' ? (char)(*x - 'A' + 'a') : *x;
    if (c != *lower) return 0;
  }
  return *x == *lower;
}

static int tile_mm_on = 0;
static const char *tile_mm_name = "openblas";
static uv_once_t tile_mm_once = UV_ONCE_INIT;

static void tile_mm_pick(void) {
  tile_gemm_get();
  gemm_cache_ok = uv_mutex_init(&gemm_cache_mu) == 0;
  const char *want = getenv("PARA_MATMUL");
  if (want != NULL && strcmp(want, "openblas") == 0) {
    tile_mm_on = 0;
  } else if (want != NULL && strcmp(want, "tile") == 0) {
    tile_mm_on = 1;
  } else {
    const char *core = openblas_get_corename();
    const int blas_avx512 = core != NULL && (same_name(core, "skylakex") || same_name(core, "cooperlake") ||
                                             same_name(core, "sapphirerapids"));
    tile_mm_on = strcmp(tile_isa_name, "avx512") == 0 && !blas_avx512;
  }
  if (tile_mm_on) tile_mm_name = strcmp(tile_isa_name, "avx512") == 0 ? "tile-avx512"
                                 : strcmp(tile_isa_name, "avx2") == 0 ? "tile-avx2" : "tile-baseline";
}

/* Returns 1 when it computed C (the tile path is on), 0 when the caller is to run OpenBLAS. m, n, k >= 1. */
int para_tile_matmul(const float *a, const float *b, float *c, int64_t m, int64_t n, int64_t k, int ta, int tb) {
  uv_once(&tile_mm_once, tile_mm_pick);
  /*
   * Aᵀ · Bᵀ is left to OpenBLAS (rare), and so are products of fewer than GEMM_MIN_ROWS rows
   * (decode steps, a short prefill): there, copying B's blocks costs what the tile kernel gains
   * (32 rows: 113–146 GFLOP/s against OpenBLAS's 117–144; 64 rows × 512 × 512 transB: 119–160
   * against 147–168; 96 rows: 182–195 against 158–163).
   */
  if (!tile_mm_on || (ta && tb) || m < GEMM_MIN_ROWS) return 0;
  tile_mm_t t = {a, b, c, m, n, k, ta, tb, 0, 1, tile_gemm_get(), NULL};
  const int threads = (double)m * (double)n * (double)k >= GEMM_MIN_PARALLEL ? pool_threads() : 1;
  t.by_cols = n >= (int64_t)GEMM_PANEL * threads && (tb || m < (int64_t)TILE_MR * 16 * threads);
  const int64_t units = t.by_cols ? (n + GEMM_PANEL - 1) / GEMM_PANEL : (m + TILE_MR - 1) / TILE_MR;
  t.parts = threads < units ? threads : units;
  if (t.parts < 1) t.parts = 1;
  int cached = 0;
  if (tb) {
    const size_t need = (size_t)t.parts * GEMM_PACK;
    if (gemm_cache_ok && uv_mutex_trylock(&gemm_cache_mu) == 0) {
      cached = 1;
      if (gemm_cache_floats < need) {
        free(gemm_cache);
        gemm_cache = (float *)aligned_alloc(64, need * sizeof(float));
        gemm_cache_floats = gemm_cache == NULL ? 0 : need;
      }
      t.pack = gemm_cache;
    } else {
      t.pack = (float *)aligned_alloc(64, need * sizeof(float));
    }
    if (t.pack == NULL) { /* out of memory: OpenBLAS needs no buffer of ours */
      if (cached) uv_mutex_unlock(&gemm_cache_mu);
      return 0;
    }
  }
  if (t.parts == 1) tile_mm_part(&t, 0, 1, 0);
  else parallel_for(t.parts, (int64_t)1 << 40, tile_mm_part, &t);
  if (cached) uv_mutex_unlock(&gemm_cache_mu);
  else free(t.pack);
  return 1;
}

/* "tile-avx512", "tile-avx2", "tile-baseline" or "openblas": what BatchMatMul's products run on. */
const char *para_matmul_path(void) {
  uv_once(&tile_mm_once, tile_mm_pick);
  return tile_mm_name;
}

typedef struct {
  const att_t *c;
  tile_gemm_fn gemm;
  float *kt;                /* forward: [B·Hkv, hd, sp] keys transposed, zero columns after S */
  int64_t *lo, *hi;         /* forward: [maskBatches, T] each mask row's live keys */
  int64_t b_count, sp, blk, stack, nstk, ntb;
  int failed;
} att_tile_t;

/* dst[d·sp + j] = src[j·hd + d] for j < S, zero for S ≤ j < sp. */
static void att_transpose(const float *restrict src, int64_t S, int64_t hd, int64_t sp, float *restrict dst) {
  for (int64_t d = 0; d < hd; d++) {
    float *row = dst + d * sp;
    for (int64_t j = 0; j < S; j++) row[j] = src[j * hd + d];
    for (int64_t j = S; j < sp; j++) row[j] = 0;
  }
}

/* Block `nb` of group (b, g)'s query rows: the first row's offset in q (in rows), its rows, its
 * positions and first position; the live key range [*a, *e) (e ≤ a: none). */
static void att_tile_block(const att_tile_t *t, int64_t b, int64_t g, int64_t nb, const int64_t *lo, const int64_t *hi,
                           int64_t *row0, int64_t *n, int64_t *npos, int64_t *t0, int64_t *a, int64_t *e) {
  const att_t *c = t->c;
  const int64_t rep = c->hq / c->hkv, T = c->t;
  const int64_t r = (nb / t->ntb) * t->stack, tb = nb % t->ntb;
  *t0 = tb * t->blk;
  *npos = T - *t0 < t->blk ? T - *t0 : t->blk;
  *n = t->stack * *npos;
  *row0 = (b * c->hq + g * rep + r) * T + *t0;
  int64_t lo_ = c->s, hi_ = 0;
  for (int64_t p = *t0; p < *t0 + *npos; p++) {
    if (hi[p] <= lo[p]) continue;
    lo_ = lo[p] < lo_ ? lo[p] : lo_;
    hi_ = hi[p] > hi_ ? hi[p] : hi_;
  }
  *a = lo_;
  *e = hi_;
}

static void att_tile_prepass(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  att_tile_t *t = (att_tile_t *)vctx;
  const att_t *c = t->c;
  const int64_t S = c->s, hd = c->hd, T = c->t;
  for (int64_t task = begin; task < end; task++) {
    const int64_t b = task / c->hkv, g = task % c->hkv;
    att_transpose(c->k + task * S * hd, S, hd, t->sp, t->kt + task * hd * t->sp);
    if (g == 0 && b < t->b_count)
      att_live_ranges(c->mask != NULL ? c->mask + b * c->mask_batch_stride : NULL, T, S, t->lo + b * T, t->hi + b * T);
  }
}

HOT static void att_tile_forward(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  att_tile_t *t = (att_tile_t *)vctx;
  const att_t *c = t->c;
  const int64_t S = c->s, hd = c->hd, T = c->t, per_group = t->nstk * t->ntb;
  float *p = (float *)malloc((size_t)(t->stack * t->blk * S) * sizeof(float));
  if (p == NULL) {
    t->failed = 1;
    return;
  }
  for (int64_t task = begin; task < end; task++) {
    const int64_t bg = task / per_group, b = bg / c->hkv, g = bg % c->hkv;
    const int64_t mb = b < t->b_count ? b : 0;
    int64_t row0, n, npos, t0, a, e;
    att_tile_block(t, b, g, task % per_group, t->lo + mb * T, t->hi + mb * T, &row0, &n, &npos, &t0, &a, &e);
    float *out = c->out + row0 * hd;
    if (e <= a) {
      memset(out, 0, (size_t)(n * hd) * sizeof(float));
      continue;
    }
    const int64_t w = e - a;
    const float *mrow = c->mask != NULL ? c->mask + mb * c->mask_batch_stride + t0 * S + a : NULL;
    att_rows_t rr = {p, NULL, mrow, w, S, npos, c->scale};
    t->gemm(n, w, hd, c->q + row0 * hd, hd, 1, t->kt + bg * hd * t->sp + a, t->sp, 1, p, w, 0); /* [n, w] */
    att_softmax_rows(&rr, 0, n, tid);
    t->gemm(n, hd, w, p, w, 1, c->v + (bg * S + a) * hd, hd, 0, out, hd, 0); /* [n, hd] */
  }
  free(p);
}

HOT static void att_tile_backward(void *vctx, int64_t begin, int64_t end, int tid) {
  att_tile_t *t = (att_tile_t *)vctx;
  const att_t *c = t->c;
  const int64_t S = c->s, hd = c->hd, T = c->t, sp = t->sp, rows = t->stack * t->blk;
  const int64_t per_group = t->nstk * t->ntb;
  const size_t floats = (size_t)(2 * hd * sp + 2 * rows * S);
  float *kt = (float *)malloc(floats * sizeof(float));
  int64_t *range = (int64_t *)malloc((size_t)(2 * T) * sizeof(int64_t));
  if (kt == NULL || range == NULL) {
    free(kt);
    free(range);
    t->failed = 1;
    return;
  }
  float *vt = kt + hd * sp, *p = vt + hd * sp, *dp = p + rows * S;
  int64_t *lo = range, *hi = range + T, ranges_of = -1;
  for (int64_t bg = begin; bg < end; bg++) {
    const int64_t b = bg / c->hkv, g = bg % c->hkv;
    const int64_t mb = c->mask_batch_stride != 0 ? b : 0;
    const float *mask_b = c->mask != NULL ? c->mask + mb * c->mask_batch_stride : NULL;
    if (ranges_of != mb) {
      att_live_ranges(mask_b, T, S, lo, hi);
      ranges_of = mb;
    }
    const float *kh = c->k + bg * S * hd, *vh = c->v + bg * S * hd;
    float *dkh = c->dk + bg * S * hd, *dvh = c->dv + bg * S * hd;
    att_transpose(kh, S, hd, sp, kt);
    att_transpose(vh, S, hd, sp, vt);
    for (int64_t nb = 0; nb < per_group; nb++) {
      int64_t row0, n, npos, t0, a, e;
      att_tile_block(t, b, g, nb, lo, hi, &row0, &n, &npos, &t0, &a, &e);
      if (e <= a) continue; /* dq stays 0 (zeroed by the caller), no key gets a gradient */
      const int64_t w = e - a;
      const float *q = c->q + row0 * hd, *dy = c->dy + row0 * hd;
      att_rows_t rr = {p, dp, mask_b != NULL ? mask_b + t0 * S + a : NULL, w, S, npos, c->scale};
      t->gemm(n, w, hd, q, hd, 1, kt + a, sp, 1, p, w, 0); /* scores [n, w] */
      att_softmax_rows(&rr, 0, n, tid);
      t->gemm(n, w, hd, dy, hd, 1, vt + a, sp, 1, dp, w, 0); /* dP = dY Vᵀ [n, w] */
      att_dscores_rows(&rr, 0, n, tid);                      /* dS, scaled */
      t->gemm(n, hd, w, dp, w, 1, kh + a * hd, hd, 0, c->dq + row0 * hd, hd, 0); /* dq = dS K */
      t->gemm(w, hd, n, dp, 1, w, q, hd, 0, dkh + a * hd, hd, 1);                /* dk += dSᵀ Q */
      t->gemm(w, hd, n, p, 1, w, dy, hd, 0, dvh + a * hd, hd, 1);                /* dv += Pᵀ dY */
    }
  }
  free(kt);
  free(range);
}

/* Returns 0 when out of memory. */
static int att_tile(const att_t *c, int grad, int64_t B) {
  const int64_t Hkv = c->hkv, rep = c->hq / Hkv, T = c->t, S = c->s, hd = c->hd;
  att_tile_t t;
  memset(&t, 0, sizeof t);
  t.c = c;
  t.gemm = tile_gemm_get();
  t.sp = (S + TILE_PAD - 1) / TILE_PAD * TILE_PAD + TILE_PAD; /* reads from any lo stay inside */
  t.blk = ATT_TILE_SCRATCH / (S > 0 ? S : 1);
  if (t.blk > ATT_TILE_BLOCK) t.blk = ATT_TILE_BLOCK;
  if (t.blk < 1) t.blk = 1;
  if (t.blk > T) t.blk = T;
  t.stack = t.blk == T && rep * T * S <= ATT_TILE_SCRATCH ? rep : 1;
  t.nstk = rep / t.stack;
  t.ntb = (T + t.blk - 1) / t.blk;
  t.b_count = c->mask != NULL && c->mask_batch_stride != 0 ? B : 1;
  const int64_t groups = B * Hkv, work = groups * rep * T * S * hd;
  if (grad) {
    parallel_for(groups, work, att_tile_backward, &t);
    return !t.failed;
  }
  t.kt = (float *)malloc((size_t)(groups * hd * t.sp) * sizeof(float));
  int64_t *range = (int64_t *)malloc((size_t)(2 * t.b_count * T) * sizeof(int64_t));
  if (t.kt == NULL || range == NULL) {
    free(t.kt);
    free(range);
    return 0;
  }
  t.lo = range;
  t.hi = range + t.b_count * T;
  parallel_for(groups, groups * S * hd, att_tile_prepass, &t);
  parallel_for(groups * t.nstk * t.ntb, work, att_tile_forward, &t);
  free(t.kt);
  free(range);
  return !t.failed;
}

/* ---------- cross-entropy from logits (weighted sum of per-row nll) ---------- */

/*
 * Rows n of logits [N, V]: lse[n] = max + log Σ exp(x − max) (the sum in double), nll[n] =
 * lse[n] − x[n, target[n]] with the target clamped into [0, V), loss = Σ w[n]·nll[n] (per-thread
 * partial sums in double, added in thread order). The gradient: dlogits[n, j] = dy·w[n]·(exp(x[n,
 * j] − lse[n]) − [j = target[n]]).
 */
typedef struct {
  const float *x, *w, *lse_in, *dy;
  const int32_t *t;
  float *lse, *dx;
  double *part; /* [MAX_THREADS] */
  int64_t v;
} ce_t;

static inline int64_t ce_target(const int32_t *t, int64_t n, int64_t V) {
  const int64_t k = t[n];
  return k < 0 ? 0 : k >= V ? V - 1 : k;
}

#define CE_CHUNK 256

HOT_WIDE static void ce_forward_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  ce_t *c = (ce_t *)vctx;
  const int64_t V = c->v;
  double acc = 0;
  for (int64_t n = begin; n < end; n++) {
    const float *x = c->x + n * V;
    /* the max in eight lanes (one running max is a chain of dependent compares: 4x slower) */
    float ml[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int64_t jm = 0;
    for (; jm + 8 <= V; jm += 8) {
      for (int l = 0; l < 8; l++) ml[l] = x[jm + l] > ml[l] ? x[jm + l] : ml[l];
    }
    float m = -INFINITY;
    for (int l = 0; l < 8; l++) m = ml[l] > m ? ml[l] : m;
    for (; jm < V; jm++) m = x[jm] > m ? x[jm] : m;
    float lse;
    /* A NaN is never the max; exp_f keeps it, so the sum and lse below are NaN (the generic path's). */
    if (m == INFINITY || m == -INFINITY) lse = NAN; /* the generic path: x − max = ±inf ∓ inf */
    else {
      /* exp into a buffer, then the sum in eight lanes: two loops GCC vectorises (one loop that
       * sums exp_f's results in lanes it vectorises worse: the forward 1.13x faster on [2048, 4096]) */
      float buf[CE_CHUNK];
      float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      double s = 0;
      for (int64_t j0 = 0; j0 < V; j0 += CE_CHUNK) {
        const int64_t nj = V - j0 < CE_CHUNK ? V - j0 : CE_CHUNK;
        for (int64_t j = 0; j < nj; j++) buf[j] = exp_f(x[j0 + j] - m);
        int64_t j = 0;
        for (; j + 8 <= nj; j += 8) {
          for (int l = 0; l < 8; l++) part[l] += buf[j + l];
        }
        for (; j < nj; j++) s += (double)buf[j];
      }
      for (int l = 0; l < 8; l++) s += part[l];
      lse = (float)((double)m + log(s));
    }
    c->lse[n] = lse;
    acc += (double)c->w[n] * ((double)lse - (double)x[ce_target(c->t, n, V)]);
  }
  c->part[tid] += acc;
}

HOT_WIDE static void ce_backward_rows(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const ce_t *c = (const ce_t *)vctx;
  const int64_t V = c->v;
  const float dy = c->dy[0];
  for (int64_t n = begin; n < end; n++) {
    const float *x = c->x + n * V;
    float *d = c->dx + n * V;
    const float g = dy * c->w[n], lse = c->lse_in[n];
    for (int64_t j = 0; j < V; j++) d[j] = g * exp_f(x[j] - lse);
    d[ce_target(c->t, n, V)] -= g;
  }
}

/* ---------- AdamW over every parameter in one call ---------- */

/*
 * One optimizer step for n parameters (segments), each contiguous float32: p, m, v, g in;
 * p′, m′, v′ out (new buffers: the caller's variables may share their data with other tensors, so
 * nothing is written in place). In float32, each operation rounded in the generic path's order
 * (@para/train's AdamW on tfjs; no FMA contraction in ISO C mode, IEEE division and square root),
 * so the two agree bit for bit where the generic path's kernels are IEEE float32 (wasm):
 *   g  = g · gradScale
 *   m′ = m · β1 + g · (1 − β1)            v′ = v · β2 + (g · g) · (1 − β2)
 *   u  = (m′ / bc1) / (√(v′ / bc2) + ε)   p′ = (keep ≠ 1 ? p · keep : p) − u · lr
 * bc1, bc2, 1 − β1, 1 − β2 and keep = 1 − lr · wd come from the caller (JavaScript's doubles,
 * rounded to float32 here as tfjs rounds its scalars). Every element of every segment is one
 * unit of work: the pool splits the concatenation into contiguous ranges.
 */
typedef struct {
  const float *p, *m, *v, *g;
  float *po, *mo, *vo;
  int64_t n;
  float keep;
} adamw_seg_t;

typedef struct {
  const adamw_seg_t *seg;
  const int64_t *start; /* [count + 1]: each segment's first element in the concatenation */
  int64_t count;
  float lr, b1, omb1, b2, omb2, bc1, bc2, eps, gs;
} adamw_t;

/* One parameter's elements [0, n) of the given pointers (keep = 1 without decay: p · 1 = p exactly). */
static inline void adamw_span(const adamw_t *c, const float *restrict p, const float *restrict m,
                              const float *restrict v, const float *restrict g, float *restrict po,
                              float *restrict mo, float *restrict vo, int64_t n, float keep) {
  const float lr = c->lr, b1 = c->b1, omb1 = c->omb1, b2 = c->b2, omb2 = c->omb2, bc1 = c->bc1, bc2 = c->bc2,
              eps = c->eps, gs = c->gs;
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i] * gs;
    const float m1 = m[i] * b1 + gi * omb1;
    const float v1 = v[i] * b2 + (gi * gi) * omb2;
    const float u = (m1 / bc1) / (sqrtf(v1 / bc2) + eps);
    mo[i] = m1;
    vo[i] = v1;
    po[i] = p[i] * keep - u * lr;
  }
}

/* The segment holding element `at` of a concatenation: the last k with start[k] <= at. */
static int64_t segment_of(const int64_t *start, int64_t count, int64_t at) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (start[mid] <= at) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

HOT_WIDE static void adamw_range(void *vctx, int64_t begin, int64_t end, int tid) {
  (void)tid;
  const adamw_t *c = (const adamw_t *)vctx;
  /* from the segment holding `begin` (empty ones skipped below) */
  for (int64_t k = segment_of(c->start, c->count, begin); k < c->count && c->start[k] < end; k++) {
    const int64_t s0 = c->start[k], s1 = c->start[k + 1];
    const int64_t a = begin > s0 ? begin : s0, b = end < s1 ? end : s1;
    const adamw_seg_t *sg = &c->seg[k];
    const int64_t o = a - s0;
    if (a < b) adamw_span(c, sg->p + o, sg->m + o, sg->v + o, sg->g + o, sg->po + o, sg->mo + o, sg->vo + o, b - a, sg->keep);
  }
}

/* ---------- Σ x² over many tensors (the global gradient norm) ---------- */

/*
 * Σ_k Σ_j x_k[j]² in double over `count` tensors, the concatenation split into contiguous ranges
 * on the pool; each range's sum in chunks of SUMSQ_CHUNK (float lanes within a chunk, double
 * across), the threads' partial sums added in thread order.
 */
#define SUMSQ_CHUNK 4096

typedef struct {
  const float *const *x;
  const int64_t *start; /* [count + 1] */
  int64_t count;
  double part[MAX_THREADS];
} sumsq_t;

HOT static void sumsq_range(void *vctx, int64_t begin, int64_t end, int tid) {
  sumsq_t *c = (sumsq_t *)vctx;
  double acc = 0;
  for (int64_t k = segment_of(c->start, c->count, begin); k < c->count && c->start[k] < end; k++) {
    const int64_t a = begin > c->start[k] ? begin : c->start[k], b = end < c->start[k + 1] ? end : c->start[k + 1];
    const float *x = c->x[k] + (a - c->start[k]);
    for (int64_t i = 0; i < b - a; i += SUMSQ_CHUNK) acc += sum_squares(x + i, b - a - i < SUMSQ_CHUNK ? b - a - i : SUMSQ_CHUNK);
  }
  c->part[tid] = acc;
}

/* ---------- argument checking ---------- */

#define NAPI_CALL(env, call)                                                                   \
  do {                                                                                         \
    if ((call) != napi_ok) {                                                                   \
      const napi_extended_error_info *info_ = NULL;                                            \
      napi_get_last_error_info((env), &info_);                                                 \
      bool pending_ = false;                                                                   \
      napi_is_exception_pending((env), &pending_);                                             \
      if (!pending_) {                                                                         \
        napi_throw_error((env), "PARA_BLAS_NAPI",                                              \
                         info_ && info_->error_message ? info_->error_message : "N-API call failed"); \
      }                                                                                        \
      return NULL;                                                                             \
    }                                                                                          \
  } while (0)

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "PARA_BLAS_BOUNDS", msg);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "PARA_BLAS_ARGS", msg);
  return NULL;
}

static int is_count(double v, double max) { return v >= 0 && v <= max && v == floor(v); }

/* heap, params (Float64Array of at least `want` entries; its length into params_len unless NULL). Returns 0 after throwing. */
static int heap_args_len(napi_env env, napi_callback_info info, const char *name, size_t want, uint8_t **heap,
                         size_t *heap_size, const double **params, size_t *params_len) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    throw_type(env, name);
    return 0;
  }
  bool is_ab = false;
  if (napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab) {
    throw_type(env, "fused kernel: heap must be an ArrayBuffer");
    return 0;
  }
  void *data = NULL;
  if (napi_get_arraybuffer_info(env, argv[0], &data, heap_size) != napi_ok) {
    throw_type(env, "fused kernel: cannot read the heap");
    return 0;
  }
  bool is_ta = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *pdata = NULL;
  if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[1], &type, &len, &pdata, NULL, NULL) != napi_ok ||
      type != napi_float64_array) {
    throw_type(env, "fused kernel: params must be a Float64Array");
    return 0;
  }
  if (len < want) {
    throw_type(env, "fused kernel: params too short");
    return 0;
  }
  *heap = (uint8_t *)data;
  *params = (const double *)pdata;
  if (params_len != NULL) *params_len = len;
  return 1;
}

static int heap_args(napi_env env, napi_callback_info info, const char *name, size_t want, uint8_t **heap,
                     size_t *heap_size, const double **params) {
  return heap_args_len(env, info, name, want, heap, heap_size, params, NULL);
}

typedef struct {
  uint64_t off;
  uint64_t bytes;
} span_t;

/* An operand of `elems` float32 at byte offset `off`: aligned, in the heap, no overflow. */
static int span_ok(double off, uint64_t elems, size_t heap_size, span_t *out) {
  if (!is_count(off, MAX_VALUE)) return 0;
  const uint64_t o = (uint64_t)off;
  uint64_t bytes, end;
  if (o % 4 != 0) return 0;
  if (__builtin_mul_overflow(elems, (uint64_t)4, &bytes) || __builtin_add_overflow(o, bytes, &end)) return 0;
  if (end > heap_size) return 0;
  out->off = o;
  out->bytes = bytes;
  return 1;
}

static int overlap(span_t a, span_t b) {
  if (a.bytes == 0 || b.bytes == 0) return 0;
  return a.off < b.off + b.bytes && b.off < a.off + a.bytes;
}

/* No output overlaps an input or another output. */
static int disjoint(const span_t *in, int nin, const span_t *out, int nout) {
  for (int i = 0; i < nout; i++) {
    for (int j = 0; j < nin; j++) {
      if (overlap(out[i], in[j])) return 0;
    }
    for (int j = i + 1; j < nout; j++) {
      if (overlap(out[i], out[j])) return 0;
    }
  }
  return 1;
}

/* rows, d: integers with rows·d < 2^50. */
static int dims_ok(double rows, double d, uint64_t *total) {
  if (!is_count(rows, MAX_VALUE) || !is_count(d, MAX_VALUE)) return 0;
  return !__builtin_mul_overflow((uint64_t)rows, (uint64_t)d, total) && *total <= (uint64_t)MAX_VALUE;
}

/* ---------- entry points ---------- */

/* dw[j] = Σ over the threads' parts; frees them. */
static void reduce_dw(double *parts, int threads, int64_t d, float *dw) {
  for (int64_t j = 0; j < d; j++) {
    double s = 0;
    for (int t = 0; t < threads; t++) s += parts[(int64_t)t * d + j];
    dw[j] = (float)s;
  }
  free(parts);
}

/*
 * rmsNormHeap(heap, [x, w, y, rows, d, eps, unitOffset])
 * addRmsNormHeap(heap, [x, res, w, sum, y, rows, d, eps, unitOffset]): sum = x + res, y = norm(sum)
 */
static napi_value rms_forward_entry(napi_env env, napi_callback_info info, int with_res) {
  const char *name = with_res ? "addRmsNormHeap" : "rmsNormHeap";
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, name, with_res ? 9 : 7, &heap, &size, &p)) return NULL;
  const double *q = with_res ? p + 2 : p; /* q[3..6] = rows, d, eps, unitOffset */
  uint64_t total;
  if (!dims_ok(q[3], q[4], &total)) return throw_range(env, "rmsNormHeap: rows and d must be non-negative integers");
  const int64_t rows = (int64_t)q[3], d = (int64_t)q[4];
  const double eps = q[5];
  if (!(eps >= 0) || !isfinite(eps)) return throw_range(env, "rmsNormHeap: eps must be finite and >= 0");
  span_t x, res = {0, 0}, w, sum = {0, 0}, y;
  const int ok = with_res ? span_ok(p[0], total, size, &x) && span_ok(p[1], total, size, &res) &&
                                span_ok(p[2], (uint64_t)d, size, &w) && span_ok(p[3], total, size, &sum) &&
                                span_ok(p[4], total, size, &y)
                          : span_ok(p[0], total, size, &x) && span_ok(p[1], (uint64_t)d, size, &w) &&
                                span_ok(p[2], total, size, &y);
  if (!ok) return throw_range(env, "rmsNormHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  const span_t in[3] = {x, w, res};
  const span_t out[2] = {y, sum};
  if (!disjoint(in, 3, out, 2)) return throw_range(env, "rmsNormHeap: an output overlaps an input or the other output");
  if (total == 0) return NULL;
  rms_t c = {.x = (const float *)(heap + x.off),
             .w = (const float *)(heap + w.off),
             .res = with_res ? (const float *)(heap + res.off) : NULL,
             .sum = with_res ? (float *)(heap + sum.off) : NULL,
             .y = (float *)(heap + y.off),
             .d = d,
             .eps = eps,
             .off = q[6] != 0 ? 1.0f : 0.0f};
  parallel_for(rows, (int64_t)total, rms_forward_rows, &c);
  return NULL;
}

static napi_value RmsNormHeap(napi_env env, napi_callback_info info) { return rms_forward_entry(env, info, 0); }
static napi_value AddRmsNormHeap(napi_env env, napi_callback_info info) { return rms_forward_entry(env, info, 1); }

/*
 * rmsNormGradHeap(heap, [dy, x, w, dx, dw, rows, d, eps, unitOffset])
 * addRmsNormGradHeap(heap, [dy, ds, sum, w, dx, dw, rows, d, eps, unitOffset]): dx = ds + the
 * norm's gradient at sum (the gradient of both addends)
 */
static napi_value rms_backward_entry(napi_env env, napi_callback_info info, int with_ds) {
  const char *name = with_ds ? "addRmsNormGradHeap" : "rmsNormGradHeap";
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, name, with_ds ? 10 : 9, &heap, &size, &p)) return NULL;
  const double *q = with_ds ? p + 1 : p; /* q[1..4] = x (or sum), w, dx, dw; q[5..8] = rows, d, eps, unitOffset */
  uint64_t total;
  if (!dims_ok(q[5], q[6], &total)) return throw_range(env, "rmsNormGradHeap: rows and d must be non-negative integers");
  const int64_t rows = (int64_t)q[5], d = (int64_t)q[6];
  const double eps = q[7];
  if (!(eps >= 0) || !isfinite(eps)) return throw_range(env, "rmsNormGradHeap: eps must be finite and >= 0");
  span_t dy, ds = {0, 0}, x, w, dx, dw;
  const int ok = span_ok(p[0], total, size, &dy) && (!with_ds || span_ok(p[1], total, size, &ds)) &&
                 span_ok(q[1], total, size, &x) && span_ok(q[2], (uint64_t)d, size, &w) &&
                 span_ok(q[3], total, size, &dx) && span_ok(q[4], (uint64_t)d, size, &dw);
  if (!ok) return throw_range(env, "rmsNormGradHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  const span_t in[4] = {dy, x, w, ds};
  const span_t out[2] = {dx, dw};
  if (!disjoint(in, 4, out, 2)) return throw_range(env, "rmsNormGradHeap: an output overlaps an input or the other output");
  float *dwp = (float *)(heap + dw.off);
  if (d == 0) return NULL;
  if (rows == 0) {
    memset(dwp, 0, (size_t)d * sizeof(float));
    return NULL;
  }
  const int threads = (int64_t)total >= PARALLEL_MIN_ELEMENTS ? pool_threads() : 1;
  double *parts = (double *)calloc((size_t)threads * (size_t)d, sizeof(double));
  if (parts == NULL) {
    napi_throw_error(env, "PARA_BLAS_NOMEM", "rmsNormGradHeap: out of memory");
    return NULL;
  }
  rms_t c = {.x = (const float *)(heap + x.off),
             .w = (const float *)(heap + w.off),
             .dy = (const float *)(heap + dy.off),
             .ds = with_ds ? (const float *)(heap + ds.off) : NULL,
             .dx = (float *)(heap + dx.off),
             .dw_parts = parts,
             .d = d,
             .eps = eps,
             .off = q[8] != 0 ? 1.0f : 0.0f};
  parallel_for(rows, threads > 1 ? (int64_t)total : 0, rms_backward_rows, &c);
  reduce_dw(parts, threads, d, dwp);
  return NULL;
}

static napi_value RmsNormGradHeap(napi_env env, napi_callback_info info) { return rms_backward_entry(env, info, 0); }
static napi_value AddRmsNormGradHeap(napi_env env, napi_callback_info info) { return rms_backward_entry(env, info, 1); }

/* swigluHeap(heap, [gate, up, y, n]) */
static napi_value SwigluHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "swigluHeap(heap, params)", 4, &heap, &size, &p)) return NULL;
  if (!is_count(p[3], MAX_VALUE)) return throw_range(env, "swigluHeap: n must be a non-negative integer");
  const uint64_t n = (uint64_t)p[3];
  span_t g, u, y;
  if (!span_ok(p[0], n, size, &g) || !span_ok(p[1], n, size, &u) || !span_ok(p[2], n, size, &y)) {
    return throw_range(env, "swigluHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  }
  const span_t in[2] = {g, u};
  if (!disjoint(in, 2, &y, 1)) return throw_range(env, "swigluHeap: the output overlaps an input");
  swiglu_t c = {(const float *)(heap + g.off), (const float *)(heap + u.off), NULL, (float *)(heap + y.off), NULL,
                NULL};
  parallel_for((int64_t)n, (int64_t)n, swiglu_forward_range, &c);
  return NULL;
}

/* swigluGradHeap(heap, [dy, gate, up, dgate, dup, n]) */
static napi_value SwigluGradHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "swigluGradHeap(heap, params)", 6, &heap, &size, &p)) return NULL;
  if (!is_count(p[5], MAX_VALUE)) return throw_range(env, "swigluGradHeap: n must be a non-negative integer");
  const uint64_t n = (uint64_t)p[5];
  span_t dy, g, u, dg, du;
  if (!span_ok(p[0], n, size, &dy) || !span_ok(p[1], n, size, &g) || !span_ok(p[2], n, size, &u) ||
      !span_ok(p[3], n, size, &dg) || !span_ok(p[4], n, size, &du)) {
    return throw_range(env, "swigluGradHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  }
  const span_t in[3] = {dy, g, u};
  const span_t out[2] = {dg, du};
  if (!disjoint(in, 3, out, 2)) return throw_range(env, "swigluGradHeap: an output overlaps an input or the other output");
  swiglu_t c = {(const float *)(heap + g.off), (const float *)(heap + u.off), (const float *)(heap + dy.off), NULL,
                (float *)(heap + dg.off), (float *)(heap + du.off)};
  parallel_for((int64_t)n, (int64_t)n, swiglu_backward_range, &c);
  return NULL;
}

/* ropeHeap(heap, [x, cos, sin, y, B, H, T, hd, cosBatch, inverse]) */
static napi_value RopeHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "ropeHeap(heap, params)", 10, &heap, &size, &p)) return NULL;
  for (int i = 4; i <= 8; i++) {
    if (!is_count(p[i], MAX_VALUE)) return throw_range(env, "ropeHeap: B, H, T, hd and cosBatch must be non-negative integers");
  }
  const uint64_t B = (uint64_t)p[4], H = (uint64_t)p[5], T = (uint64_t)p[6], hd = (uint64_t)p[7], cb = (uint64_t)p[8];
  if (hd % 2 != 0) return throw_range(env, "ropeHeap: hd must be even");
  if (cb != 1 && cb != B) return throw_range(env, "ropeHeap: cosBatch must be 1 or B");
  uint64_t rows, total, table;
  if (__builtin_mul_overflow(B, H, &rows) || __builtin_mul_overflow(rows, T, &rows) ||
      __builtin_mul_overflow(rows, hd, &total) || __builtin_mul_overflow(cb, T, &table) ||
      __builtin_mul_overflow(table, hd, &table) || total > (uint64_t)MAX_VALUE) {
    return throw_range(env, "ropeHeap: shape too large");
  }
  span_t x, cs, sn, y;
  if (!span_ok(p[0], total, size, &x) || !span_ok(p[1], table, size, &cs) || !span_ok(p[2], table, size, &sn) ||
      !span_ok(p[3], total, size, &y)) {
    return throw_range(env, "ropeHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  }
  const span_t in[3] = {x, cs, sn};
  if (!disjoint(in, 3, &y, 1)) return throw_range(env, "ropeHeap: the output overlaps an input");
  if (total == 0) return NULL;
  rope_t c = {(const float *)(heap + x.off), (const float *)(heap + cs.off), (const float *)(heap + sn.off),
              (float *)(heap + y.off), (int64_t)H, (int64_t)T, (int64_t)hd, cb == 1 ? 0 : (int64_t)(T * hd),
              p[9] != 0};
  parallel_for((int64_t)rows, (int64_t)total, rope_rows, &c);
  return NULL;
}

/* swigluScaledHeap(heap, [gate, up, scale, y, B, T, F, scaleBatch]): gate/up/y [B, T, F], scale [scaleBatch, 1, F] */
static napi_value SwigluScaledHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "swigluScaledHeap(heap, params)", 8, &heap, &size, &p)) return NULL;
  for (int i = 4; i <= 7; i++) {
    if (!is_count(p[i], MAX_VALUE)) {
      return throw_range(env, "swigluScaledHeap: B, T, F and scaleBatch must be non-negative integers");
    }
  }
  const uint64_t B = (uint64_t)p[4], T = (uint64_t)p[5], F = (uint64_t)p[6], sb = (uint64_t)p[7];
  if (sb != 1 && sb != B) return throw_range(env, "swigluScaledHeap: scaleBatch must be 1 or B");
  uint64_t rows, n, ns;
  if (__builtin_mul_overflow(B, T, &rows) || __builtin_mul_overflow(rows, F, &n) ||
      __builtin_mul_overflow(sb, F, &ns) || n > (uint64_t)MAX_VALUE) {
    return throw_range(env, "swigluScaledHeap: shape too large");
  }
  span_t g, u, s, y;
  if (!span_ok(p[0], n, size, &g) || !span_ok(p[1], n, size, &u) || !span_ok(p[2], ns, size, &s) ||
      !span_ok(p[3], n, size, &y)) {
    return throw_range(env, "swigluScaledHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  }
  const span_t in[3] = {g, u, s};
  if (!disjoint(in, 3, &y, 1)) return throw_range(env, "swigluScaledHeap: the output overlaps an input");
  if (n == 0) return NULL;
  swiglu_scaled_t c = {(const float *)(heap + g.off), (const float *)(heap + u.off), (const float *)(heap + s.off),
                       (float *)(heap + y.off),       (int64_t)T,
                       (int64_t)F,                    sb == 1 ? 0 : (int64_t)F};
  parallel_for((int64_t)rows, (int64_t)n, swiglu_scaled_rows, &c);
  return NULL;
}

/* The B, T, F and scaleBatch of scaleHeap / scaleGradHeap (p[0..3]), with n = B·T·F, ns = scaleBatch·F. */
static int scale_dims(napi_env env, int grad, const double *p, uint64_t *dims, uint64_t *n, uint64_t *ns) {
  for (int i = 0; i < 4; i++) {
    if (!is_count(p[i], MAX_VALUE)) {
      throw_range(env, grad ? "scaleGradHeap: B, T, F and scaleBatch must be non-negative integers"
                            : "scaleHeap: B, T, F and scaleBatch must be non-negative integers");
      return 0;
    }
    dims[i] = (uint64_t)p[i];
  }
  if (dims[3] != 1 && dims[3] != dims[0]) {
    throw_range(env, grad ? "scaleGradHeap: scaleBatch must be 1 or B" : "scaleHeap: scaleBatch must be 1 or B");
    return 0;
  }
  uint64_t rows;
  if (__builtin_mul_overflow(dims[0], dims[1], &rows) || __builtin_mul_overflow(rows, dims[2], n) ||
      __builtin_mul_overflow(dims[3], dims[2], ns) || *n > (uint64_t)MAX_VALUE) {
    throw_range(env, grad ? "scaleGradHeap: shape too large" : "scaleHeap: shape too large");
    return 0;
  }
  return 1;
}

/* scaleHeap(heap, [x, scale, y, B, T, F, scaleBatch]): x/y [B, T, F], scale [scaleBatch, 1, F] */
static napi_value ScaleHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "scaleHeap(heap, params)", 7, &heap, &size, &p)) return NULL;
  uint64_t d[4], n, ns;
  if (!scale_dims(env, 0, p + 3, d, &n, &ns)) return NULL;
  span_t x, s, y;
  if (!span_ok(p[0], n, size, &x) || !span_ok(p[1], ns, size, &s) || !span_ok(p[2], n, size, &y)) {
    return throw_range(env, "scaleHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  }
  const span_t in[2] = {x, s};
  if (!disjoint(in, 2, &y, 1)) return throw_range(env, "scaleHeap: the output overlaps an input");
  if (n == 0) return NULL;
  scale_t c = {.x = (const float *)(heap + x.off),
               .scale = (const float *)(heap + s.off),
               .y = (float *)(heap + y.off),
               .t = (int64_t)d[1],
               .f = (int64_t)d[2],
               .scale_batch_stride = d[3] == 1 ? 0 : (int64_t)d[2]};
  parallel_for((int64_t)(d[0] * d[1]), (int64_t)n, scale_forward_rows, &c);
  return NULL;
}

/*
 * scaleGradHeap(heap, [dy, x, scale, dx, dscale, B, T, F, scaleBatch]): dy/x/dx [B, T, F],
 * scale/dscale [scaleBatch, 1, F].
 */
static napi_value ScaleGradHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "scaleGradHeap(heap, params)", 9, &heap, &size, &p)) return NULL;
  uint64_t d[4], n, ns;
  if (!scale_dims(env, 1, p + 5, d, &n, &ns)) return NULL;
  span_t dy, x, s, dx, ds;
  if (!span_ok(p[0], n, size, &dy) || !span_ok(p[1], n, size, &x) || !span_ok(p[2], ns, size, &s) ||
      !span_ok(p[3], n, size, &dx) || !span_ok(p[4], ns, size, &ds)) {
    return throw_range(env, "scaleGradHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  }
  const span_t in[3] = {dy, x, s};
  const span_t out[2] = {dx, ds};
  if (!disjoint(in, 3, out, 2)) {
    return throw_range(env, "scaleGradHeap: an output overlaps an input or the other output");
  }
  if (ns == 0) return NULL;
  float *dsp = (float *)(heap + ds.off);
  if (n == 0) { /* B or T is 0: nothing to sum */
    memset(dsp, 0, (size_t)ns * sizeof(float));
    return NULL;
  }
  const int64_t B = (int64_t)d[0], T = (int64_t)d[1], F = (int64_t)d[2];
  const int per_batch = d[3] != 1 && B > 1; /* every batch row has its own scale */
  const int threads = (int64_t)n >= PARALLEL_MIN_ELEMENTS ? pool_threads() : 1;
  double *acc = (double *)calloc((size_t)threads * (size_t)F, sizeof(double));
  if (acc == NULL) {
    napi_throw_error(env, "PARA_BLAS_NOMEM", "scaleGradHeap: out of memory");
    return NULL;
  }
  scale_t c = {.x = (const float *)(heap + x.off),
               .scale = (const float *)(heap + s.off),
               .dy = (const float *)(heap + dy.off),
               .dx = (float *)(heap + dx.off),
               .ds = dsp,
               .acc = acc,
               .t = T,
               .f = F,
               .scale_batch_stride = d[3] == 1 ? 0 : F};
  if (per_batch) {
    parallel_for(B, threads > 1 ? (int64_t)n : 0, scale_backward_batches, &c);
    free(acc);
  } else {
    parallel_for(B * T, threads > 1 ? (int64_t)n : 0, scale_backward_rows, &c);
    reduce_dw(acc, threads, F, dsp); /* frees acc */
  }
  return NULL;
}

/*
 * ropeKvWriteHeap(heap, [q, k, v, cos, sin, kCache, vCache, qScale, kScale, vScale, qOut,
 *                        B, Hq, Hkv, T, hd, C, cosBatch, qScaleBatch, kScaleBatch, vScaleBatch,
 *                        slots[0], …, slots[B - 1]])
 * q/qOut [B, Hq, T, hd], k/v [B, Hkv, T, hd], cos/sin [cosBatch, 1, T, hd], caches [B, Hkv, C, hd],
 * qScale [qScaleBatch, 1, Hq·hd], kScale/vScale [·, 1, Hkv·hd] (an offset of -1: none; its batch
 * then ignored). slots[b]: -1 (row b writes nothing) or a slot with slots[b] + T ≤ C. The caches
 * are written in place: they are outputs that need not be disjoint from themselves as inputs, but
 * they and qOut must overlap no input and no other output.
 */
#define ROPE_KV_HEAD 21
static napi_value RopeKvWriteHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size, len;
  const double *p;
  if (!heap_args_len(env, info, "ropeKvWriteHeap(heap, params)", ROPE_KV_HEAD, &heap, &size, &p, &len)) return NULL;
  for (int i = 11; i < ROPE_KV_HEAD; i++) {
    if (!is_count(p[i], MAX_VALUE)) {
      return throw_range(env, "ropeKvWriteHeap: B, Hq, Hkv, T, hd, C and the batches must be non-negative integers");
    }
  }
  const uint64_t B = (uint64_t)p[11], Hq = (uint64_t)p[12], Hkv = (uint64_t)p[13], T = (uint64_t)p[14],
                 hd = (uint64_t)p[15], C = (uint64_t)p[16], cb = (uint64_t)p[17];
  if (hd % 2 != 0) return throw_range(env, "ropeKvWriteHeap: hd must be even");
  if (cb != 1 && cb != B) return throw_range(env, "ropeKvWriteHeap: cosBatch must be 1 or B");
  if (len - ROPE_KV_HEAD != B) return throw_range(env, "ropeKvWriteHeap: params must end with one slot per row (B)");
  const int has_scale[3] = {p[7] != -1, p[8] != -1, p[9] != -1};
  for (int i = 0; i < 3; i++) {
    const uint64_t sb = (uint64_t)p[18 + i];
    if (has_scale[i] && sb != 1 && sb != B) return throw_range(env, "ropeKvWriteHeap: a scale's batch must be 1 or B");
  }
  uint64_t qn, kn, cn, tn, qsn, kvsn;
  if (__builtin_mul_overflow(B, Hq, &qn) || __builtin_mul_overflow(qn, T, &qn) || __builtin_mul_overflow(qn, hd, &qn) ||
      __builtin_mul_overflow(B, Hkv, &kn) || __builtin_mul_overflow(kn, T, &kn) || __builtin_mul_overflow(kn, hd, &kn) ||
      __builtin_mul_overflow(B, Hkv, &cn) || __builtin_mul_overflow(cn, C, &cn) || __builtin_mul_overflow(cn, hd, &cn) ||
      __builtin_mul_overflow(cb, T, &tn) || __builtin_mul_overflow(tn, hd, &tn) || __builtin_mul_overflow(Hq, hd, &qsn) ||
      __builtin_mul_overflow(Hkv, hd, &kvsn) || qn > (uint64_t)MAX_VALUE || kn > (uint64_t)MAX_VALUE ||
      cn > (uint64_t)MAX_VALUE || qsn > (uint64_t)MAX_VALUE || kvsn > (uint64_t)MAX_VALUE) {
    return throw_range(env, "ropeKvWriteHeap: shape too large");
  }
  for (uint64_t b = 0; b < B; b++) {
    const double s = p[ROPE_KV_HEAD + b];
    if (s == -1) continue;
    if (!is_count(s, MAX_VALUE) || (uint64_t)s > C || T > C - (uint64_t)s) {
      return throw_range(env, "ropeKvWriteHeap: a slot must be -1 or an integer with slot + T <= C");
    }
  }
  span_t q, k, v, cs, sn, kc, vc, qo, sc[3] = {{0, 0}, {0, 0}, {0, 0}};
  const uint64_t per_head[3] = {qsn, kvsn, kvsn};
  int ok = span_ok(p[0], qn, size, &q) && span_ok(p[1], kn, size, &k) && span_ok(p[2], kn, size, &v) &&
           span_ok(p[3], tn, size, &cs) && span_ok(p[4], tn, size, &sn) && span_ok(p[5], cn, size, &kc) &&
           span_ok(p[6], cn, size, &vc) && span_ok(p[10], qn, size, &qo);
  for (int i = 0; i < 3 && ok; i++) {
    if (has_scale[i]) ok = span_ok(p[7 + i], (uint64_t)p[18 + i] * per_head[i], size, &sc[i]);
  }
  if (!ok) return throw_range(env, "ropeKvWriteHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  /* The caches are outputs (written in place): disjoint from every input, each other and q′. */
  const span_t in[8] = {q, k, v, cs, sn, sc[0], sc[1], sc[2]};
  const span_t out[3] = {qo, kc, vc};
  if (!disjoint(in, 8, out, 3)) {
    return throw_range(env, "ropeKvWriteHeap: q′ or a cache overlaps an input or another output");
  }
  if (qn == 0 && kn == 0) return NULL;
  int64_t *slots = (int64_t *)malloc((size_t)(B == 0 ? 1 : B) * sizeof(int64_t));
  if (slots == NULL) {
    napi_throw_error(env, "PARA_BLAS_NOMEM", "ropeKvWriteHeap: out of memory");
    return NULL;
  }
  for (uint64_t b = 0; b < B; b++) slots[b] = (int64_t)p[ROPE_KV_HEAD + b];
  const float *scale_ptr[3];
  for (int i = 0; i < 3; i++) scale_ptr[i] = has_scale[i] ? (const float *)(heap + sc[i].off) : NULL;
  const int64_t stride[3] = {
      has_scale[0] && p[18] != 1 ? (int64_t)qsn : 0,
      has_scale[1] && p[19] != 1 ? (int64_t)kvsn : 0,
      has_scale[2] && p[20] != 1 ? (int64_t)kvsn : 0,
  };
  rope_kv_t c = {.q = (const float *)(heap + q.off),
                 .k = (const float *)(heap + k.off),
                 .v = (const float *)(heap + v.off),
                 .cos = (const float *)(heap + cs.off),
                 .sin = (const float *)(heap + sn.off),
                 .qs = scale_ptr[0],
                 .ks = scale_ptr[1],
                 .vs = scale_ptr[2],
                 .qo = (float *)(heap + qo.off),
                 .kc = (float *)(heap + kc.off),
                 .vc = (float *)(heap + vc.off),
                 .slots = slots,
                 .hq = (int64_t)Hq,
                 .hkv = (int64_t)Hkv,
                 .t = (int64_t)T,
                 .hd = (int64_t)hd,
                 .cap = (int64_t)C,
                 .cos_batch_stride = cb == 1 ? 0 : (int64_t)(T * hd),
                 .qs_batch_stride = stride[0],
                 .ks_batch_stride = stride[1],
                 .vs_batch_stride = stride[2],
                 .q_rows = (int64_t)(B * Hq * T)};
  const int64_t rows = (int64_t)(B * Hq * T + B * Hkv * T);
  /* Work: q's elements, plus k's and v's (each k row also moves its v row). */
  parallel_for(hd == 0 ? 0 : rows, (int64_t)(qn + 2 * kn), rope_kv_rows, &c);
  free(slots);
  return NULL;
}


/*
 * attentionHeap(heap, [q, k, v, mask, out, B, Hq, Hkv, T, S, hd, maskBatch, scale])
 * attentionGradHeap(heap, [dy, q, k, v, mask, dq, dk, dv, B, Hq, Hkv, T, S, hd, maskBatch, scale])
 * mask: a byte offset, or -1 for none (maskBatch then ignored); maskBatch 1 or B.
 */
static napi_value attention_entry(napi_env env, napi_callback_info info, int grad) {
  const char *name = grad ? "attentionGradHeap" : "attentionHeap";
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, name, grad ? 16 : 13, &heap, &size, &p)) return NULL;
  const double *dm = p + (grad ? 8 : 5); /* B, Hq, Hkv, T, S, hd, maskBatch, scale */
  for (int i = 0; i < 7; i++) {
    if (!is_count(dm[i], MAX_VALUE)) return throw_range(env, "attentionHeap: B, Hq, Hkv, T, S, hd and maskBatch must be non-negative integers");
  }
  const uint64_t B = (uint64_t)dm[0], Hq = (uint64_t)dm[1], Hkv = (uint64_t)dm[2], T = (uint64_t)dm[3],
                 S = (uint64_t)dm[4], hd = (uint64_t)dm[5], mb = (uint64_t)dm[6];
  const double scale = dm[7];
  if (!isfinite(scale)) return throw_range(env, "attentionHeap: scale must be finite");
  if (Hkv == 0 || Hq % Hkv != 0) return throw_range(env, "attentionHeap: Hq must be a multiple of Hkv > 0");
  const int has_mask = (grad ? p[4] : p[3]) >= 0;
  if (has_mask && mb != 1 && mb != B) return throw_range(env, "attentionHeap: maskBatch must be 1 or B");
  uint64_t qn, kn, mn, work;
  if (__builtin_mul_overflow(B, Hq, &qn) || __builtin_mul_overflow(qn, T, &qn) || __builtin_mul_overflow(qn, hd, &qn) ||
      __builtin_mul_overflow(B, Hkv, &kn) || __builtin_mul_overflow(kn, S, &kn) || __builtin_mul_overflow(kn, hd, &kn) ||
      __builtin_mul_overflow(has_mask ? mb : 0, T, &mn) || __builtin_mul_overflow(mn, S, &mn) ||
      __builtin_mul_overflow(qn, S, &work) || qn > (uint64_t)MAX_VALUE || kn > (uint64_t)MAX_VALUE ||
      work > (uint64_t)MAX_VALUE) {
    return throw_range(env, "attentionHeap: shape too large");
  }
  span_t in[5] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}}, out[3] = {{0, 0}, {0, 0}, {0, 0}};
  int ok;
  if (grad) {
    ok = span_ok(p[0], qn, size, &in[0]) && span_ok(p[1], qn, size, &in[1]) && span_ok(p[2], kn, size, &in[2]) &&
         span_ok(p[3], kn, size, &in[3]) && (!has_mask || span_ok(p[4], mn, size, &in[4])) &&
         span_ok(p[5], qn, size, &out[0]) && span_ok(p[6], kn, size, &out[1]) && span_ok(p[7], kn, size, &out[2]);
  } else {
    ok = span_ok(p[0], qn, size, &in[0]) && span_ok(p[1], kn, size, &in[1]) && span_ok(p[2], kn, size, &in[2]) &&
         (!has_mask || span_ok(p[3], mn, size, &in[3])) && span_ok(p[4], qn, size, &out[0]);
  }
  if (!ok) return throw_range(env, "attentionHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  if (!disjoint(in, 5, out, grad ? 3 : 1)) return throw_range(env, "attentionHeap: an output overlaps an input or another output");
  att_t c;
  memset(&c, 0, sizeof c);
  c.hq = (int64_t)Hq;
  c.hkv = (int64_t)Hkv;
  c.t = (int64_t)T;
  c.s = (int64_t)S;
  c.hd = (int64_t)hd;
  c.mask_batch_stride = mb == 1 ? 0 : (int64_t)(T * S);
  c.scale = (float)scale;
  const int qi = grad ? 1 : 0;
  c.q = (const float *)(heap + in[qi].off);
  c.k = (const float *)(heap + in[qi + 1].off);
  c.v = (const float *)(heap + in[qi + 2].off);
  c.mask = has_mask ? (const float *)(heap + in[qi + 3].off) : NULL;
  if (grad) {
    c.dy = (const float *)(heap + in[0].off);
    c.dq = (float *)(heap + out[0].off);
    c.dk = (float *)(heap + out[1].off);
    c.dv = (float *)(heap + out[2].off);
    if (qn > 0) memset(c.dq, 0, (size_t)qn * sizeof(float));
    if (kn > 0) {
      memset(c.dk, 0, (size_t)kn * sizeof(float));
      memset(c.dv, 0, (size_t)kn * sizeof(float));
    }
    if (qn == 0 || S == 0) return NULL;
    c.blocks_per_group = ((int64_t)(Hq / Hkv * T) + ATT_R - 1) / ATT_R;
    if ((int64_t)(Hq / Hkv * T) >= ATT_TILE_MIN_ROWS)
      c.failed = !att_tile(&c, 1, (int64_t)B);
    else
      parallel_for((int64_t)(B * Hkv), (int64_t)work, att_backward_tasks, &c);
  } else {
    c.out = (float *)(heap + out[0].off);
    if (qn == 0) return NULL;
    if (S == 0) { /* softmax over no keys: the generic path's NaN */
      for (uint64_t i = 0; i < qn; i++) c.out[i] = NAN;
      return NULL;
    }
    c.blocks_per_group = ((int64_t)(Hq / Hkv * T) + ATT_R - 1) / ATT_R;
    if ((int64_t)(Hq / Hkv * T) >= ATT_TILE_MIN_ROWS)
      c.failed = !att_tile(&c, 0, (int64_t)B);
    else
      parallel_for((int64_t)B * (int64_t)Hkv * c.blocks_per_group, (int64_t)work, att_forward_blocks, &c);
  }
  if (c.failed) {
    napi_throw_error(env, "PARA_BLAS_NOMEM", "attentionHeap: out of memory");
    return NULL;
  }
  return NULL;
}

static napi_value AttentionHeap(napi_env env, napi_callback_info info) { return attention_entry(env, info, 0); }
static napi_value AttentionGradHeap(napi_env env, napi_callback_info info) { return attention_entry(env, info, 1); }


/*
 * crossEntropyHeap(heap, [logits, targets, weights, loss, lse, N, V])
 * crossEntropyGradHeap(heap, [dy, logits, targets, weights, lse, dlogits, N, V])
 * targets int32, everything else float32; loss and dy one element.
 */
static napi_value ce_entry(napi_env env, napi_callback_info info, int grad) {
  const char *name = grad ? "crossEntropyGradHeap" : "crossEntropyHeap";
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, name, grad ? 8 : 7, &heap, &size, &p)) return NULL;
  const double *dm = p + (grad ? 6 : 5);
  uint64_t total;
  if (!dims_ok(dm[0], dm[1], &total)) return throw_range(env, "crossEntropyHeap: N and V must be non-negative integers");
  const int64_t N = (int64_t)dm[0], V = (int64_t)dm[1];
  if (V < 1) return throw_range(env, "crossEntropyHeap: V must be at least 1");
  ce_t c;
  memset(&c, 0, sizeof c);
  c.v = V;
  if (grad) {
    span_t dy, x, t, w, lse, dx;
    if (!span_ok(p[0], 1, size, &dy) || !span_ok(p[1], total, size, &x) || !span_ok(p[2], (uint64_t)N, size, &t) ||
        !span_ok(p[3], (uint64_t)N, size, &w) || !span_ok(p[4], (uint64_t)N, size, &lse) ||
        !span_ok(p[5], total, size, &dx))
      return throw_range(env, "crossEntropyGradHeap: an operand lies outside the heap (or is not 4-byte aligned)");
    const span_t in[5] = {dy, x, t, w, lse};
    if (!disjoint(in, 5, &dx, 1)) return throw_range(env, "crossEntropyGradHeap: the output overlaps an input");
    c.dy = (const float *)(heap + dy.off);
    c.x = (const float *)(heap + x.off);
    c.t = (const int32_t *)(heap + t.off);
    c.w = (const float *)(heap + w.off);
    c.lse_in = (const float *)(heap + lse.off);
    c.dx = (float *)(heap + dx.off);
    parallel_for(N, (int64_t)total, ce_backward_rows, &c);
    return NULL;
  }
  span_t x, t, w, loss, lse;
  if (!span_ok(p[0], total, size, &x) || !span_ok(p[1], (uint64_t)N, size, &t) || !span_ok(p[2], (uint64_t)N, size, &w) ||
      !span_ok(p[3], 1, size, &loss) || !span_ok(p[4], (uint64_t)N, size, &lse))
    return throw_range(env, "crossEntropyHeap: an operand lies outside the heap (or is not 4-byte aligned)");
  const span_t in[3] = {x, t, w};
  const span_t out[2] = {loss, lse};
  if (!disjoint(in, 3, out, 2)) return throw_range(env, "crossEntropyHeap: an output overlaps an input or the other output");
  double part[MAX_THREADS];
  for (int i = 0; i < MAX_THREADS; i++) part[i] = 0;
  c.x = (const float *)(heap + x.off);
  c.t = (const int32_t *)(heap + t.off);
  c.w = (const float *)(heap + w.off);
  c.lse = (float *)(heap + lse.off);
  c.part = part;
  parallel_for(N, (int64_t)total, ce_forward_rows, &c);
  double s = 0;
  for (int i = 0; i < MAX_THREADS; i++) s += part[i];
  *(float *)(heap + loss.off) = (float)s;
  return NULL;
}

static napi_value CrossEntropyHeap(napi_env env, napi_callback_info info) { return ce_entry(env, info, 0); }
static napi_value CrossEntropyGradHeap(napi_env env, napi_callback_info info) { return ce_entry(env, info, 1); }

/* Whether any output span overlaps any other span (sort by offset, one sweep). */
typedef struct {
  uint64_t off, end;
  int out;
} tagged_span_t;

static int tagged_cmp(const void *a, const void *b) {
  const uint64_t x = ((const tagged_span_t *)a)->off, y = ((const tagged_span_t *)b)->off;
  return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * In sorted order a pair (a before b) overlaps iff b.off < a.end; b an output: caught against the
 * largest end so far; a an output: against the largest output end so far.
 */
static int outputs_overlap(tagged_span_t *s, int64_t n) {
  qsort(s, (size_t)n, sizeof *s, tagged_cmp);
  uint64_t max_end = 0, max_out_end = 0;
  for (int64_t i = 0; i < n; i++) {
    if (s[i].end == s[i].off) continue; /* empty */
    if ((s[i].out && s[i].off < max_end) || s[i].off < max_out_end) return 1;
    if (s[i].end > max_end) max_end = s[i].end;
    if (s[i].out && s[i].end > max_out_end) max_out_end = s[i].end;
  }
  return 0;
}

/*
 * adamWHeap(heap, [count, lr, beta1, 1 − beta1, beta2, 1 − beta2, bc1, bc2, eps, gradScale,
 *                  then per parameter: p, m, v, g, p′, m′, v′, n, keep])
 * byte offsets of float32 operands of n elements each; outputs overlap nothing.
 */
#define ADAMW_HEAD 10
#define ADAMW_PER 9
static napi_value AdamWHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size;
  const double *p;
  if (!heap_args(env, info, "adamWHeap(heap, params)", ADAMW_HEAD, &heap, &size, &p)) return NULL;
  if (!is_count(p[0], 1 << 24) || p[0] < 1) return throw_range(env, "adamWHeap: count must be an integer in [1, 2^24]");
  const int64_t count = (int64_t)p[0];
  /* the params array's length, for the per-parameter entries */
  size_t argc = 2;
  napi_value argv[2];
  napi_typedarray_type type;
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &type, &len, NULL, NULL, NULL) != napi_ok)
    return throw_type(env, "adamWHeap: cannot read params");
  if (len < (size_t)(ADAMW_HEAD + ADAMW_PER * count)) return throw_type(env, "adamWHeap: params too short for count");
  for (int i = 1; i < ADAMW_HEAD; i++) {
    if (!isfinite(p[i])) return throw_range(env, "adamWHeap: lr, betas, bias corrections, eps and gradScale must be finite");
  }
  if (!(p[6] > 0) || !(p[7] > 0)) return throw_range(env, "adamWHeap: the bias corrections must be > 0");
  adamw_seg_t *seg = (adamw_seg_t *)malloc((size_t)count * sizeof *seg);
  int64_t *start = (int64_t *)malloc((size_t)(count + 1) * sizeof *start);
  tagged_span_t *spans = (tagged_span_t *)malloc((size_t)count * 7 * sizeof *spans);
  if (seg == NULL || start == NULL || spans == NULL) {
    free(seg);
    free(start);
    free(spans);
    napi_throw_error(env, "PARA_BLAS_NOMEM", "adamWHeap: out of memory");
    return NULL;
  }
  const char *bad = NULL;
  uint64_t total = 0;
  for (int64_t k = 0; k < count && bad == NULL; k++) {
    const double *q = p + ADAMW_HEAD + ADAMW_PER * k;
    if (!is_count(q[7], MAX_VALUE)) {
      bad = "adamWHeap: a parameter's size must be a non-negative integer";
      break;
    }
    if (!isfinite(q[8])) {
      bad = "adamWHeap: a parameter's keep factor must be finite";
      break;
    }
    const uint64_t n = (uint64_t)q[7];
    span_t sp[7];
    for (int i = 0; i < 7; i++) {
      if (!span_ok(q[i], n, size, &sp[i])) {
        bad = "adamWHeap: an operand lies outside the heap (or is not 4-byte aligned)";
        break;
      }
      spans[k * 7 + i] = (tagged_span_t){sp[i].off, sp[i].off + sp[i].bytes, i >= 4};
    }
    if (bad != NULL) break;
    start[k] = (int64_t)total;
    total += n;
    if (total > (uint64_t)MAX_VALUE) {
      bad = "adamWHeap: too many elements";
      break;
    }
    seg[k] = (adamw_seg_t){(const float *)(heap + sp[0].off), (const float *)(heap + sp[1].off),
                           (const float *)(heap + sp[2].off), (const float *)(heap + sp[3].off),
                           (float *)(heap + sp[4].off),       (float *)(heap + sp[5].off),
                           (float *)(heap + sp[6].off),       (int64_t)n,
                           (float)q[8]};
  }
  if (bad == NULL && outputs_overlap(spans, count * 7)) bad = "adamWHeap: an output overlaps an input or another output";
  free(spans);
  if (bad != NULL) {
    free(seg);
    free(start);
    return throw_range(env, bad);
  }
  start[count] = (int64_t)total;
  adamw_t c = {seg, start, count, (float)p[1], (float)p[2], (float)p[3], (float)p[4], (float)p[5],
               (float)p[6], (float)p[7], (float)p[8], (float)p[9]};
  parallel_for((int64_t)total, (int64_t)total, adamw_range, &c);
  free(seg);
  free(start);
  return NULL;
}

/* params: [out, count, then per tensor: offset, elements]; out (one float) = Σ x². */
static napi_value SumSquaresHeap(napi_env env, napi_callback_info info) {
  uint8_t *heap;
  size_t size, len;
  const double *p;
  if (!heap_args_len(env, info, "sumSquaresHeap(heap, params)", 2, &heap, &size, &p, &len)) return NULL;
  if (!is_count(p[1], 1 << 24)) return throw_range(env, "sumSquaresHeap: count must be an integer in [0, 2^24]");
  const int64_t count = (int64_t)p[1];
  if (len < (size_t)(2 + 2 * count)) return throw_type(env, "sumSquaresHeap: params too short for count");
  span_t out;
  if (!span_ok(p[0], 1, size, &out)) return throw_range(env, "sumSquaresHeap: the output lies outside the heap (or is not 4-byte aligned)");
  const float **x = (const float **)malloc((size_t)(count > 0 ? count : 1) * sizeof *x);
  int64_t *start = (int64_t *)malloc((size_t)(count + 1) * sizeof *start);
  if (x == NULL || start == NULL) {
    free(x);
    free(start);
    napi_throw_error(env, "PARA_BLAS_NOMEM", "sumSquaresHeap: out of memory");
    return NULL;
  }
  const char *bad = NULL;
  uint64_t total = 0;
  for (int64_t k = 0; k < count; k++) {
    span_t in;
    if (!is_count(p[3 + 2 * k], MAX_VALUE) || !span_ok(p[2 + 2 * k], (uint64_t)p[3 + 2 * k], size, &in)) {
      bad = "sumSquaresHeap: an input lies outside the heap (or is not 4-byte aligned, or its size is not a count)";
      break;
    }
    if (overlap(in, out)) {
      bad = "sumSquaresHeap: the output overlaps an input";
      break;
    }
    x[k] = (const float *)(heap + in.off);
    start[k] = (int64_t)total;
    total += (uint64_t)p[3 + 2 * k];
    if (total > (uint64_t)MAX_VALUE) {
      bad = "sumSquaresHeap: too many elements";
      break;
    }
  }
  if (bad != NULL) {
    free(x);
    free(start);
    return throw_range(env, bad);
  }
  start[count] = (int64_t)total;
  sumsq_t c;
  memset(&c, 0, sizeof c);
  c.x = x;
  c.start = start;
  c.count = count;
  if (total > 0) parallel_for((int64_t)total, (int64_t)total, sumsq_range, &c);
  double sum = 0;
  for (int t = 0; t < MAX_THREADS; t++) sum += c.part[t];
  *(float *)(heap + out.off) = (float)sum;
  free(x);
  free(start);
  return NULL;
}

static napi_value FusedInfo(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, v;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_int32(env, pool_threads(), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "threads", v));
  NAPI_CALL(env, napi_create_int32(env, PARALLEL_MIN_ELEMENTS, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "parallelMinElements", v));
  tile_gemm_get();
  NAPI_CALL(env, napi_create_string_utf8(env, tile_isa_name, NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "attentionIsa", v));
  NAPI_CALL(env, napi_create_string_utf8(env, para_matmul_path(), NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "matmul", v));
  return obj;
}

/* Adds the fused kernels to the addon's exports (called from para_blas.c's Init). */
napi_status para_fused_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"rmsNormHeap", NULL, RmsNormHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rmsNormGradHeap", NULL, RmsNormGradHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addRmsNormHeap", NULL, AddRmsNormHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addRmsNormGradHeap", NULL, AddRmsNormGradHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"swigluHeap", NULL, SwigluHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"swigluGradHeap", NULL, SwigluGradHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ropeHeap", NULL, RopeHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"swigluScaledHeap", NULL, SwigluScaledHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ropeKvWriteHeap", NULL, RopeKvWriteHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scaleHeap", NULL, ScaleHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scaleGradHeap", NULL, ScaleGradHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attentionHeap", NULL, AttentionHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attentionGradHeap", NULL, AttentionGradHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crossEntropyHeap", NULL, CrossEntropyHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crossEntropyGradHeap", NULL, CrossEntropyGradHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"adamWHeap", NULL, AdamWHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sumSquaresHeap", NULL, SumSquaresHeap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fusedInfo", NULL, FusedInfo, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
