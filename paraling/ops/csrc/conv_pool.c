/* Backward pass of a conv block (conv -> max-pool -> + bias -> ReLU -> dropout) from the pool kernel's winner bytes.
 *
 * After max-pooling, only the winning candidate of each pooled value gets a gradient, and none does where the ReLU
 * or dropout zeroed the value: of the 20x5x64 conv-output gradients of the default second block at most one in five
 * is nonzero (20 of its 100 positions are pooled), fewer after the ReLU and dropout. A dense convolution backward
 * (oneDNN's, after a pool backward that writes the mostly-zero gradient map) multiplies all of them. Here the kept
 * (pooled value, channel) pairs of a chunk of windows are listed per output channel and window, and each one adds
 *     its gradient x its input patch          to that channel's weight gradient (channel by channel over the chunk,
 *                                             accumulated in registers), and
 *     its gradient x that channel's weights   to the input gradient over the same patch (window by window, so
 *                                             that the window's gradient stays in the L1 cache),
 * so the work is proportional to the kept values, and the conv output's gradient is never written.
 *
 * The convolution is "valid" over an input that already carries its zero padding (written by the kernel that
 * produced it, see pool.c and first_block.c), stride 1, no dilation or groups.
 *
 * Layouts (contiguous, channels innermost; x, g and gx are float32, or bfloat16 when bf16 is set):
 *   x, gx  (n, hx, wx, cin)        conv input (with its padding) and its gradient (gx may be NULL)
 *   wt, gw (cout, kh, kw, cin)     weights (the values the forward pass used) and their gradient, float32
 *   g      (n, pt + ho + pb, pl + wo + pr, cout)   gradient of the block output (its border is ignored)
 *   arg    (n, ho, wo, cout)       winning candidate per pooled value, 255 where zeroed (written by pool.c)
 *   gb     (cout)                  bias gradient (the bias is added after pooling), float32
 * Sums are float32; a bfloat16 input gradient is rounded once at the end.
 * The conv output is (hx - kh + 1) x (wx - kw + 1), pooled ph x pw (rows and columns left over are not read).
 * Per-thread partial sums are added in thread order, so results depend on the thread count but not on timing.
 */
#include <omp.h>
#include <stdlib.h>

#include "vec.h"

#define TV 8     /* vectors per register tile of a weight row */
#define CHUNK 8 /* windows per work item: their input and input gradient stay in the L2 cache */

/* One register tile of output channel c over its listed patches: R kernel rows x V whole vectors of the weight row,
 * starting at row ki0 and float j0 within the row. R, V are compile-time constants at each call, so the tile's
 * accumulators, weights and offsets stay in registers. */
static inline __attribute__((always_inline)) void tile_rv(const int32_t *off, const float *gval, int m0, int m1,
                                                          const void *xc, int bf16, float *gxc, const float *wrow,
                                                          float *gwrow, int ki0, int j0, int rl, int xrow, int R,
                                                          int V, int GW) {
    const char *xb = xc;
    const size_t es = bf16 ? 2 : 4;
    vf wr[TV], acc[TV]; /* R x V <= TV */
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            memcpy(&wr[r * V + v], wrow + (size_t)(ki0 + r) * rl + j0 + v * T, sizeof(vf));
            acc[r * V + v] = (vf){0};
        }
    const size_t base = (size_t)ki0 * xrow + j0;
    for (int e = m0; e < m1; e++) {
        const size_t o = base + (size_t)off[e];
        const float gv = gval[e];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
#pragma GCC unroll 8
            for (int v = 0; v < V; v++) {
                const size_t q = o + (size_t)r * xrow + (size_t)v * T;
                if (GW) acc[r * V + v] += gv * load_lanes(xb + q * es, bf16, T);
                if (gxc != NULL) {
                    vf gxv;
                    memcpy(&gxv, gxc + q, sizeof gxv);
                    gxv += gv * wr[r * V + v];
                    memcpy(gxc + q, &gxv, sizeof gxv);
                }
            }
        }
    }
    if (!GW) return;
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            float *dst = gwrow + (size_t)(ki0 + r) * rl + j0 + v * T;
            vf cur;
            memcpy(&cur, dst, sizeof cur);
            cur += acc[r * V + v];
            memcpy(dst, &cur, sizeof cur);
        }
}

/* Any geometry: up to TV vectors of the weight row from vector t0 on, the last of a row possibly partial. */
static void tile_any(const int32_t *off, const float *gval, int m0, int m1, const void *xc, int bf16, float *gxc,
                     const float *wrow, float *gwrow, int t0, int nv, int nvr, int rl, int xrow, int gw) {
    const char *xb = xc;
    const size_t es = bf16 ? 2 : 4;
    vf wr[TV], acc[TV];
    int vo[TV], wo[TV], vl[TV];
    for (int t = 0; t < TV; t++) {
        const int v = t0 + t, ki = v / nvr, j = (v % nvr) * T;
        vl[t] = v < nv ? (rl - j < T ? rl - j : T) : 0;
        vo[t] = v < nv ? ki * xrow + j : 0;
        wo[t] = v < nv ? ki * rl + j : 0;
        wr[t] = vl[t] ? load_lanes(wrow + wo[t], 0, vl[t]) : (vf){0};
        acc[t] = (vf){0};
    }
    for (int e = m0; e < m1; e++) {
        const char *xp = xb + (size_t)off[e] * es;
        float *gp = gxc != NULL ? gxc + off[e] : NULL;
        const float gv = gval[e];
        for (int t = 0; t < TV; t++) {
            if (vl[t] == 0) continue;
            if (gw) acc[t] += gv * load_lanes(xp + vo[t] * es, bf16, vl[t]);
            if (gp != NULL) store_lanes(gp + vo[t], load_lanes(gp + vo[t], 0, vl[t]) + gv * wr[t], 0, vl[t]);
        }
    }
    for (int t = 0; t < TV && gw; t++)
        if (vl[t]) store_lanes(gwrow + wo[t], load_lanes(gwrow + wo[t], 0, vl[t]) + acc[t], 0, vl[t]);
}

/* All tiles of output channel c: register tiles of R rows x V vectors where the weight row is whole vectors and
 * splits that way (R x V = 8, or a row of fewer than 8 vectors), else tile_any. */
static inline __attribute__((always_inline)) void channel(const int32_t *off, const float *gval, int m0, int m1,
                                                          const void *xc, int bf16, float *gxc, const float *wrow,
                                                          float *gwrow, int kh, int nvr, int rl, int xrow,
                                                          int GW) {
#define RV(R, V)                                                                                                  \
    do {                                                                                                          \
        for (int ki = 0; ki < kh; ki += R)                                                                        \
            for (int j = 0; j < rl; j += V * T)                                                                   \
                tile_rv(off, gval, m0, m1, xc, bf16, gxc, wrow, gwrow, ki, j, rl, xrow, R, V, GW);                   \
    } while (0)
    if (rl % T != 0) {
        for (int t0 = 0; t0 < kh * nvr; t0 += TV)
            tile_any(off, gval, m0, m1, xc, bf16, gxc, wrow, gwrow, t0, kh * nvr, nvr, rl, xrow, GW);
    } else if (nvr % 8 == 0) RV(1, 8);
    else if (nvr == 4 && kh % 2 == 0) RV(2, 4);
    else if (nvr == 4) RV(1, 4);
    else if (nvr == 2 && kh % 4 == 0) RV(4, 2);
    else if (nvr == 2 && kh % 2 == 0) RV(2, 2);
    else if (nvr == 2) RV(1, 2);
    else if (nvr == 6) RV(1, 6);
    else if (nvr % 4 == 0) RV(1, 4);
    else if (nvr % 2 == 0) RV(1, 2);
    else RV(1, 1);
#undef RV
}

int pl_conv_pool_backward(int64_t n, int hx, int wx, int cin, int cout, int kh, int kw, int ph, int pw, int pt,
                          int pb, int pl, int pr, int bf16, const void *x, const float *wt, const void *g,
                          const uint8_t *arg, float scale, void *gx, float *gw, float *gb, int nthreads) {
    const int h = hx - kh + 1, w = wx - kw + 1;
    if (n < 0 || cin < 1 || cout < 1 || kh < 1 || kw < 1 || ph < 1 || pw < 1 || ph * pw > 254 || h < ph ||
        w < pw || pt < 0 || pb < 0 || pl < 0 || pr < 0 || nthreads < 1)
        return 1;
    const int ho = h / ph, wo = w / pw, hot = pt + ho + pb, wot = pl + wo + pr, per = ho * wo;
    const int rl = kw * cin, xrow = wx * cin; /* floats in one kernel row of a patch (contiguous), in an input row */
    const int nvr = (rl + T - 1) / T;
    const size_t es = bf16 ? 2 : 4, xw = (size_t)hx * wx * cin, kk = (size_t)kh * kw * cin;
    const size_t part_len = (size_t)cout * kk + cout;
    if ((double)CHUNK * xw >= 2147483647.0) return 1; /* offsets within a chunk are int32 */
    int soff[256]; /* candidate s -> offset of its patch from the pooled value's first candidate */
    for (int s = 0; s < ph * pw; s++) soff[s] = ((s / pw) * wx + s % pw) * cin;
    soff[DROPPED] = 0;
    const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
    float *part = calloc((size_t)nthreads * part_len, sizeof(float));
    if (part == NULL) return 2;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        float *tw = part + (size_t)omp_get_thread_num() * part_len, *tb = tw + (size_t)cout * kk;
        int32_t *off = malloc(sizeof(int32_t) * (size_t)CHUNK * per * cout);
        float *gval = malloc(sizeof(float) * (size_t)CHUNK * per * cout);
        int *start = malloc(sizeof(int) * (size_t)cout * (CHUNK + 1));
        int *cursor = malloc(sizeof(int) * (size_t)cout);
        /* bfloat16: the input gradient is summed in float32 here and rounded once */
        float *scratch = bf16 && gx != NULL ? malloc(sizeof(float) * CHUNK * xw) : NULL;
        if (off == NULL || gval == NULL || start == NULL || cursor == NULL || (bf16 && gx != NULL && scratch == NULL))
            failed = 1;
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < nchunks; ch++) {
            if (failed) continue;
            const int64_t i0 = ch * CHUNK;
            const int nw = n - i0 < CHUNK ? (int)(n - i0) : CHUNK;
            const char *xc = (const char *)x + (size_t)i0 * xw * es;
            float *gxc = gx == NULL ? NULL : bf16 ? scratch : (float *)gx + i0 * xw;
            if (gxc != NULL) memset(gxc, 0, sizeof(float) * nw * xw);
            /* List the kept pooled values per output channel, and within a channel by window: channel c's list
             * starts at c * cap, and start[c * (nw + 1) + i] is where window i's part of it begins. Read 16
             * channels at a time (contiguous), appended lane by lane without branches. */
            const int cap = nw * per;
            for (int c = 0; c < cout; c++) cursor[c] = c * cap;
            for (int i = 0; i < nw; i++) {
                for (int c = 0; c < cout; c++) start[c * (nw + 1) + i] = cursor[c];
                const int64_t iw = i0 + i;
                for (int oi = 0; oi < ho; oi++) {
                    for (int oj = 0; oj < wo; oj++) {
                        const int32_t base = (int32_t)((size_t)i * xw + (size_t)(oi * ph * wx + oj * pw) * cin);
                        const uint8_t *arow = arg + ((size_t)iw * per + oi * wo + oj) * cout;
                        const char *grow = (const char *)g + (((size_t)iw * hot + oi + pt) * wot + oj + pl) * cout * es;
                        for (int cb = 0; cb < cout; cb += T) {
                            const int cw = cout - cb < T ? cout - cb : T;
                            const vi av = load_bytes(arow + cb, cw, DROPPED);
                            const vf gv = load_lanes(grow + (size_t)cb * es, bf16, cw) * scale;
                            store_lanes(tb + cb, load_lanes(tb + cb, 0, cw) + blend(av != DROPPED, gv, (vf){0}), 0, cw);
                            int32_t al[T];
                            float gl[T];
                            memcpy(al, &av, sizeof al);
                            memcpy(gl, &gv, sizeof gl);
                            for (int l = 0; l < cw; l++) {
                                const int k = cursor[cb + l];
                                off[k] = base + soff[al[l]];
                                gval[k] = gl[l];
                                cursor[cb + l] = k + (al[l] != DROPPED);
                            }
                        }
                    }
                }
            }
            for (int c = 0; c < cout; c++) start[c * (nw + 1) + nw] = cursor[c];
            /* weight gradient: channel by channel over the whole chunk (accumulators in registers) */
            for (int c = 0; c < cout; c++) {
                const int m0 = c * cap, m1 = start[c * (nw + 1) + nw];
                const float *wrow = wt + (size_t)c * kk;
                float *gwrow = tw + (size_t)c * kk;
                if (bf16) channel(off, gval, m0, m1, xc, 1, NULL, wrow, gwrow, kh, nvr, rl, xrow, 1);
                else channel(off, gval, m0, m1, xc, 0, NULL, wrow, gwrow, kh, nvr, rl, xrow, 1);
            }
            /* input gradient: window by window, so that the window's gradient stays in the L1 cache */
            for (int i = 0; i < nw && gxc != NULL; i++) {
                for (int c = 0; c < cout; c++) {
                    const int m0 = start[c * (nw + 1) + i], m1 = start[c * (nw + 1) + i + 1];
                    if (m0 == m1) continue;
                    channel(off, gval, m0, m1, xc, 0, gxc, wt + (size_t)c * kk, NULL, kh, nvr, rl, xrow, 0);
                }
            }
            if (bf16 && gxc != NULL) { /* round the chunk's input gradient to bfloat16 once */
                uint16_t *dst = (uint16_t *)gx + (size_t)i0 * xw;
                const size_t len = (size_t)nw * xw;
                for (size_t j = 0; j < len; j += T) {
                    const int lanes = len - j < T ? (int)(len - j) : T;
                    store_lanes(dst + j, load_lanes(gxc + j, 0, lanes), 1, lanes);
                }
            }
        }
        free(scratch);
        free(off);
        free(gval);
        free(start);
        free(cursor);
    }
    if (!failed) {
        if (gw != NULL) memset(gw, 0, sizeof(float) * cout * kk);
        if (gb != NULL) memset(gb, 0, sizeof(float) * cout);
        for (int t = 0; t < nthreads; t++) { /* in thread order: the same sums every run */
            const float *tw = part + (size_t)t * part_len, *tb = tw + (size_t)cout * kk;
            if (gw != NULL)
                for (size_t j = 0; j < (size_t)cout * kk; j++) gw[j] += tw[j];
            if (gb != NULL)
                for (int j = 0; j < cout; j++) gb[j] += tb[j];
        }
    }
    free(part);
    return failed ? 2 : 0;
}
