/* max-pool -> (+ bias) -> ReLU -> dropout over channels-last float32 or bfloat16 maps, fused, one byte per output.
 *
 * The torch reference of this block (paraling/ops/reference.py) writes int64 pooling indices, a boolean mask, the masked output,
 * then scales it; its backward zero-fills the input gradient and scatters into it. Here the forward reads the input
 * once and writes the output plus one byte per value (the winning candidate, 255 when the ReLU or dropout zeroed it);
 * the backward writes every input-gradient value exactly once, so no zero-fill pass. The bias, when given, is the
 * preceding convolution's, moved after the pooling (max(a + b) = max(a) + b), so its gradient is summed here over
 * the pooled values instead of over the full map. A pool of 1 x 1 on (n, features) data is ReLU -> dropout for the
 * fully connected layers.
 *
 * Layouts (contiguous, channels innermost): x (n, h, w, c); arg, rnd (n, ho, wo, c) with ho = h/ph, wo = w/pw;
 * out (n, pt + ho + pb, pl + wo + pr, c), the output inside a zero border that is the next convolution's padding
 * (all four 0 when it needs none); g like out (its border ignored); gx like x; bias and gb (c) float32. Values are
 * computed in float32 and rounded to bfloat16 once, as torch does.
 */
#include <stdlib.h>

#include "vec.h"

static int check(int64_t n, int h, int w, int c, int ph, int pw) {
    return n < 0 || c < 1 || ph < 1 || pw < 1 || ph * pw > 254 || h < ph || w < pw;
}

int pl_pool_forward(int64_t n, int h, int w, int c, int ph, int pw, int pt, int pb, int pl, int pr, int bf16,
                    const void *x, const float *bias, const uint8_t *rnd, int threshold, float scale, void *out,
                    uint8_t *arg, int nthreads) {
    if (check(n, h, w, c, ph, pw) || pt < 0 || pb < 0 || pl < 0 || pr < 0) return 1;
    const int ho = h / ph, wo = w / pw, s_count = ph * pw, hot = pt + ho + pb, wot = pl + wo + pr;
    const size_t es = bf16 ? 2 : 4;
    const char *xb = x;
    char *ob = out;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t r = 0; r < n * ho; r++) {
        const int64_t i = r / ho;
        const int oi = (int)(r % ho);
        if (oi == 0) zero_border(ob + (size_t)i * hot * wot * c * es, ho, wo, c, pt, pb, pl, pr, es);
        for (int oj = 0; oj < wo; oj++) {
            const size_t o = ((size_t)r * wo + oj) * c, op = (((size_t)i * hot + oi + pt) * wot + oj + pl) * c;
            for (int cb = 0; cb < c; cb += T) {
                const int cw = c - cb < T ? c - cb : T;
                vf best;
                vi won;
                for (int s = 0; s < s_count; s++) {
                    const size_t xi = (((size_t)i * h + oi * ph + s / pw) * w + oj * pw + s % pw) * c + cb;
                    pool_candidate(load_lanes(xb + xi * es, bf16, cw), s, &best, &won);
                }
                if (bias != NULL) best += load_lanes(bias + cb, 0, cw);
                relu_dropout_store(best, won, rnd ? rnd + o + cb : NULL, threshold, scale, ob + (op + cb) * es, bf16,
                                   arg ? arg + o + cb : NULL, cw);
            }
        }
    }
    return 0;
}

int pl_pool_backward(int64_t n, int h, int w, int c, int ph, int pw, int pt, int pb, int pl, int pr, int bf16,
                     const void *g, const uint8_t *arg, float scale, void *gx, float *gb, int nthreads) {
    if (check(n, h, w, c, ph, pw) || pt < 0 || pb < 0 || pl < 0 || pr < 0) return 1;
    const int ho = h / ph, wo = w / pw, cp = (c + T - 1) / T * T, hot = pt + ho + pb, wot = pl + wo + pr;
    const size_t es = bf16 ? 2 : 4;
    const char *gbase = g;
    char *gxb = gx;
    int failed = 0;
    if (gb != NULL) memset(gb, 0, sizeof(float) * cp);
#pragma omp parallel num_threads(nthreads)
    {
        float *tb = gb != NULL ? calloc((size_t)cp, sizeof(float)) : NULL;
        if (gb != NULL && tb == NULL) failed = 1;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n * h; r++) {  // one row of the input gradient, written once
            const int64_t i = r / h;
            const int hi = (int)(r % h), oi = hi / ph, si = hi % ph;
            char *row = gxb + (size_t)r * w * c * es;
            if (oi >= ho) {  // rows the pooling never read
                memset(row, 0, (size_t)w * c * es);
                continue;
            }
            for (int wj = 0; wj < w; wj++) {
                const int oj = wj / pw, s = si * pw + wj % pw;
                char *dst = row + (size_t)wj * c * es;
                if (oj >= wo) {
                    memset(dst, 0, (size_t)c * es);
                    continue;
                }
                const size_t o = (((size_t)i * ho + oi) * wo + oj) * c;
                const size_t op = (((size_t)i * hot + oi + pt) * wot + oj + pl) * c;
                for (int cb = 0; cb < c; cb += T) {
                    const int cw = c - cb < T ? c - cb : T;
                    vf gv = load_lanes(gbase + (op + cb) * es, bf16, cw);
                    vi a = load_bytes(arg + o + cb, cw, DROPPED);
                    store_lanes(dst + (size_t)cb * es, blend(a == s, gv * scale, (vf){0}), bf16, cw);
                    if (tb != NULL && s == 0) {
                        vf acc;
                        memcpy(&acc, tb + cb, sizeof acc);
                        acc += blend(a != DROPPED, gv, (vf){0});
                        memcpy(tb + cb, &acc, sizeof acc);
                    }
                }
            }
        }
        if (tb != NULL) {
#pragma omp critical
            for (int j = 0; j < cp; j++) gb[j] += tb[j];
            free(tb);
        }
    }
    if (failed) return 2;
    if (gb != NULL)
        for (int j = 0; j < cp; j++) gb[j] *= scale;
    return 0;
}
