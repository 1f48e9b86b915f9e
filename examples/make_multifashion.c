/* make-multifashion: build the two-task Multi-Fashion benchmark (see include/mtl/datasets.h)
 * from Debian's dataset-fashion-mnist package.
 *
 *   make-multifashion OUT_DIR [--seed N] [--source DIR] [--limit N]
 *
 * Writes train_x.npy, train_y_left.npy, train_y_right.npy, test_x.npy, test_y_left.npy and
 * test_y_right.npy into OUT_DIR. The same seed gives the same files on every machine. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s OUT_DIR [--seed N] [--source DIR] [--limit N]\n"
            "  --seed N      random seed (default %d)\n"
            "  --source DIR  Fashion-MNIST IDX files (default %s)\n"
            "  --limit N     use only the first N images of each split (default: all)\n",
            prog, MTL_MULTIFASHION_SEED, MTL_FASHION_MNIST_DIR);
    return 2;
}

static int parse_u64(const char *s, uint64_t *v)
{
    if (s == NULL || *s == '\0' || *s == '-')
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return 0;
    *v = (uint64_t)x;
    return 1;
}

int main(int argc, char **argv)
{
    const char *out = NULL, *src = NULL;
    uint64_t seed = MTL_MULTIFASHION_SEED, limit = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0) {
            if (!parse_u64(i + 1 < argc ? argv[++i] : NULL, &seed))
                return usage(argv[0]);
        } else if (strcmp(argv[i], "--limit") == 0) {
            if (!parse_u64(i + 1 < argc ? argv[++i] : NULL, &limit) || limit > INT64_MAX)
                return usage(argv[0]);
        } else if (strcmp(argv[i], "--source") == 0) {
            if (i + 1 >= argc)
                return usage(argv[0]);
            src = argv[++i];
        } else if (argv[i][0] == '-' || out != NULL) {
            return usage(argv[0]);
        } else {
            out = argv[i];
        }
    }
    if (out == NULL)
        return usage(argv[0]);
    mtl_status st = mtl_multifashion_build(src, out, seed, (int64_t)limit);
    if (st != MTL_OK) {
        fprintf(stderr, "make-multifashion: %s: %s\n", mtl_status_string(st), mtl_last_error());
        return 1;
    }
    printf("Multi-Fashion (seed %" PRIu64 ") written to %s\n", seed, out);
    return 0;
}
