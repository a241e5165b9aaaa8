/*
 * @para/blas: float32 matrix products for TensorFlow.js's wasm backend, through OpenBLAS's CBLAS.
 *
 * Plain Node-API C (ABI-stable: one binary serves every Node version with N-API 8+).
 *
 *   info()                                  -> { config, corename, threads, napiVersion }
 *   sgemm(a, b, c, m, n, k, transA, transB) -> undefined   (Float32Arrays, row-major, the ceiling)
 *   matmulHeap(heap, params)                -> undefined   (computes on an ArrayBuffer, in place)
 *   rmsNormHeap, rmsNormGradHeap, swigluHeap, swigluGradHeap, ropeHeap, fusedInfo
 *                                           (fused kernels on the heap: para_fused.c)
 *
 * matmulHeap reads A and B and writes C directly inside `heap` (the wasm backend's linear
 * memory), at byte offsets given in `params`, a Float64Array laid out as PARAM_* below.
 * Every offset, length and stride is checked against heap.byteLength before anything is read or
 * written; a violation throws a RangeError/TypeError and touches nothing.
 *
 * C[b] = act(op(A[b]) . op(B[b]) + bias) for every flat batch index b of the output, with
 *   - per-operand batch strides over a multi-dimensional batch shape (stride 0 = broadcast),
 *   - [B,T,K] x [K,N] (A contiguous and untransposed, B broadcast) folded into one GEMM,
 *   - cblas_sgemv when M or N is 1 (OpenBLAS's M = 1 sgemm is several times slower),
 *   - an epilogue: bias and PReLU weights addressed by (batch, row, col) strides, and the
 *     activations of tfjs's _FusedMatMul (linear, relu, relu6, prelu, leakyrelu, sigmoid, elu).
 */
#include <cblas.h>
#include <math.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The fused kernels (para_fused.c) add their functions to the exports. */
napi_status para_fused_init(napi_env env, napi_value exports);

/* Products on the tile kernel where it is chosen (para_fused.c); 0 = run OpenBLAS. */
int para_tile_matmul(const float *a, const float *b, float *c, int64_t m, int64_t n, int64_t k, int ta, int tb);

/* OpenBLAS extensions (declared here too, so a generic cblas.h still compiles). */
char *openblas_get_config(void);
char *openblas_get_corename(void);
int openblas_get_num_threads(void);

/* Layout of matmulHeap's Float64Array parameter block. */
enum {
  PARAM_A_OFF = 0,   /* byte offset of A in the heap */
  PARAM_B_OFF,       /* byte offset of B */
  PARAM_C_OFF,       /* byte offset of C (contiguous [batch..., M, N]) */
  PARAM_M,
  PARAM_N,
  PARAM_K,
  PARAM_TRANS_A,     /* 0/1: A is stored [K, M] */
  PARAM_TRANS_B,     /* 0/1: B is stored [N, K] */
  PARAM_NB,          /* number of batch dimensions, 0..MAX_BATCH_DIMS */
  PARAM_ACT,         /* activation, ACT_* (tfjs's FusableActivation numbering) */
  PARAM_ALPHA,       /* leakyrelu slope */
  PARAM_BIAS_OFF,    /* byte offset of the bias, or -1 for none */
  PARAM_BIAS_LEN,    /* bias length in elements */
  PARAM_BIAS_SB,     /* bias element strides over (flat batch, row, col); 0 = broadcast */
  PARAM_BIAS_SR,
  PARAM_BIAS_SC,
  PARAM_PRELU_OFF,   /* byte offset of the PReLU weights, or -1 for none */
  PARAM_PRELU_LEN,
  PARAM_PRELU_SB,
  PARAM_PRELU_SR,
  PARAM_PRELU_SC,
  PARAM_FIXED        /* then batchShape[NB], aBatchStrides[NB], bBatchStrides[NB] (elements) */
};

enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_RELU6 = 2, ACT_PRELU = 3, ACT_LEAKYRELU = 4, ACT_SIGMOID = 5, ACT_ELU = 6 };

#define MAX_BATCH_DIMS 8
/* Values above this are rejected outright (wasm32 heaps are < 4 GiB; this keeps sums exact). */
#define MAX_VALUE ((double)(1ULL << 50))
#define MAX_DIM 2147483647.0 /* CBLAS takes int dimensions */

typedef struct {
  const float *a;
  const float *b;
  float *c;
  int64_t m, n, k;
  int trans_a, trans_b;
  int nb;
  int64_t batch_shape[MAX_BATCH_DIMS];
  int64_t a_stride[MAX_BATCH_DIMS];
  int64_t b_stride[MAX_BATCH_DIMS];
  int act;
  float alpha;
  const float *bias;
  int64_t bias_sb, bias_sr, bias_sc;
  const float *prelu;
  int64_t prelu_sb, prelu_sr, prelu_sc;
} matmul_t;

/* ---------- error helpers ---------- */

#define NAPI_CALL(env, call)                                              \
  do {                                                                    \
    if ((call) != napi_ok) {                                              \
      const napi_extended_error_info *info_ = NULL;                       \
      napi_get_last_error_info((env), &info_);                            \
      bool pending_ = false;                                              \
      napi_is_exception_pending((env), &pending_);                        \
      if (!pending_) {                                                    \
        napi_throw_error((env), "PARA_BLAS_NAPI",                         \
                         info_ && info_->error_message ? info_->error_message \
                                                       : "N-API call failed"); \
      }                                                                   \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "PARA_BLAS_BOUNDS", msg);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "PARA_BLAS_ARGS", msg);
  return NULL;
}

/* A non-negative integer no larger than `max`. */
static int is_count(double v, double max) { return v >= 0 && v <= max && v == floor(v); }

/* Checked uint64 arithmetic. */
static int mul_ok(uint64_t x, uint64_t y, uint64_t *out) { return !__builtin_mul_overflow(x, y, out); }
static int add_ok(uint64_t x, uint64_t y, uint64_t *out) { return !__builtin_add_overflow(x, y, out); }

/* ---------- compute ---------- */

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Bias and activation over one [M, N] block of the output, flat batch index `bi`. */
static void epilogue(const matmul_t *p, float *c, int64_t bi) {
  const int64_t m = p->m, n = p->n;
  for (int64_t i = 0; i < m; i++) {
    float *row = c + i * n;
    if (p->bias) {
      const float *bias = p->bias + bi * p->bias_sb + i * p->bias_sr;
      const int64_t sc = p->bias_sc;
      if (sc == 1) {
        for (int64_t j = 0; j < n; j++) row[j] += bias[j];
      } else {
        for (int64_t j = 0; j < n; j++) row[j] += bias[j * sc];
      }
    }
    switch (p->act) {
      case ACT_RELU:
        for (int64_t j = 0; j < n; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];
        break;
      case ACT_RELU6:
        for (int64_t j = 0; j < n; j++) {
          float v = row[j] < 0.0f ? 0.0f : row[j];
          row[j] = v > 6.0f ? 6.0f : v;
        }
        break;
      case ACT_PRELU: {
        const float *w = p->prelu + bi * p->prelu_sb + i * p->prelu_sr;
        const int64_t sc = p->prelu_sc;
        for (int64_t j = 0; j < n; j++) row[j] = row[j] < 0.0f ? w[j * sc] * row[j] : row[j];
        break;
      }
      case ACT_LEAKYRELU: {
        const float alpha = p->alpha;
        for (int64_t j = 0; j < n; j++) row[j] = row[j] < 0.0f ? alpha * row[j] : row[j];
        break;
      }
      case ACT_SIGMOID:
        for (int64_t j = 0; j < n; j++) row[j] = sigmoidf(row[j]);
        break;
      case ACT_ELU:
        for (int64_t j = 0; j < n; j++) row[j] = row[j] >= 0.0f ? row[j] : expm1f(row[j]);
        break;
      default:
        break;
    }
  }
}

/* One product C[m,n] = op(A) . op(B); m, n, k >= 1. */
static void gemm_one(const float *a, const float *b, float *c, int m, int n, int k, int ta, int tb) {
  const int lda = ta ? m : k; /* A stored [K, M] when transposed, else [M, K] */
  const int ldb = tb ? k : n; /* B stored [N, K] when transposed, else [K, N] */
  if (n == 1) {
    /* c[m] = op(A)[m,k] . b[k]; b is contiguous whether stored [K,1] or [1,K]. */
    if (ta) {
      cblas_sgemv(CblasRowMajor, CblasTrans, k, m, 1.0f, a, lda, b, 1, 0.0f, c, 1);
    } else {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1.0f, a, lda, b, 1, 0.0f, c, 1);
    }
  } else if (m == 1) {
    /* c[n] = a[k] . op(B)[k,n] = op(B)^T a; a is contiguous whether stored [1,K] or [K,1]. */
    if (tb) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, b, ldb, a, 1, 0.0f, c, 1);
    } else {
      cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1.0f, b, ldb, a, 1, 0.0f, c, 1);
    }
  } else if (!para_tile_matmul(a, b, c, m, n, k, ta, tb)) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
                1.0f, a, lda, b, ldb, 0.0f, c, n);
  }
}

static int64_t batch_count(const matmul_t *p) {
  int64_t count = 1;
  for (int d = 0; d < p->nb; d++) count *= p->batch_shape[d];
  return count;
}

/* True when `stride` addresses a contiguous row-major [batch..., block] array (size-1 dims ignored). */
static int batch_contiguous(const matmul_t *p, const int64_t *stride, int64_t block) {
  int64_t expect = block;
  for (int d = p->nb - 1; d >= 0; d--) {
    if (p->batch_shape[d] == 1) continue;
    if (stride[d] != expect) return 0;
    expect *= p->batch_shape[d];
  }
  return 1;
}

static int batch_broadcast(const matmul_t *p, const int64_t *stride) {
  for (int d = 0; d < p->nb; d++) {
    if (p->batch_shape[d] != 1 && stride[d] != 0) return 0;
  }
  return 1;
}

static void run_matmul(const matmul_t *p) {
  const int64_t batches = batch_count(p);
  const int64_t m = p->m, n = p->n, k = p->k;
  if (batches == 0 || m == 0 || n == 0) return;
  const int64_t block = m * n;

  if (k == 0) {
    memset(p->c, 0, (size_t)(batches * block) * sizeof(float));
  } else if (!p->trans_a && batches > 1 && batch_contiguous(p, p->a_stride, m * k) &&
             batch_broadcast(p, p->b_stride) && batches * m <= (int64_t)MAX_DIM) {
    /* [B,T,K] x [K,N]: one GEMM with B*T rows. */
    gemm_one(p->a, p->b, p->c, (int)(batches * m), (int)n, (int)k, 0, p->trans_b);
  } else {
    int64_t idx[MAX_BATCH_DIMS] = {0};
    int64_t a_off = 0, b_off = 0;
    for (int64_t bi = 0; bi < batches; bi++) {
      gemm_one(p->a + a_off, p->b + b_off, p->c + bi * block, (int)m, (int)n, (int)k, p->trans_a, p->trans_b);
      /* advance the batch odometer */
      for (int d = p->nb - 1; d >= 0; d--) {
        idx[d]++;
        a_off += p->a_stride[d];
        b_off += p->b_stride[d];
        if (idx[d] < p->batch_shape[d]) break;
        a_off -= idx[d] * p->a_stride[d];
        b_off -= idx[d] * p->b_stride[d];
        idx[d] = 0;
      }
    }
  }

  if (p->bias || p->act != ACT_LINEAR) {
    for (int64_t bi = 0; bi < batches; bi++) epilogue(p, p->c + bi * block, bi);
  }
}

/* ---------- argument checking ---------- */

/* Largest element index (exclusive) an operand of `rows` x `cols` per batch touches, plus batch strides. */
static int operand_extent(const matmul_t *p, const int64_t *stride, uint64_t rows, uint64_t cols,
                          uint64_t *extent) {
  uint64_t total;
  if (!mul_ok(rows, cols, &total)) return 0;
  for (int d = 0; d < p->nb; d++) {
    uint64_t span;
    if (!mul_ok((uint64_t)(p->batch_shape[d] - 1), (uint64_t)stride[d], &span)) return 0;
    if (!add_ok(total, span, &total)) return 0;
  }
  *extent = total;
  return 1;
}

/* Checks that [off, off + elements*4) lies inside a heap of `size` bytes; off is 4-aligned. */
static int range_ok(uint64_t off, uint64_t elements, uint64_t size) {
  uint64_t bytes, end;
  if (off % 4 != 0) return 0;
  if (!mul_ok(elements, 4, &bytes) || !add_ok(off, bytes, &end)) return 0;
  return end <= size;
}

static int overlaps(uint64_t a0, uint64_t alen, uint64_t b0, uint64_t blen) {
  if (alen == 0 || blen == 0) return 0;
  return a0 < b0 + blen && b0 < a0 + alen;
}

/* Reads and validates an epilogue operand (bias or PReLU weights). */
static const char *epilogue_operand(const double *prm, int off_i, const matmul_t *p, uint8_t *heap, size_t size,
                                    uint64_t batches, const float **ptr, int64_t *sb, int64_t *sr, int64_t *sc,
                                    uint64_t *start, uint64_t *len_bytes) {
  *ptr = NULL;
  *start = 0;
  *len_bytes = 0;
  if (prm[off_i] == -1) return NULL;
  for (int i = 0; i < 5; i++) {
    if (!is_count(prm[off_i + i], MAX_VALUE)) return "epilogue operand: offsets, lengths and strides must be non-negative integers";
  }
  const uint64_t off = (uint64_t)prm[off_i], len = (uint64_t)prm[off_i + 1];
  *sb = (int64_t)prm[off_i + 2];
  *sr = (int64_t)prm[off_i + 3];
  *sc = (int64_t)prm[off_i + 4];
  /* highest element index touched: sb*(B-1) + sr*(M-1) + sc*(N-1) */
  uint64_t hi = 0, t;
  if (!mul_ok((uint64_t)*sb, batches - 1, &t) || !add_ok(hi, t, &hi)) return "epilogue operand: stride overflow";
  if (!mul_ok((uint64_t)*sr, (uint64_t)(p->m - 1), &t) || !add_ok(hi, t, &hi)) return "epilogue operand: stride overflow";
  if (!mul_ok((uint64_t)*sc, (uint64_t)(p->n - 1), &t) || !add_ok(hi, t, &hi)) return "epilogue operand: stride overflow";
  if (hi >= len) return "epilogue operand: strides address elements past its length";
  if (!range_ok(off, len, size)) return "epilogue operand: offset/length outside the heap (or offset not 4-byte aligned)";
  *ptr = (const float *)(heap + off);
  *start = off;
  *len_bytes = len * 4;
  return NULL;
}

/* matmulHeap(heap: ArrayBuffer, params: Float64Array): void */
static napi_value MatmulHeap(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return throw_type(env, "matmulHeap(heap, params): two arguments expected");

  bool is_ab = false;
  NAPI_CALL(env, napi_is_arraybuffer(env, argv[0], &is_ab));
  if (!is_ab) return throw_type(env, "matmulHeap: heap must be an ArrayBuffer");
  void *heap_data = NULL;
  size_t heap_size = 0;
  NAPI_CALL(env, napi_get_arraybuffer_info(env, argv[0], &heap_data, &heap_size));

  bool is_ta = false;
  NAPI_CALL(env, napi_is_typedarray(env, argv[1], &is_ta));
  if (!is_ta) return throw_type(env, "matmulHeap: params must be a Float64Array");
  napi_typedarray_type ta_type;
  size_t nparams = 0;
  void *pdata = NULL;
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[1], &ta_type, &nparams, &pdata, NULL, NULL));
  if (ta_type != napi_float64_array) return throw_type(env, "matmulHeap: params must be a Float64Array");
  if (nparams < PARAM_FIXED) return throw_type(env, "matmulHeap: params too short");
  const double *prm = (const double *)pdata;

  if (!is_count(prm[PARAM_NB], MAX_BATCH_DIMS)) return throw_range(env, "matmulHeap: too many batch dimensions");
  const int nb = (int)prm[PARAM_NB];
  if (nparams < (size_t)(PARAM_FIXED + 3 * nb)) return throw_type(env, "matmulHeap: params too short for its batch dims");

  for (int i = PARAM_A_OFF; i <= PARAM_C_OFF; i++) {
    if (!is_count(prm[i], MAX_VALUE)) return throw_range(env, "matmulHeap: offsets must be non-negative integers");
  }
  for (int i = PARAM_M; i <= PARAM_K; i++) {
    if (!is_count(prm[i], MAX_DIM)) return throw_range(env, "matmulHeap: M, N, K must be integers in [0, 2^31)");
  }

  matmul_t p;
  memset(&p, 0, sizeof p);
  p.m = (int64_t)prm[PARAM_M];
  p.n = (int64_t)prm[PARAM_N];
  p.k = (int64_t)prm[PARAM_K];
  p.trans_a = prm[PARAM_TRANS_A] != 0;
  p.trans_b = prm[PARAM_TRANS_B] != 0;
  p.nb = nb;
  uint64_t batches = 1;
  for (int d = 0; d < nb; d++) {
    const double s = prm[PARAM_FIXED + d], sa = prm[PARAM_FIXED + nb + d], sb = prm[PARAM_FIXED + 2 * nb + d];
    if (!is_count(s, MAX_DIM)) return throw_range(env, "matmulHeap: batch dims must be integers in [0, 2^31)");
    if (!is_count(sa, MAX_VALUE) || !is_count(sb, MAX_VALUE)) return throw_range(env, "matmulHeap: batch strides must be non-negative integers");
    p.batch_shape[d] = (int64_t)s;
    p.a_stride[d] = (int64_t)sa;
    p.b_stride[d] = (int64_t)sb;
    if (!mul_ok(batches, (uint64_t)s, &batches)) return throw_range(env, "matmulHeap: batch too large");
  }
  const double act = prm[PARAM_ACT];
  if (!is_count(act, ACT_ELU)) return throw_range(env, "matmulHeap: unknown activation");
  p.act = (int)act;
  p.alpha = (float)prm[PARAM_ALPHA];

  uint64_t out_elems;
  if (!mul_ok(batches, (uint64_t)p.m, &out_elems) || !mul_ok(out_elems, (uint64_t)p.n, &out_elems)) {
    return throw_range(env, "matmulHeap: output too large");
  }
  if (out_elems == 0) return NULL; /* nothing is read or written */

  uint8_t *heap = (uint8_t *)heap_data;
  const uint64_t a_off = (uint64_t)prm[PARAM_A_OFF], b_off = (uint64_t)prm[PARAM_B_OFF], c_off = (uint64_t)prm[PARAM_C_OFF];
  if (!range_ok(c_off, out_elems, heap_size)) return throw_range(env, "matmulHeap: output outside the heap (or not 4-byte aligned)");
  uint64_t a_ext = 0, b_ext = 0;
  if (p.k > 0) {
    if (!operand_extent(&p, p.a_stride, (uint64_t)p.m, (uint64_t)p.k, &a_ext) || !range_ok(a_off, a_ext, heap_size)) {
      return throw_range(env, "matmulHeap: A outside the heap (or not 4-byte aligned)");
    }
    if (!operand_extent(&p, p.b_stride, (uint64_t)p.k, (uint64_t)p.n, &b_ext) || !range_ok(b_off, b_ext, heap_size)) {
      return throw_range(env, "matmulHeap: B outside the heap (or not 4-byte aligned)");
    }
  }
  p.a = (const float *)(heap + a_off);
  p.b = (const float *)(heap + b_off);
  p.c = (float *)(heap + c_off);

  uint64_t bias_start, bias_bytes, prelu_start, prelu_bytes;
  const char *err = epilogue_operand(prm, PARAM_BIAS_OFF, &p, heap, heap_size, batches, &p.bias, &p.bias_sb,
                                     &p.bias_sr, &p.bias_sc, &bias_start, &bias_bytes);
  if (err) return throw_range(env, err);
  err = epilogue_operand(prm, PARAM_PRELU_OFF, &p, heap, heap_size, batches, &p.prelu, &p.prelu_sb, &p.prelu_sr,
                         &p.prelu_sc, &prelu_start, &prelu_bytes);
  if (err) return throw_range(env, err);
  if (p.act == ACT_PRELU && p.prelu == NULL) return throw_type(env, "matmulHeap: prelu activation needs weights");

  /* The output must not alias an input (reads would see partial results). */
  const uint64_t c_bytes = out_elems * 4;
  if (overlaps(c_off, c_bytes, a_off, a_ext * 4) || overlaps(c_off, c_bytes, b_off, b_ext * 4) ||
      overlaps(c_off, c_bytes, bias_start, bias_bytes) || overlaps(c_off, c_bytes, prelu_start, prelu_bytes)) {
    return throw_range(env, "matmulHeap: output overlaps an input");
  }

  run_matmul(&p);
  return NULL;
}

/* Float32Array data and length. */
static int get_f32(napi_env env, napi_value v, float **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  void *ptr = NULL;
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, NULL, NULL) != napi_ok) return 0;
  if (type != napi_float32_array) return 0;
  *data = (float *)ptr;
  return 1;
}

/* sgemm(a, b, c, m, n, k, transA, transB): C[m,n] = op(A) . op(B), plain cblas_sgemm. */
static napi_value Sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) return throw_type(env, "sgemm(a, b, c, m, n, k, transA?, transB?)");
  float *a, *b, *c;
  size_t alen, blen, clen;
  if (!get_f32(env, argv[0], &a, &alen) || !get_f32(env, argv[1], &b, &blen) || !get_f32(env, argv[2], &c, &clen)) {
    return throw_type(env, "sgemm: a, b and c must be Float32Arrays");
  }
  double dims[3];
  for (int i = 0; i < 3; i++) {
    NAPI_CALL(env, napi_coerce_to_number(env, argv[3 + i], &argv[3 + i]));
    NAPI_CALL(env, napi_get_value_double(env, argv[3 + i], &dims[i]));
    if (!is_count(dims[i], MAX_DIM)) return throw_range(env, "sgemm: m, n, k must be integers in [0, 2^31)");
  }
  bool ta = false, tb = false;
  if (argc > 6) {
    napi_value v;
    NAPI_CALL(env, napi_coerce_to_bool(env, argv[6], &v));
    NAPI_CALL(env, napi_get_value_bool(env, v, &ta));
  }
  if (argc > 7) {
    napi_value v;
    NAPI_CALL(env, napi_coerce_to_bool(env, argv[7], &v));
    NAPI_CALL(env, napi_get_value_bool(env, v, &tb));
  }
  const uint64_t m = (uint64_t)dims[0], n = (uint64_t)dims[1], k = (uint64_t)dims[2];
  if (m * k > alen || k * n > blen || m * n > clen) return throw_range(env, "sgemm: arrays shorter than m*k, k*n, m*n");
  if (m == 0 || n == 0) return NULL;
  if (k == 0) {
    memset(c, 0, (size_t)(m * n) * sizeof(float));
    return NULL;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0f, a, ta ? (int)m : (int)k, b, tb ? (int)k : (int)n, 0.0f, c, (int)n);
  return NULL;
}

static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, v;
  NAPI_CALL(env, napi_create_object(env, &obj));
  const char *config = openblas_get_config();
  NAPI_CALL(env, napi_create_string_utf8(env, config ? config : "", NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "config", v));
  const char *core = openblas_get_corename();
  NAPI_CALL(env, napi_create_string_utf8(env, core ? core : "", NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "corename", v));
  NAPI_CALL(env, napi_create_int32(env, openblas_get_num_threads(), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "threads", v));
  NAPI_CALL(env, napi_create_int32(env, NAPI_VERSION, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "napiVersion", v));
  return obj;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"info", NULL, Info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgemm", NULL, Sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"matmulHeap", NULL, MatmulHeap, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  NAPI_CALL(env, para_fused_init(env, exports));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
