/* Shared pieces of paraling's native kernels: 16-lane vectors (GCC/Clang vector extensions: one AVX-512 register,
 * two AVX2 ones, four SSE ones) and bfloat16 conversion. */
#ifndef PARALING_VEC_H
#define PARALING_VEC_H

#include <stdint.h>
#include <string.h>

#define T 16
#define DROPPED 255

typedef float vf __attribute__((vector_size(T * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(T * sizeof(int32_t))));
typedef uint32_t vu __attribute__((vector_size(T * sizeof(uint32_t))));
typedef uint16_t vh __attribute__((vector_size(T * sizeof(uint16_t))));
typedef uint8_t vb __attribute__((vector_size(T)));

/* Lanes of a where take is all ones, lanes of b elsewhere. */
static inline vf blend(vi take, vf a, vf b) { return (vf)((take & (vi)a) | (~take & (vi)b)); }

/* bfloat16 (the upper half of a float32) to float32, exactly. */
static inline vf bf16_to_f32(vh h) { return (vf)(__builtin_convertvector(h, vu) << 16); }

/* float32 to bfloat16, rounding to nearest even like torch; NaN stays NaN. */
static inline vh f32_to_bf16(vf f) {
    vu u = (vu)f;
    vu rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    vi nan = f != f;
    vu r = ((vu)nan & ((u >> 16) | 0x40u)) | (~(vu)nan & rounded);
    return __builtin_convertvector(r, vh);
}

/* Load/store `n` <= T lanes of float32 or bfloat16 data (the rest of the vector is zero on load). Full vectors
 * take the constant-size branch, which compiles to one unaligned vector move. */
static inline vf load_lanes(const void *p, int bf16, int n) {
    if (bf16) {
        vh h = {0};
        if (n == T) memcpy(&h, p, sizeof h);
        else memcpy(&h, p, sizeof(uint16_t) * n);
        return bf16_to_f32(h);
    }
    vf f = {0};
    if (n == T) memcpy(&f, p, sizeof f);
    else memcpy(&f, p, sizeof(float) * n);
    return f;
}

static inline void store_lanes(void *p, vf v, int bf16, int n) {
    if (bf16) {
        vh h = f32_to_bf16(v);
        if (n == T) memcpy(p, &h, sizeof h);
        else memcpy(p, &h, sizeof(uint16_t) * n);
    } else if (n == T) {
        memcpy(p, &v, sizeof v);
    } else {
        memcpy(p, &v, sizeof(float) * n);
    }
}

static inline vi load_bytes(const uint8_t *p, int n, uint8_t fill) {
    vb b;
    if (n == T) {
        memcpy(&b, p, sizeof b);
    } else {
        memset(&b, fill, sizeof b);
        memcpy(&b, p, n);
    }
    return __builtin_convertvector(b, vi);
}

static inline void store_bytes(uint8_t *p, vi v, int n) {
    vb b = __builtin_convertvector(v, vb);
    if (n == T) memcpy(p, &b, sizeof b);
    else memcpy(p, &b, n);
}

/* Max-pooling step for candidate `s` (0 first): keep the larger value and which candidate it came from; NaN wins,
 * and ties keep the earlier candidate, as in torch's max_pool2d. */
static inline void pool_candidate(vf v, int s, vf *best, vi *won) {
    if (s == 0) {
        *best = v;
        *won = (vi){0};
        return;
    }
    vi take = (v > *best) | (v != v);
    *best = blend(take, v, *best);
    *won = (take & s) | (~take & *won);
}

/* ReLU -> dropout -> scale of pooled values `v`, stored to `out` (float32 or bfloat16), with the winning candidate,
 * or DROPPED where the value became 0, stored to `arg` (when not NULL). `rnd` (or NULL: no dropout) holds one random
 * byte per value; a value is kept when its byte >= threshold. NaN passes the ReLU, as in torch. */
static inline void relu_dropout_store(vf v, vi won, const uint8_t *rnd, int threshold, float scale, void *out,
                                      int bf16, uint8_t *arg, int n) {
    vi keep = ~(v <= 0.0f);
    if (rnd != NULL) keep &= load_bytes(rnd, n, 0) >= threshold;
    store_lanes(out, blend(keep, v * scale, (vf){0}), bf16, n);
    if (arg != NULL) store_bytes(arg, (keep & won) | (~keep & DROPPED), n);
}

/* Zero the border of one channels-last image of (pt + ho + pb) x (pl + wo + pr) x c elements of `es` bytes: the
 * next convolution's "same" padding, written by the kernel that produces its input instead of by a separate pad
 * pass (and its gradient read in place instead of sliced and copied). */
static inline void zero_border(char *img, int ho, int wo, int c, int pt, int pb, int pl, int pr, size_t es) {
    const size_t px = (size_t)c * es, row = (size_t)(pl + wo + pr) * px;
    memset(img, 0, pt * row);
    memset(img + (size_t)(pt + ho) * row, 0, pb * row);
    if (pl == 0 && pr == 0) return;
    for (int r = pt; r < pt + ho; r++) {
        memset(img + r * row, 0, pl * px);
        memset(img + r * row + (size_t)(pl + wo) * px, 0, pr * px);
    }
}

#endif
