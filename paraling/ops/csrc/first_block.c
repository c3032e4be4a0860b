/* First CNN block on one input channel: conv (kh x kw, "same") -> max-pool -> + bias -> ReLU -> dropout, fused.
 *
 * Built and loaded by paraling/ops/build.py (cc -O3 -march=native -fopenmp, called through ctypes).
 * With a single input channel the convolution does kh*kw multiply-adds per output value, so torch's kernels for this
 * block (oneDNN conv, max-pool with int64 indices, the gradient's zero-filled scatter, the masks) move far more
 * memory than they compute. Here each pooled output is computed from its ph*pw candidate positions in registers
 * and only the pooled result leaves the core, with one byte per value recording which candidate won (255 when the
 * ReLU or dropout zeroed it). The backward pass needs only that byte, the input windows and the output gradient.
 *
 * Channels are processed in tiles of 16 with GCC/Clang vector extensions (one AVX-512 register, two AVX2 ones);
 * common kernel and pool sizes get specialised copies of the loops so that the accumulators stay in registers.
 *
 * Layouts (all contiguous; cp = c rounded up to a multiple of 16):
 *   x     (n, h, w)          input windows (the one channel)
 *   wt    (kh * kw, cp)      weights, transposed so that channels are innermost, zero beyond c
 *   b     (cp)               bias, added after pooling, where it gives the same result (max(a + b) = max(a) + b)
 *   rnd   (n, ho, wo, c)     random bytes for dropout (a unit is kept when its byte >= threshold), or NULL
 *   out   (n, pt + ho + pb, pl + wo + pr, c)   the block's output, channels-last, inside a zero border (the next
 *                            convolution's padding; all four are 0 when it needs none); float32, or bfloat16
 *                            (rounded once) when bf16 is set, for a next convolution under bf16 autocast
 *   arg   (n, ho, wo, c)     winning candidate per output (0 .. ph*pw-1), 255 when the output is zero, or NULL
 *   g     like out           gradient of the output (the border is ignored), the same dtype as out
 *   gw    (kh * kw, cp), gb (cp)   weight and bias gradients (written, not accumulated)
 * NaN handling follows torch: NaN wins the max-pool and passes the ReLU.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vec.h"

#define MAX_K 121

/* Zero-padded copy of one window: (h + kh - 1) x (w + kw - 1), so that the loops need no bounds checks. */
static void pad_window(const float *xn, int h, int w, int kh, int kw, int pad_top, int pad_left, float *xp) {
    const int wp = w + kw - 1;
    memset(xp, 0, sizeof(float) * (size_t)(h + kh - 1) * wp);
    for (int r = 0; r < h; r++) memcpy(xp + (size_t)(r + pad_top) * wp + pad_left, xn + (size_t)r * w, sizeof(float) * w);
}

static inline __attribute__((always_inline)) void forward_window(
    const float *xp, int wp, int ho, int wo, int c, int kh, int kw, int ph, int pw, const float *wt, const float *b,
    const uint8_t *rnd, int threshold, float scale, char *out, int bf16, uint8_t *arg, int cp, int pt, int pl,
    int wot) {
    const size_t es = bf16 ? 2 : 4;
    const int k = kh * kw, s_count = ph * pw;
    vf wreg[MAX_K];
    for (int cb = 0; cb < cp; cb += T) {
        const int cw = c - cb < T ? c - cb : T;
        for (int kk = 0; kk < k; kk++) memcpy(&wreg[kk], wt + (size_t)kk * cp + cb, sizeof(vf));
        vf bias;
        memcpy(&bias, b + cb, sizeof(vf));
        for (int oi = 0; oi < ho; oi++) {
            for (int oj = 0; oj < wo; oj++) {
                vf best;
                vi won;
                for (int s = 0; s < s_count; s++) {
                    const float *xs = xp + (size_t)(oi * ph + s / pw) * wp + oj * pw + s % pw;
                    vf acc = {0};
                    for (int ki = 0; ki < kh; ki++)
                        for (int kj = 0; kj < kw; kj++) acc += xs[(size_t)ki * wp + kj] * wreg[ki * kw + kj];
                    pool_candidate(acc, s, &best, &won);
                }
                const size_t o = ((size_t)oi * wo + oj) * c + cb, op = ((size_t)(oi + pt) * wot + oj + pl) * c + cb;
                relu_dropout_store(best + bias, won, rnd ? rnd + o : NULL, threshold, scale, out + op * es, bf16,
                                   arg ? arg + o : NULL, cw);
            }
        }
    }
}

static inline __attribute__((always_inline)) void backward_window(
    const float *xp, int wp, int ho, int wo, int c, int kh, int kw, int ph, int pw, const char *g, int bf16,
    const uint8_t *arg, float *gw, float *gb, int cp, int pt, int pl, int wot) {
    const size_t es = bf16 ? 2 : 4;
    const int k = kh * kw, s_count = ph * pw;
    vf accw[MAX_K];
    for (int cb = 0; cb < cp; cb += T) {
        const int cw = c - cb < T ? c - cb : T;
        for (int kk = 0; kk < k; kk++) accw[kk] = (vf){0};
        vf accb = {0};
        for (int oi = 0; oi < ho; oi++) {
            for (int oj = 0; oj < wo; oj++) {
                const size_t o = ((size_t)oi * wo + oj) * c + cb, op = ((size_t)(oi + pt) * wot + oj + pl) * c + cb;
                vf gv = load_lanes(g + op * es, bf16, cw);
                vi a = load_bytes(arg + o, cw, DROPPED);
                accb += blend(a != DROPPED, gv, (vf){0});
                for (int s = 0; s < s_count; s++) {
                    vf gs = blend(a == s, gv, (vf){0});
                    const float *xs = xp + (size_t)(oi * ph + s / pw) * wp + oj * pw + s % pw;
                    for (int ki = 0; ki < kh; ki++)
                        for (int kj = 0; kj < kw; kj++) accw[ki * kw + kj] += xs[(size_t)ki * wp + kj] * gs;
                }
            }
        }
        for (int kk = 0; kk < k; kk++) {
            vf cur;
            memcpy(&cur, gw + (size_t)kk * cp + cb, sizeof(vf));
            cur += accw[kk];
            memcpy(gw + (size_t)kk * cp + cb, &cur, sizeof(vf));
        }
        vf cur;
        memcpy(&cur, gb + cb, sizeof(vf));
        cur += accb;
        memcpy(gb + cb, &cur, sizeof(vf));
    }
}

/* Specialised copies for the usual geometries (constant trip counts keep the accumulators in registers). */
#define DISPATCH(CALL, kh, kw, ph, pw)                                   \
    if (kh == 3 && kw == 3 && ph == 2 && pw == 2) CALL(3, 3, 2, 2);      \
    else if (kh == 2 && kw == 2 && ph == 2 && pw == 2) CALL(2, 2, 2, 2); \
    else if (kh == 5 && kw == 5 && ph == 2 && pw == 2) CALL(5, 5, 2, 2); \
    else if (kh == 3 && kw == 3 && ph == 2 && pw == 1) CALL(3, 3, 2, 1); \
    else CALL(kh, kw, ph, pw)

static int check(int c, int kh, int kw, int ph, int pw) {
    return c < 1 || kh < 1 || kw < 1 || kh * kw > MAX_K || ph < 1 || pw < 1 || ph * pw > 254;
}

int pl_first_block_forward(int64_t n, int h, int w, int c, int kh, int kw, int pad_top, int pad_left, int ph, int pw,
                           int pt, int pb, int pl, int pr, int bf16, const float *x, const float *wt, const float *b,
                           const uint8_t *rnd, int threshold, float scale, void *out, uint8_t *arg, int nthreads) {
    if (check(c, kh, kw, ph, pw) || pt < 0 || pb < 0 || pl < 0 || pr < 0) return 1;
    const int ho = h / ph, wo = w / pw, wp = w + kw - 1, cp = (c + T - 1) / T * T;
    const int hot = pt + ho + pb, wot = pl + wo + pr;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        float *xp = malloc(sizeof(float) * (size_t)(h + kh - 1) * wp);
        if (xp == NULL) failed = 1;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (xp == NULL) continue;
            const size_t o = (size_t)i * ho * wo * c, op = (size_t)i * hot * wot * c;
            pad_window(x + (size_t)i * h * w, h, w, kh, kw, pad_top, pad_left, xp);
            zero_border((char *)out + op * (bf16 ? 2 : 4), ho, wo, c, pt, pb, pl, pr, bf16 ? 2 : 4);
#define FWD(KH, KW, PH, PW)                                                                                          \
    forward_window(xp, wp, ho, wo, c, KH, KW, PH, PW, wt, b, rnd ? rnd + o : NULL, threshold, scale,                \
                   (char *)out + op * (bf16 ? 2 : 4), bf16, arg ? arg + o : NULL, cp, pt, pl, wot)
            DISPATCH(FWD, kh, kw, ph, pw);
        }
        free(xp);
    }
    return failed ? 2 : 0;
}

int pl_first_block_backward(int64_t n, int h, int w, int c, int kh, int kw, int pad_top, int pad_left, int ph, int pw,
                            int pt, int pb, int pl, int pr, int bf16, const float *x, const void *g,
                            const uint8_t *arg, float scale, float *gw, float *gb, int nthreads) {
    if (check(c, kh, kw, ph, pw) || pt < 0 || pb < 0 || pl < 0 || pr < 0) return 1;
    const int ho = h / ph, wo = w / pw, wp = w + kw - 1, cp = (c + T - 1) / T * T, k = kh * kw;
    const int hot = pt + ho + pb, wot = pl + wo + pr;
    memset(gw, 0, sizeof(float) * (size_t)k * cp);
    memset(gb, 0, sizeof(float) * (size_t)cp);
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        float *xp = malloc(sizeof(float) * (size_t)(h + kh - 1) * wp);
        float *tw = calloc((size_t)k * cp, sizeof(float));
        float *tb = calloc((size_t)cp, sizeof(float));
        if (xp == NULL || tw == NULL || tb == NULL) failed = 1;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (xp == NULL || tw == NULL || tb == NULL) continue;
            const size_t o = (size_t)i * ho * wo * c, op = (size_t)i * hot * wot * c;
            pad_window(x + (size_t)i * h * w, h, w, kh, kw, pad_top, pad_left, xp);
#define BWD(KH, KW, PH, PW) \
    backward_window(xp, wp, ho, wo, c, KH, KW, PH, PW, (const char *)g + op * (bf16 ? 2 : 4), bf16, arg + o, tw, tb, \
                    cp, pt, pl, wot)
            DISPATCH(BWD, kh, kw, ph, pw);
        }
#pragma omp critical
        {
            if (tw != NULL && tb != NULL) {
                for (size_t j = 0; j < (size_t)k * cp; j++) gw[j] += tw[j];
                for (int j = 0; j < cp; j++) gb[j] += tb[j];
            }
        }
        free(xp);
        free(tw);
        free(tb);
    }
    if (failed) return 2;
    for (size_t j = 0; j < (size_t)k * cp; j++) gw[j] *= scale;
    for (int j = 0; j < cp; j++) gb[j] *= scale;
    return 0;
}
