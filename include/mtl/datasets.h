/* libmtl — builders of benchmark datasets.
 *
 * Multi-Fashion: the two-task image benchmark of Lin et al. (Pareto Multi-Task Learning,
 * NeurIPS 2019), built from Fashion-MNIST. Each 36x36 composite holds one item in the
 * top-left corner and one of a different class in the bottom-right corner, overlapping;
 * task 1 is the top-left item's class, task 2 the bottom-right one's (10 classes each).
 *
 * Construction, for each split (train: 60,000 source images, test: 10,000), from libmtl's
 * xoshiro256** generator seeded with `seed` (train) or `seed + 0x9E3779B97F4A7C15` (test,
 * modulo 2^64), so the same seed gives the same bytes on every machine. For source image i
 * (in file order) and k = 0, 1, composite 2*i + k is made of, drawn in this order:
 *   - the partner j: uniform over the split's images, redrawn until its class differs from
 *     image i's;
 *   - r1, c1, r2, c2: each uniform in 0..4;
 * image i is pasted with its top-left pixel at (row r1, column c1) of a zero canvas (so it
 * covers rows r1..r1+27), then image j at (4 + r2, 4 + c2) (rows 4+r2..31+r2 <= 35): the
 * partner's bottom-right corner lies 0-4 px from the canvas's, mirroring the top-left item.
 * Where they overlap each pixel is the maximum of the two. Values stay raw, 0..255.
 *
 * Files written to out_dir (created if missing; missing parent folders are created), as .npy:
 *   train_x.npy        float32 [120000, 1, 36, 36]
 *   train_y_left.npy   int32   [120000]  class of the top-left item (0..9)
 *   train_y_right.npy  int32   [120000]  class of the bottom-right item
 *   test_x.npy, test_y_left.npy, test_y_right.npy  the same for the 20,000 test composites
 * in that order, each atomically (mtl_npy_save): test_x.npy is written last, so its presence
 * means a complete build. Since 1.0. */
#ifndef MTL_DATASETS_H
#define MTL_DATASETS_H

#include <stdint.h>

#include "mtl/status.h"

MTL_BEGIN_DECLS

/* The seed our examples, configurations and published tables use. Since 1.0. */
#define MTL_MULTIFASHION_SEED 2019

/* The directory Debian's dataset-fashion-mnist package installs. Since 1.0. */
#define MTL_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Build Multi-Fashion (above) from the Fashion-MNIST IDX files in src_dir
 * (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte, each gzip-compressed with the suffix .gz or plain without it;
 * src_dir NULL: MTL_FASHION_MNIST_DIR) into out_dir. limit > 0 uses only the first `limit`
 * images of each split (partners are drawn among those too), for quick runs and tests;
 * limit 0 uses all. Nothing is kept; the full build needs about 0.7 GB of memory.
 * Errors: invalid argument (NULL out_dir, negative limit, a split whose images all have the
 * same class), io (a source file is missing: the message names the file and the Debian
 * package dataset-fashion-mnist to install; out_dir cannot be created or written), format
 * (a source file is not a gzip stream or an IDX file of the expected kind: corrupt or
 * truncated data, wrong magic number, images not 28x28, image and label counts that differ,
 * labels outside 0..9), out of memory. Since 1.0. */
MTL_API mtl_status mtl_multifashion_build(const char *src_dir, const char *out_dir,
                                          uint64_t seed, int64_t limit);

MTL_END_DECLS

#endif
