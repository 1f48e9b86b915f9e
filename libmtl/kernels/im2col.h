/* Internal: lowering of 2-d convolution windows onto matrices (im2col) and back (col2im).
 *
 * For one sample x [C, H, W] and a window of kh x kw taps with stride (sh, sw), zero padding
 * (ph, pw) and dilation (dh, dw), the column matrix has K = C*kh*kw rows and Ho*Wo columns:
 *
 *   col[(c*kh + i)*kw + j][oh*Wo + ow] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw]
 *
 * (0 where the position falls in the padding). Rows are in the order of a PyTorch weight
 * [out, C, kh, kw] flattened to [out, K], so a convolution is W[out, K] * col[K, Ho*Wo].
 * The row stride ldc lets several samples share one matrix side by side (sample b at column
 * offset b*Ho*Wo of a [K, nb*Ho*Wo] matrix).
 *
 * The loops compute the valid column range of each tap once and then copy or add whole runs
 * (plain loops the compiler vectorises): no per-element branches or calls. Sizes are validated by the layers;
 * these functions assume a consistent geometry. */
#ifndef MTLI_IM2COL_H
#define MTLI_IM2COL_H

#include <stddef.h>

typedef struct mtli_conv_geom {
    size_t C, H, W; /* input channels, height, width */
    size_t kh, kw;  /* taps */
    size_t sh, sw;  /* stride (>= 1) */
    size_t ph, pw;  /* zero padding on each side */
    size_t dh, dw;  /* dilation (>= 1) */
    size_t Ho, Wo;  /* output height, width: (H + 2ph - dh(kh-1) - 1)/sh + 1 */
} mtli_conv_geom;

/* Fill the K x Ho*Wo column matrix col (row stride ldc >= Ho*Wo) from x [C, H, W]. */
void mtli_im2col(const mtli_conv_geom *g, const float *x, float *col, size_t ldc);

/* The adjoint: x[C, H, W] += the column matrix scattered back onto the positions it was read
 * from (each tap's contribution added in a fixed order, so results are deterministic). x is
 * not cleared first. */
void mtli_col2im(const mtli_conv_geom *g, const float *col, size_t ldc, float *x);

#endif
