/* Direct 2-d convolution kernels (see conv_direct.h). */
#include <stdint.h>
#include <string.h>

#include "kernels/conv_direct.h"
#include "layers/layer.h"

mtli_conv_route mtli_conv_route_choice = MTLI_CONV_AUTO;

#if defined(__GNUC__)

/* Multiply-adds as fused operations (ISO C mode leaves a*b+c as two roundings). */
#if !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#else
#pragma clang fp contract(fast)
#endif

/* Small loops over a register block, unrolled so that the block lives in registers. */
#if !defined(__clang__)
#define UNROLL _Pragma("GCC unroll 8")
#else
#define UNROLL _Pragma("unroll")
#endif

#define VL 16   /* lanes of one tile */
#define GROUP 8 /* samples whose weight-gradient sums share one reduction of the lanes */
typedef float v16 __attribute__((vector_size(VL * sizeof(float))));
#define LD(v, p) memcpy(&(v), (p), sizeof(v16))
#define ST(p, v) memcpy((p), &(v), sizeof(v16))

bool mtli_convd_available(void) { return true; }

static size_t ceil_to(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* Output channels per register block: the size among 8, 6, 5, 4 that pads n least (ties: the
 * larger block). */
static size_t pick_ob(size_t n)
{
    static const size_t obs[] = {8, 6, 5, 4};
    size_t best = obs[0];
    for (size_t k = 1; k < sizeof obs / sizeof obs[0]; k++)
        if (ceil_to(n, obs[k]) < ceil_to(n, best))
            best = obs[k];
    return best;
}

/* ---- geometry of the work buffers --------------------------------------------------------- */

typedef struct {
    size_t K;      /* C*kh*kw */
    size_t Hp, Wq; /* zero-bordered input: rows, row pitch */
    size_t Wt;     /* output columns rounded up to whole tiles */
    size_t obf;    /* forward block */
    size_t obw;    /* weight-gradient block (over O) */
    size_t obx;    /* input-gradient block (over C) */
    size_t Hb, Wb; /* zero-bordered output gradient of the input-gradient pass */
    size_t Wx;     /* input columns rounded up to whole tiles */
} convd_dims;

static void convd_dims_of(const mtli_conv_geom *g, size_t O, convd_dims *d)
{
    d->K = g->C * g->kh * g->kw;
    d->Hp = g->H + 2 * g->ph;
    d->Wt = ceil_to(g->Wo, VL);
    /* the weight gradient reads up to 4 taps past the kernel (whole tap blocks) */
    size_t reach = d->Wt + (g->kw + 3) * g->dw;
    d->Wq = g->W + 2 * g->pw > reach ? g->W + 2 * g->pw : reach;
    d->obf = pick_ob(O);
    d->obw = pick_ob(O);
    d->obx = pick_ob(g->C);
    d->Wx = ceil_to(g->W, VL);
    size_t eh = (g->kh - 1) * g->dh, ew = (g->kw - 1) * g->dw;
    d->Hb = g->Ho + 2 * eh;
    d->Wb = g->Wo + 2 * ew;
    if (g->pw + d->Wx + ew > d->Wb)
        d->Wb = g->pw + d->Wx + ew;
}

static size_t fwd_floats(const mtli_conv_geom *g, size_t O, const convd_dims *d)
{
    return d->K * ceil_to(O, d->obf) + g->C * d->Hp * d->Wq;
}

static size_t bwd_floats(const mtli_conv_geom *g, size_t O, const convd_dims *d, bool with_dx)
{
    size_t n = GROUP * (g->C * d->Hp * d->Wq + ceil_to(O, d->obw) * g->Ho * d->Wt);
    if (with_dx)
        n += O * d->Hb * d->Wb + O * g->kh * g->kw * ceil_to(g->C, d->obx);
    return n;
}

static bool convd_possible(const mtli_conv_geom *g, size_t O)
{
    return g->sw == 1 && O > 0 && g->C > 0 && mtli_conv_route_choice != MTLI_CONV_IM2COL;
}

/* The register blocks are sized for AVX-512's 32 vector registers; with fewer (AVX2 has 16
 * of half the width) they spill, and AUTO keeps the im2col route. */
static bool cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* AUTO: an AVX-512 CPU, maps at least half a tile wide, and few enough channels that the
 * register blocks beat a GEMM (past that the GEMM's own blocking wins and the columns cost
 * little). */
static bool convd_worth(const mtli_conv_geom *g, size_t O)
{
    return mtli_conv_route_choice == MTLI_CONV_DIRECT ||
           (g->Wo >= VL / 2 && O <= 64 && g->C * g->kh * g->kw <= 4096 && cpu_has_avx512());
}

bool mtli_convd_applies(const mtli_conv_geom *g, size_t O)
{
    return convd_possible(g, O) && convd_worth(g, O);
}

bool mtli_convd_dx_applies(const mtli_conv_geom *g, size_t O)
{
    return mtli_convd_applies(g, O) && g->sh == 1 &&
           (mtli_conv_route_choice == MTLI_CONV_DIRECT || g->W >= VL / 2);
}

size_t mtli_convd_work(const mtli_conv_geom *g, size_t O)
{
    if (g->sw != 1 || O == 0 || g->C == 0) /* sized whatever the route choice of the moment */
        return 0;
    convd_dims d;
    convd_dims_of(g, O, &d);
    size_t f = fwd_floats(g, O, &d), b = bwd_floats(g, O, &d, g->sh == 1);
    return f > b ? f : b;
}

/* ---- correlation in register tiles --------------------------------------------------------- */

typedef struct {
    const float *in;     /* first input row of output row 0 */
    size_t in_cs;        /* floats between input channels */
    size_t in_pitch;     /* floats between input rows */
    size_t Cin;          /* input channels */
    size_t rows;         /* output rows; output row r reads input rows r*row_step + i*dh */
    size_t row_step;
    size_t nz_lo, nz_hi; /* input rows outside [nz_lo, nz_hi) are zero: their taps are skipped */
    size_t cols;         /* output columns (tiles read up to ceil(cols, VL) columns) */
    size_t kh, kw, dh, dw;
    const float *wt;     /* [Cin*kh*kw][Opad]: the weights of tap k for every output */
    size_t Opad;         /* a multiple of the block, zeros past O */
    size_t O;            /* output channels */
    const float *bias;   /* [O] or NULL */
    float *out;          /* [O] planes of out_cs floats, rows of out_pitch */
    size_t out_cs, out_pitch;
} corr_args;

/* Taps i in [*i0, *i1) of output row r that read input rows in [nz_lo, nz_hi). */
static void tap_rows(const corr_args *a, size_t r, size_t *i0, size_t *i1)
{
    size_t top = r * a->row_step, lo = 0, hi = a->kh;
    if (top < a->nz_lo)
        lo = (a->nz_lo - top + a->dh - 1) / a->dh;
    if (top >= a->nz_hi)
        hi = 0;
    else if (top + (a->kh - 1) * a->dh >= a->nz_hi)
        hi = (a->nz_hi - top + a->dh - 1) / a->dh;
    if (lo > hi)
        lo = hi;
    *i0 = lo;
    *i1 = hi;
}

/* out[o][r][t] = bias[o] + sum_{c,i,j} wt[(c*kh+i)*kw+j][o] * in[c][r*row_step + i*dh][t + j*dw] */
#define CORR_DEF(OB)                                                                           \
    MTLI_VECTOR_CLONES                                                                         \
    static void corr_##OB(const corr_args *a)                                                  \
    {                                                                                          \
        for (size_t r = 0; r < a->rows; r++)                                                   \
            for (size_t t0 = 0; t0 < a->cols; t0 += VL) {                                      \
                const float *base = a->in + r * a->row_step * a->in_pitch + t0;                \
                size_t nv = a->cols - t0 < VL ? a->cols - t0 : VL;                             \
                size_t i0, i1;                                                                 \
                tap_rows(a, r, &i0, &i1);                                                      \
                for (size_t o0 = 0; o0 < a->O; o0 += OB) {                                     \
                    v16 acc[OB];                                                               \
                    UNROLL for (int q = 0; q < OB; q++) {                                             \
                        v16 z = {0};                                                           \
                        acc[q] = z + (a->bias && o0 + (size_t)q < a->O ? a->bias[o0 + q] : 0.0f); \
                    }                                                                          \
                    for (size_t c = 0; c < a->Cin; c++)                                        \
                        for (size_t i = i0; i < i1; i++) {                                     \
                            const float *row = base + c * a->in_cs + i * a->dh * a->in_pitch;  \
                            const float *w = a->wt + ((c * a->kh + i) * a->kw) * a->Opad + o0; \
                            for (size_t j = 0; j < a->kw; j++, w += a->Opad) {                 \
                                v16 xv;                                                        \
                                LD(xv, row + j * a->dw);                                       \
                                UNROLL for (int q = 0; q < OB; q++)                                   \
                                    acc[q] += xv * w[q];                                       \
                            }                                                                  \
                        }                                                                      \
                    size_t no = a->O - o0 < OB ? a->O - o0 : OB;                               \
                    float *dst = a->out + o0 * a->out_cs + r * a->out_pitch + t0;              \
                    for (size_t q = 0; q < no; q++) {                                          \
                        if (nv == VL) {                                                        \
                            ST(dst + q * a->out_cs, acc[q]);                                   \
                        } else {                                                               \
                            float tmp[VL];                                                     \
                            ST(tmp, acc[q]);                                                   \
                            memcpy(dst + q * a->out_cs, tmp, nv * sizeof(float));              \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
    }

CORR_DEF(4)
CORR_DEF(5)
CORR_DEF(6)
CORR_DEF(8)

static void corr(const corr_args *a, size_t ob)
{
    switch (ob) {
    case 4: corr_4(a); break;
    case 5: corr_5(a); break;
    case 6: corr_6(a); break;
    default: corr_8(a); break;
    }
}

/* ---- weight gradient ------------------------------------------------------------------------ */

typedef struct {
    const float *x;  /* nsamp zero-bordered inputs [C][Hp][Wq], x_ss floats apart */
    size_t x_ss, x_cs, x_pitch, C;
    const float *dy; /* nsamp [Opad][rows][Wt], dy_ss apart, zeros past Wo and past O */
    size_t dy_ss, dy_cs, Wt, rows, row_step, nsamp;
    size_t kh, kw, dh, dw, O;
    float *dW;       /* [O][C][kh][kw], accumulated */
} dw_args;

/* Sum of 16 lanes in a fixed order. */
static float hsum(const float *t)
{
    float s8[8];
    for (int k = 0; k < 8; k++)
        s8[k] = t[k] + t[k + 8];
    return ((s8[0] + s8[4]) + (s8[2] + s8[6])) + ((s8[1] + s8[5]) + (s8[3] + s8[7]));
}

/* dW[o][c][i][j] += sum_s sum_r sum_t dy_s[o][r][t] * x_s[c][r*row_step + i*dh][t + j*dw],
 * OB output channels x JB taps of one kernel row in registers, lanes summed once per group
 * of samples. */
#define DW_DEF(OB, JB)                                                                         \
    MTLI_VECTOR_CLONES                                                                         \
    static void dw_##OB##_##JB(const dw_args *a)                                               \
    {                                                                                          \
        for (size_t c = 0; c < a->C; c++)                                                      \
            for (size_t i = 0; i < a->kh; i++)                                                 \
                for (size_t o0 = 0; o0 < a->O; o0 += OB)                                       \
                    for (size_t j0 = 0; j0 < a->kw; j0 += JB) {                                \
                        v16 acc[OB][JB];                                                       \
                        UNROLL for (int q = 0; q < OB; q++)                                           \
                            UNROLL for (int p = 0; p < JB; p++) {                                     \
                                v16 z = {0};                                                   \
                                acc[q][p] = z;                                                 \
                            }                                                                  \
                        for (size_t s = 0; s < a->nsamp; s++)                                  \
                        for (size_t r = 0; r < a->rows; r++) {                                 \
                            const float *xr = a->x + s * a->x_ss + c * a->x_cs +               \
                                              (r * a->row_step + i * a->dh) * a->x_pitch +     \
                                              j0 * a->dw;                                      \
                            const float *dr = a->dy + s * a->dy_ss + o0 * a->dy_cs + r * a->Wt; \
                            for (size_t t0 = 0; t0 < a->Wt; t0 += VL) {                        \
                                v16 d[OB];                                                     \
                                UNROLL for (int q = 0; q < OB; q++)                                   \
                                    LD(d[q], dr + q * a->dy_cs + t0);                          \
                                UNROLL for (int p = 0; p < JB; p++) {                                 \
                                    v16 xv;                                                    \
                                    LD(xv, xr + t0 + (size_t)p * a->dw);                       \
                                    UNROLL for (int q = 0; q < OB; q++)                               \
                                        acc[q][p] += d[q] * xv;                                \
                                }                                                              \
                            }                                                                  \
                        }                                                                      \
                        size_t no = a->O - o0 < OB ? a->O - o0 : OB;                           \
                        size_t np = a->kw - j0 < JB ? a->kw - j0 : JB;                         \
                        float lanes[OB][JB][VL];                                               \
                        UNROLL for (int q = 0; q < OB; q++)                                    \
                            UNROLL for (int p = 0; p < JB; p++)                                \
                                ST(lanes[q][p], acc[q][p]);                                    \
                        for (size_t q = 0; q < no; q++)                                        \
                            for (size_t p = 0; p < np; p++)                                    \
                                a->dW[(((o0 + q) * a->C + c) * a->kh + i) * a->kw + j0 + p] += \
                                    hsum(lanes[q][p]);                                          \
                    }                                                                          \
    }

/* register blocks of at most 31 vectors: OB*JB sums, OB output-gradient rows, one input */
DW_DEF(4, 4)
DW_DEF(4, 5)
DW_DEF(5, 3)
DW_DEF(5, 5)
DW_DEF(6, 3)
DW_DEF(6, 4)
DW_DEF(8, 2)

/* The tap block of OB-channel blocks that pads a kernel row of kw taps least (ties: the
 * larger block). */
static size_t pick_jb(size_t ob, size_t kw)
{
    size_t a = ob == 4 ? 4 : 3, b = ob == 4 ? 5 : ob == 5 ? 5 : 4;
    if (ob == 8)
        return 2;
    return ceil_to(kw, b) <= ceil_to(kw, a) ? b : a;
}

static void dw(const dw_args *a, size_t ob)
{
    size_t jb = pick_jb(ob, a->kw);
    switch (ob * 8 + jb) {
    case 4 * 8 + 4: dw_4_4(a); break;
    case 4 * 8 + 5: dw_4_5(a); break;
    case 5 * 8 + 3: dw_5_3(a); break;
    case 5 * 8 + 5: dw_5_5(a); break;
    case 6 * 8 + 3: dw_6_3(a); break;
    case 6 * 8 + 4: dw_6_4(a); break;
    default: dw_8_2(a); break;
    }
}

/* ---- buffers -------------------------------------------------------------------------------- */

/* Copy sample x [C][H][W] into the zero-bordered [C][Hp][Wq] buffer (every border cell is
 * written, so the buffer needs no clearing between samples). */
static void pad_input(const mtli_conv_geom *g, const convd_dims *d, const float *x, float *xp)
{
    for (size_t c = 0; c < g->C; c++) {
        float *p = xp + c * d->Hp * d->Wq;
        memset(p, 0, g->ph * d->Wq * sizeof(float));
        for (size_t h = 0; h < g->H; h++) {
            float *row = p + (g->ph + h) * d->Wq;
            memset(row, 0, g->pw * sizeof(float));
            memcpy(row + g->pw, x + (c * g->H + h) * g->W, g->W * sizeof(float));
            memset(row + g->pw + g->W, 0, (d->Wq - g->pw - g->W) * sizeof(float));
        }
        memset(p + (g->ph + g->H) * d->Wq, 0, (d->Hp - g->ph - g->H) * d->Wq * sizeof(float));
    }
}

/* [rows][cols] planes of src (pitch src_pitch) into a zeroed [rows_out][pitch] frame at row r0,
 * column c0. */
static void frame(const float *src, size_t planes, size_t rows, size_t cols, size_t plane_out,
                  size_t rows_out, size_t pitch, size_t r0, size_t c0, float *dst)
{
    for (size_t o = 0; o < planes; o++) {
        float *p = dst + o * plane_out;
        memset(p, 0, rows_out * pitch * sizeof(float));
        for (size_t r = 0; r < rows; r++)
            memcpy(p + (r0 + r) * pitch + c0, src + (o * rows + r) * cols, cols * sizeof(float));
    }
}

void mtli_convd_forward(const mtli_conv_geom *g, size_t O, const float *W, const float *bias,
                        const float *x, size_t B, float *y, float *work)
{
    convd_dims d;
    convd_dims_of(g, O, &d);
    const size_t K = d.K, Opad = ceil_to(O, d.obf), F = g->C * g->H * g->W;
    const size_t N = g->Ho * g->Wo;
    float *wt = work, *xp = work + K * Opad;
    /* wt[k][o] = W[o][k] */
    memset(wt, 0, K * Opad * sizeof(float));
    for (size_t o = 0; o < O; o++)
        for (size_t k = 0; k < K; k++)
            wt[k * Opad + o] = W[o * K + k];
    corr_args a = {.in = xp, .in_cs = d.Hp * d.Wq, .in_pitch = d.Wq, .Cin = g->C,
                   .rows = g->Ho, .row_step = g->sh, .nz_lo = g->ph, .nz_hi = g->ph + g->H,
                   .cols = g->Wo, .kh = g->kh, .kw = g->kw,
                   .dh = g->dh, .dw = g->dw, .wt = wt, .Opad = Opad, .O = O, .bias = bias,
                   .out = NULL, .out_cs = N, .out_pitch = g->Wo};
    for (size_t b = 0; b < B; b++) {
        pad_input(g, &d, x + b * F, xp);
        a.out = y + b * O * N;
        corr(&a, d.obf);
    }
}

void mtli_convd_backward(const mtli_conv_geom *g, size_t O, const float *W, const float *x,
                         const float *dy, size_t B, float *dW, float *dx, float *work)
{
    convd_dims d;
    convd_dims_of(g, O, &d);
    const size_t F = g->C * g->H * g->W, N = g->Ho * g->Wo, khw = g->kh * g->kw;
    const size_t Opw = ceil_to(O, d.obw), Cpad = ceil_to(g->C, d.obx);
    const size_t xs = g->C * d.Hp * d.Wq, ds = Opw * g->Ho * d.Wt;
    float *xp = work, *dyp = xp + GROUP * xs;
    float *dyb = dyp + GROUP * ds, *wtf = dyb + O * d.Hb * d.Wb;
    if (dx) { /* wtf[(o*kh + i')*kw + j'][c] = W[o][c][kh-1-i'][kw-1-j'] */
        memset(wtf, 0, O * khw * Cpad * sizeof(float));
        for (size_t o = 0; o < O; o++)
            for (size_t c = 0; c < g->C; c++)
                for (size_t k = 0; k < khw; k++)
                    wtf[(o * khw + k) * Cpad + c] = W[(o * g->C + c) * khw + (khw - 1 - k)];
    }
    if (dW) /* lanes past Wo and rows past O stay zero */
        memset(dyp, 0, GROUP * ds * sizeof(float));
    dw_args wa = {.x = xp, .x_ss = xs, .x_cs = d.Hp * d.Wq, .x_pitch = d.Wq, .C = g->C,
                  .dy = dyp, .dy_ss = ds, .dy_cs = g->Ho * d.Wt, .Wt = d.Wt, .rows = g->Ho,
                  .row_step = g->sh, .nsamp = 0, .kh = g->kh, .kw = g->kw, .dh = g->dh,
                  .dw = g->dw, .O = O, .dW = dW};
    const size_t eh = (g->kh - 1) * g->dh, ew = (g->kw - 1) * g->dw;
    corr_args xa = {.in = dyb + g->ph * d.Wb + g->pw, .in_cs = d.Hb * d.Wb, .in_pitch = d.Wb,
                    .Cin = O, .rows = g->H, .row_step = 1, .nz_lo = eh > g->ph ? eh - g->ph : 0,
                    .nz_hi = eh + g->Ho - g->ph, .cols = g->W, .kh = g->kh,
                    .kw = g->kw, .dh = g->dh, .dw = g->dw, .wt = wtf, .Opad = Cpad, .O = g->C,
                    .bias = NULL, .out = NULL, .out_cs = g->H * g->W, .out_pitch = g->W};
    for (size_t b0 = 0; b0 < B; b0 += GROUP) {
        size_t ns = B - b0 < GROUP ? B - b0 : GROUP;
        if (dW) {
            for (size_t s = 0; s < ns; s++) {
                const float *src = dy + (b0 + s) * O * N;
                pad_input(g, &d, x + (b0 + s) * F, xp + s * xs);
                for (size_t o = 0; o < O; o++)
                    for (size_t r = 0; r < g->Ho; r++)
                        memcpy(dyp + s * ds + (o * g->Ho + r) * d.Wt, src + o * N + r * g->Wo,
                               g->Wo * sizeof(float));
            }
            wa.nsamp = ns;
            dw(&wa, d.obw);
        }
        if (dx)
            for (size_t s = 0; s < ns; s++) {
                frame(dy + (b0 + s) * O * N, O, g->Ho, g->Wo, d.Hb * d.Wb, d.Hb, d.Wb, eh, ew,
                      dyb);
                xa.out = dx + (b0 + s) * F;
                corr(&xa, d.obx);
            }
    }
}

#else /* no GNU C vector extensions: conv2d keeps the im2col route */

bool mtli_convd_available(void) { return false; }
bool mtli_convd_applies(const mtli_conv_geom *g, size_t O) { (void)g; (void)O; return false; }
bool mtli_convd_dx_applies(const mtli_conv_geom *g, size_t O) { (void)g; (void)O; return false; }
size_t mtli_convd_work(const mtli_conv_geom *g, size_t O) { (void)g; (void)O; return 0; }
void mtli_convd_forward(const mtli_conv_geom *g, size_t O, const float *W, const float *bias,
                        const float *x, size_t B, float *y, float *work)
{
    (void)g; (void)O; (void)W; (void)bias; (void)x; (void)B; (void)y; (void)work;
}
void mtli_convd_backward(const mtli_conv_geom *g, size_t O, const float *W, const float *x,
                         const float *dy, size_t B, float *dW, float *dx, float *work)
{
    (void)g; (void)O; (void)W; (void)x; (void)dy; (void)B; (void)dW; (void)dx; (void)work;
}

#endif
