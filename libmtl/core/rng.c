#include <math.h>

#include "core/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void mtli_rng_seed(mtli_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mtli_rng_next(mtli_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float mtli_rng_uniform(mtli_rng *r) { return (float)(mtli_rng_next(r) >> 40) * 0x1.0p-24f; }

double mtli_rng_uniform_double(mtli_rng *r) { return (double)(mtli_rng_next(r) >> 11) * 0x1.0p-53; }

double mtli_rng_normal(mtli_rng *r)
{
    double u1 = 1.0 - mtli_rng_uniform_double(r); /* (0, 1] so log is finite */
    double u2 = mtli_rng_uniform_double(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t mtli_rng_below(mtli_rng *r, uint64_t n)
{
    uint64_t limit = -n % n; /* 2^64 mod n */
    for (;;) {
        uint64_t x = mtli_rng_next(r);
        if (x >= limit)
            return x % n;
    }
}
