/* im2col / col2im for 2-d convolutions (see im2col.h). */
#include <stddef.h>
#include <string.h>

#include "kernels/im2col.h"

/* Output positions o in [lo, hi) whose input position o*s + off lies in [0, n); off is the
 * tap's offset (tap * dilation - padding). */
static void valid_range(ptrdiff_t off, size_t s, size_t n, size_t nout, size_t *lo, size_t *hi)
{
    size_t l = off >= 0 ? 0 : ((size_t)(-off) + s - 1) / s;
    ptrdiff_t lim = (ptrdiff_t)n - off; /* o*s < lim */
    size_t h = lim <= 0 ? 0 : ((size_t)lim + s - 1) / s;
    if (h > nout)
        h = nout;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

void mtli_im2col(const mtli_conv_geom *g, const float *x, float *col, size_t ldc)
{
    const size_t H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, sh = g->sh, sw = g->sw;
    for (size_t c = 0; c < g->C; c++) {
        const float *xc = x + c * H * W;
        for (size_t i = 0; i < g->kh; i++) {
            ptrdiff_t offh = (ptrdiff_t)(i * g->dh) - (ptrdiff_t)g->ph;
            size_t oh0, oh1;
            valid_range(offh, sh, H, Ho, &oh0, &oh1);
            for (size_t j = 0; j < g->kw; j++) {
                ptrdiff_t offw = (ptrdiff_t)(j * g->dw) - (ptrdiff_t)g->pw;
                size_t ow0, ow1;
                valid_range(offw, sw, W, Wo, &ow0, &ow1);
                float *dst = col + ((c * g->kh + i) * g->kw + j) * ldc;
                if (oh0)
                    memset(dst, 0, oh0 * Wo * sizeof(float));
                size_t n = ow1 - ow0;
                for (size_t oh = oh0; oh < oh1; oh++) {
                    const float *src = xc + (size_t)((ptrdiff_t)(oh * sh) + offh) * W +
                                       (size_t)((ptrdiff_t)(ow0 * sw) + offw);
                    float *d = dst + oh * Wo;
                    if (ow0)
                        memset(d, 0, ow0 * sizeof(float));
                    if (sw == 1) { /* short runs: an inline loop beats a memcpy call */
                        float *dd = d + ow0;
                        for (size_t k = 0; k < n; k++)
                            dd[k] = src[k];
                    } else {
                        float *dd = d + ow0;
                        for (size_t k = 0; k < n; k++)
                            dd[k] = src[k * sw];
                    }
                    if (ow1 < Wo)
                        memset(d + ow1, 0, (Wo - ow1) * sizeof(float));
                }
                if (oh1 < Ho)
                    memset(dst + oh1 * Wo, 0, (Ho - oh1) * Wo * sizeof(float));
            }
        }
    }
}

void mtli_col2im(const mtli_conv_geom *g, const float *col, size_t ldc, float *x)
{
    const size_t H = g->H, W = g->W, Wo = g->Wo, sh = g->sh, sw = g->sw;
    for (size_t c = 0; c < g->C; c++) {
        float *xc = x + c * H * W;
        for (size_t i = 0; i < g->kh; i++) {
            ptrdiff_t offh = (ptrdiff_t)(i * g->dh) - (ptrdiff_t)g->ph;
            size_t oh0, oh1;
            valid_range(offh, sh, H, g->Ho, &oh0, &oh1);
            for (size_t j = 0; j < g->kw; j++) {
                ptrdiff_t offw = (ptrdiff_t)(j * g->dw) - (ptrdiff_t)g->pw;
                size_t ow0, ow1;
                valid_range(offw, sw, W, Wo, &ow0, &ow1);
                const float *src = col + ((c * g->kh + i) * g->kw + j) * ldc;
                size_t n = ow1 - ow0;
                for (size_t oh = oh0; oh < oh1; oh++) {
                    float *d = xc + (size_t)((ptrdiff_t)(oh * sh) + offh) * W +
                               (size_t)((ptrdiff_t)(ow0 * sw) + offw);
                    const float *s = src + oh * Wo + ow0;
                    if (sw == 1) {
                        for (size_t k = 0; k < n; k++)
                            d[k] += s[k];
                    } else {
                        for (size_t k = 0; k < n; k++)
                            d[k * sw] += s[k];
                    }
                }
            }
        }
    }
}
