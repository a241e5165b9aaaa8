/*
 * One register-blocked small matrix product, the building block of fused attention's tile path
 * (para_fused.c). Included once per instruction set, with
 *   TILE_NAME  the function's name        TILE_VW  floats in one vector
 *   TILE_NV    vectors across a tile      TILE_ATTR the function's target attributes
 * it defines
 *
 *   TILE_NAME(M, N, K, L, lsm, lsk, R, rs, r_padded, C, cs, accumulate):
 *     C[m·cs + n] (= or +=) Σ_k L[m·lsm + k·lsk] · R[k·rs + n]     for m < M, n < N, k < K
 *
 * L is read one element at a time (any strides: a row-major matrix, or a transposed one), R one
 * row of vectors at a time. A tile is TILE_MR rows × TILE_NV vectors of accumulators, kept in
 * registers over the whole K loop (4 × 4 × 16 floats on AVX-512: 16 of its 32 registers). With
 * r_padded, every row of R may be read up to N rounded up to TILE_VW (the last vector's extra
 * columns are computed and not stored); without it, columns past the last whole vector take a
 * scalar loop. Hand-written because no BLAS has a call for "many products of 64 × 64 … 256 on one
 * thread each": OpenBLAS's sgemm wakes its threads for every one of them (para_fused.c, the tile
 * path's comment). GCC's vector extensions, so one source serves every instruction set; products
 * may be fused multiply-adds (TILE_ATTR), so results differ from sgemm's in the last bits.
 */
#define TILE_PASTE2(a, b) a##b
#define TILE_PASTE(a, b) TILE_PASTE2(a, b)
#define TILE_V TILE_PASTE(TILE_NAME, _v)
#define TILE_FN(x) TILE_PASTE(TILE_NAME, x)

typedef float TILE_V __attribute__((vector_size(TILE_VW * sizeof(float))));

TILE_ATTR static ALWAYS_INLINE TILE_V TILE_FN(_load)(const float *p) {
  TILE_V v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* One tile: MRc rows, NVc vectors, the last vector's first `last` columns stored. */
TILE_ATTR static ALWAYS_INLINE void TILE_FN(_tile)(int64_t K, const float *restrict L, int64_t lsm, int64_t lsk,
                                                   const float *restrict R, int64_t rs, float *restrict C, int64_t cs,
                                                   int accumulate, int last, const int MRc, const int NVc) {
  TILE_V acc[TILE_MR][TILE_NV];
  for (int i = 0; i < MRc; i++)
    for (int j = 0; j < NVc; j++) acc[i][j] = (TILE_V){0};
  for (int64_t k = 0; k < K; k++) {
    const float *r = R + k * rs;
    TILE_V b[TILE_NV];
    for (int j = 0; j < NVc; j++) b[j] = TILE_FN(_load)(r + j * TILE_VW);
    const float *l = L + k * lsk;
    for (int i = 0; i < MRc; i++) {
      const float a = l[i * lsm];
      for (int j = 0; j < NVc; j++) acc[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < MRc; i++) {
    float *c = C + i * cs;
    for (int j = 0; j < NVc; j++) {
      const int n = j == NVc - 1 ? last : TILE_VW;
      float *cj = c + j * TILE_VW;
      if (n == TILE_VW) {
        TILE_V v = acc[i][j];
        if (accumulate) v += TILE_FN(_load)(cj);
        memcpy(cj, &v, sizeof v);
      } else {
        for (int l = 0; l < n; l++) cj[l] = accumulate ? cj[l] + acc[i][j][l] : acc[i][j][l];
      }
    }
  }
}

#define TILE_CASE(mr, nv)                                                                              \
  case (mr) * 8 + (nv):                                                                                \
    TILE_FN(_tile)(K, L + m0 * lsm, lsm, lsk, R + v0 * TILE_VW, rs, C + m0 * cs + v0 * TILE_VW, cs, accumulate, \
                   last, mr, nv);                                                                      \
    break;

TILE_ATTR static void TILE_NAME(int64_t M, int64_t N, int64_t K, const float *restrict L, int64_t lsm, int64_t lsk,
                                const float *restrict R, int64_t rs, int r_padded, float *restrict C, int64_t cs,
                                int accumulate) {
  const int64_t nvec = r_padded ? (N + TILE_VW - 1) / TILE_VW : N / TILE_VW; /* vectors the tiles compute */
  for (int64_t v0 = 0; v0 < nvec; v0 += TILE_NV) {
    const int nv = (int)(nvec - v0 < TILE_NV ? nvec - v0 : TILE_NV);
    const int last = v0 + nv == nvec && N - (nvec - 1) * TILE_VW < TILE_VW ? (int)(N - (nvec - 1) * TILE_VW) : TILE_VW;
    for (int64_t m0 = 0; m0 < M; m0 += TILE_MR) {
      const int mr = (int)(M - m0 < TILE_MR ? M - m0 : TILE_MR);
      switch (mr * 8 + nv) {
        TILE_CASE(4, 1)
        TILE_CASE(4, 2)
        TILE_CASE(3, 1)
        TILE_CASE(3, 2)
        TILE_CASE(2, 1)
        TILE_CASE(2, 2)
        TILE_CASE(1, 1)
        TILE_CASE(1, 2)
#if TILE_NV >= 4
        TILE_CASE(4, 3)
        TILE_CASE(4, 4)
        TILE_CASE(3, 3)
        TILE_CASE(3, 4)
        TILE_CASE(2, 3)
        TILE_CASE(2, 4)
        TILE_CASE(1, 3)
        TILE_CASE(1, 4)
#endif
        default: break;
      }
    }
  }
  /* Columns past the last whole vector (R not padded): a scalar loop. */
  for (int64_t n = nvec * TILE_VW; n < N; n++) {
    for (int64_t m = 0; m < M; m++) {
      float s = 0;
      for (int64_t k = 0; k < K; k++) s += L[m * lsm + k * lsk] * R[k * rs + n];
      C[m * cs + n] = accumulate ? C[m * cs + n] + s : s;
    }
  }
}

#undef TILE_CASE
#undef TILE_V
#undef TILE_FN
#undef TILE_PASTE
#undef TILE_PASTE2
