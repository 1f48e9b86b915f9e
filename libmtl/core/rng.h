/* Internal: a small, fast, seedable random generator (xoshiro256** seeded by splitmix64).
 * Its whole state is four words, saved in checkpoints for bit-identical resumption. */
#ifndef MTLI_RNG_H
#define MTLI_RNG_H

#include <stdint.h>

typedef struct mtli_rng {
    uint64_t s[4];
} mtli_rng;

void mtli_rng_seed(mtli_rng *r, uint64_t seed);
uint64_t mtli_rng_next(mtli_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float mtli_rng_uniform(mtli_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double mtli_rng_uniform_double(mtli_rng *r);
/* Standard normal (Box–Muller, no cached second value so the state alone determines it). */
double mtli_rng_normal(mtli_rng *r);
/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint64_t mtli_rng_below(mtli_rng *r, uint64_t n);

#endif
