/* Internal: direct 2-d convolution for convolutions whose windows move one column at a time
 * (stride_w = 1), the common case of small feature maps and few channels where the im2col
 * lowering spends most of its time writing and re-reading the column matrix (81 times the
 * input for a 9x9 kernel) and BLIS runs far below its speed on products with 10 or 20 rows.
 *
 * One sample at a time, the input is copied into a zero-bordered buffer (so no tap needs a
 * bounds test) and each output row is computed in tiles of 16 columns held in vector
 * registers: for a block of 4 to 8 output channels, every tap adds (one weight) x (16 input
 * values), all in registers, so the inner loop is multiply-adds from L1. The weight gradient
 * keeps a block of output channels x taps of 16-lane sums in registers while it sweeps the
 * rows; the input gradient (stride 1 both ways) is the same correlation as the forward,
 * applied to the zero-bordered output gradient with the kernel flipped and its channel
 * roles exchanged.
 *
 * Compiled in AVX-512 / AVX2 / baseline versions chosen when the library loads (as the
 * layers' other vector kernels; see MTLI_VECTOR_CLONES); the register blocks are sized for
 * AVX-512, so the automatic choice takes them only on AVX-512 CPUs. Needs GNU C vector
 * extensions; without them mtli_convd_available() is false and conv2d keeps the im2col
 * route. Sums run in a fixed order: results are the same from run to run on one machine. */
#ifndef MTLI_CONV_DIRECT_H
#define MTLI_CONV_DIRECT_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/im2col.h"

/* Which route conv2d takes: AUTO (direct where it applies and is expected to be faster),
 * IM2COL (always the GEMM lowering), DIRECT (direct wherever it applies at all). Tests set it
 * to compare the two routes; the library never changes it. */
typedef enum { MTLI_CONV_AUTO, MTLI_CONV_IM2COL, MTLI_CONV_DIRECT } mtli_conv_route;
extern mtli_conv_route mtli_conv_route_choice;

/* true when the build has the direct kernels. */
bool mtli_convd_available(void);

/* Whether the direct forward (and weight gradient) applies to g with O output channels under
 * the current route choice; the input gradient additionally needs stride_h = 1
 * (mtli_convd_dx_applies). */
bool mtli_convd_applies(const mtli_conv_geom *g, size_t O);
bool mtli_convd_dx_applies(const mtli_conv_geom *g, size_t O);

/* Workspace floats of the direct forward and backward (the largest of the two), 0 when the
 * direct kernels cannot apply to g at all (stride_w != 1). */
size_t mtli_convd_work(const mtli_conv_geom *g, size_t O);

/* y[B][O][Ho][Wo] = conv(x[B][C][H][W], W[O][C][kh][kw]) + bias (bias may be NULL). */
void mtli_convd_forward(const mtli_conv_geom *g, size_t O, const float *W, const float *bias,
                        const float *x, size_t B, float *y, float *work);

/* dW[O][C][kh][kw] += the weight gradient of B samples (dW may be NULL), and, when dx is not
 * NULL, dx[B][C][H][W] = the input gradient (overwritten; needs mtli_convd_dx_applies). The
 * bias gradient is not computed here. */
void mtli_convd_backward(const mtli_conv_geom *g, size_t O, const float *W, const float *x,
                         const float *dy, size_t B, float *dW, float *dx, float *work);

#endif
