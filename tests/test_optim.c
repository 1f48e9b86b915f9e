/* Optimizers: update equations against an independent double-precision reference and PyTorch,
 * clipping, schedules, per-part learning rates, non-finite gradients, keys and their errors,
 * allocation failures. Optimizers are created over caller arrays, without a model. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mtl/mtl.h>
#include <mtl/optim.h>

#include "core/alloc.h"
#include "optim/optim.h"
#include "test_main.h"
#include "test_oom.h"

#define ck_assert_close(a, b, tol)                                                       \
    do {                                                                                 \
        double a_ = (a), b_ = (b);                                                       \
        ck_assert_msg(fabs(a_ - b_) <= (tol), "%s = %.17g, expected %.17g (tol %g)", #a, \
                      a_, b_, (double)(tol));                                            \
    } while (0)

#define ck_assert_error(expr, status, substr)                                           \
    do {                                                                                \
        ck_assert_status(expr, status);                                                 \
        ck_assert_msg(strstr(mtl_last_error(), (substr)) != NULL,                       \
                      "message '%s' lacks '%s'", mtl_last_error(), (substr));           \
    } while (0)

static mtl_optimizer *make(const char *kind, size_t n)
{
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtli_optimizer_create(&o, kind, n, NULL, 0, NULL));
    ck_assert_ptr_nonnull(o);
    return o;
}

/* ---- independent reference ------------------------------------------------------------ */

enum { N = 6, STEPS = 3 };

static const float p0[N] = {0.5f, -0.25f, 1.5f, -2.0f, 0.75f, 0.1f};
/* the last step's gradients are small, so amsgrad's running maximum matters */
static const float G[STEPS][N] = {{0.3f, -0.2f, 0.5f, 1.0f, -0.7f, 0.05f},
                                  {0.1f, 0.4f, -0.3f, 0.8f, -0.1f, -0.02f},
                                  {0.01f, -0.02f, 0.05f, 0.1f, 0.03f, 0.001f}};

typedef struct {
    double lr, weight_decay, momentum, dampening, nesterov, beta1, beta2, eps, amsgrad, alpha,
        centered, lr_decay, initial_accumulator_value;
} hp;

typedef struct {
    const char *key;
    double value;
} kv;

typedef struct {
    const char *kind;
    kv set[6];
} config;

static hp ref_defaults(const char *kind)
{
    hp h;
    memset(&h, 0, sizeof h);
    int sgd = !strcmp(kind, "sgd"), rms = !strcmp(kind, "rmsprop"), ada = !strcmp(kind, "adagrad");
    h.lr = (sgd || rms || ada) ? 0.01 : 0.001;
    h.weight_decay = !strcmp(kind, "adamw") ? 0.01 : 0.0;
    h.beta1 = 0.9;
    h.beta2 = 0.999;
    h.eps = ada ? 1e-10 : 1e-8;
    h.alpha = 0.99;
    return h;
}

static void ref_apply(hp *h, const char *key, double v)
{
    double *slot[] = {&h->lr, &h->weight_decay, &h->momentum, &h->dampening, &h->nesterov,
                      &h->beta1, &h->beta2, &h->eps, &h->amsgrad, &h->alpha, &h->centered,
                      &h->lr_decay, &h->initial_accumulator_value};
    const char *names[] = {"lr", "weight_decay", "momentum", "dampening", "nesterov",
                           "beta1", "beta2", "eps", "amsgrad", "alpha", "centered",
                           "lr_decay", "initial_accumulator_value"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(key, names[i]))
            *slot[i] = v;
}

typedef struct {
    double p[N], buf[N], m[N], v[N], vmax[N], sq[N], ga[N], sum[N];
    int t;
} ref_state;

/* The documented PyTorch 1.13 update rules, element by element, in double. */
static void ref_step(const char *kind, const hp *h, ref_state *s, const float *grad)
{
    s->t++;
    const int t = s->t;
    for (int i = 0; i < N; i++) {
        double g = grad[i], p = s->p[i];
        if (!strcmp(kind, "sgd")) {
            g += h->weight_decay * p;
            double d = g;
            if (h->momentum != 0) {
                s->buf[i] = t == 1 ? g : h->momentum * s->buf[i] + (1 - h->dampening) * g;
                d = h->nesterov ? g + h->momentum * s->buf[i] : s->buf[i];
            }
            p -= h->lr * d;
        } else if (!strcmp(kind, "adam") || !strcmp(kind, "adamw")) {
            if (!strcmp(kind, "adamw"))
                p *= 1 - h->lr * h->weight_decay;
            else
                g += h->weight_decay * p;
            s->m[i] = h->beta1 * s->m[i] + (1 - h->beta1) * g;
            s->v[i] = h->beta2 * s->v[i] + (1 - h->beta2) * g * g;
            double vhat = s->v[i];
            if (h->amsgrad) {
                s->vmax[i] = fmax(s->vmax[i], s->v[i]);
                vhat = s->vmax[i];
            }
            double bc1 = 1 - pow(h->beta1, t), bc2 = 1 - pow(h->beta2, t);
            p -= h->lr / bc1 * s->m[i] / (sqrt(vhat) / sqrt(bc2) + h->eps);
        } else if (!strcmp(kind, "rmsprop")) {
            g += h->weight_decay * p;
            s->sq[i] = h->alpha * s->sq[i] + (1 - h->alpha) * g * g;
            double avg;
            if (h->centered) {
                s->ga[i] = h->alpha * s->ga[i] + (1 - h->alpha) * g;
                avg = sqrt(s->sq[i] - s->ga[i] * s->ga[i]);
            } else {
                avg = sqrt(s->sq[i]);
            }
            avg += h->eps;
            if (h->momentum > 0) {
                s->buf[i] = h->momentum * s->buf[i] + g / avg;
                p -= h->lr * s->buf[i];
            } else {
                p -= h->lr * g / avg;
            }
        } else { /* adagrad */
            g += h->weight_decay * p;
            if (t == 1)
                s->sum[i] = h->initial_accumulator_value;
            double clr = h->lr / (1 + (t - 1) * h->lr_decay);
            s->sum[i] += g * g;
            p -= clr * g / (sqrt(s->sum[i]) + h->eps);
        }
        s->p[i] = p;
    }
}

/* Run STEPS updates with the optimizer and with the reference; compare after every step.
 * The library works in float32 (as PyTorch does for float parameters); tolerance
 * 2e-6 + 2e-6 * |reference|. Returns the final float parameters in out (may be NULL). */
static void run_against_reference(const config *c, int index, float *out)
{
    mtl_optimizer *o = make(c->kind, N);
    hp h = ref_defaults(c->kind);
    for (int k = 0; k < 6 && c->set[k].key; k++) {
        ck_assert_ok(mtl_optimizer_set_double(o, c->set[k].key, c->set[k].value));
        ref_apply(&h, c->set[k].key, c->set[k].value);
    }
    ref_state s;
    memset(&s, 0, sizeof s);
    float p[N], g[N];
    for (int i = 0; i < N; i++) {
        p[i] = p0[i];
        s.p[i] = p0[i];
    }
    for (int step = 0; step < STEPS; step++) {
        memcpy(g, G[step], sizeof g);
        ck_assert_ok(mtli_optimizer_update(o, p, g));
        ref_step(c->kind, &h, &s, G[step]);
        for (int i = 0; i < N; i++)
            ck_assert_msg(fabs(p[i] - s.p[i]) <= 2e-6 + 2e-6 * fabs(s.p[i]),
                          "config %d (%s): step %d, param %d = %.9g, reference %.9g", index,
                          c->kind, step + 1, i, (double)p[i], s.p[i]);
    }
    ck_assert_int_eq(mtl_optimizer_step_count(o), STEPS);
    if (out)
        memcpy(out, p, sizeof p);
    mtl_optimizer_free(o);
}

static const config configs[] = {
    {"sgd", {{"lr", 0.1}}},
    {"sgd", {{"lr", 0.1}, {"weight_decay", 0.1}}},
    {"sgd", {{"lr", 0.1}, {"momentum", 0.9}}},
    {"sgd", {{"lr", 0.1}, {"momentum", 0.9}, {"dampening", 0.3}}},
    {"sgd", {{"lr", 0.1}, {"momentum", 0.9}, {"nesterov", 1}}},
    {"sgd", {{"lr", 0.05}, {"momentum", 0.5}, {"weight_decay", 0.01}, {"nesterov", 1}}},
    {"adam", {{"lr", 0.01}}},
    {"adam", {{"lr", 0.1}, {"amsgrad", 1}}},
    {"adam", {{"lr", 0.1}, {"weight_decay", 0.1}}},
    {"adam", {{"lr", 0.1}, {"weight_decay", 0.1}, {"amsgrad", 1}, {"beta1", 0.8}, {"beta2", 0.95},
              {"eps", 1e-3}}},
    {"adamw", {{"lr", 0.01}}},
    {"adamw", {{"lr", 0.1}, {"weight_decay", 0.1}, {"amsgrad", 1}}},
    {"adamw", {{"lr", 0.1}, {"weight_decay", 0}, {"beta1", 0}, {"beta2", 0.5}}},
    {"rmsprop", {{"lr", 0.01}}},
    {"rmsprop", {{"lr", 0.01}, {"momentum", 0.9}}},
    {"rmsprop", {{"lr", 0.01}, {"centered", 1}}},
    {"rmsprop", {{"lr", 0.01}, {"centered", 1}, {"momentum", 0.9}, {"weight_decay", 0.1}}},
    {"rmsprop", {{"lr", 0.02}, {"alpha", 0.9}, {"eps", 1e-3}}},
    {"adagrad", {{"lr", 0.1}}},
    {"adagrad", {{"lr", 0.1}, {"lr_decay", 0.1}}},
    {"adagrad", {{"lr", 0.1}, {"initial_accumulator_value", 0.5}}},
    {"adagrad", {{"lr", 0.1}, {"weight_decay", 0.1}, {"eps", 1e-3}}},
};

START_TEST(updates_match_reference_formulas)
{
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++)
        run_against_reference(&configs[k], (int)k, NULL);
}
END_TEST

/* Parameters after the same three steps computed by PyTorch 1.13 in float32:
 *   p = torch.tensor(p0, requires_grad=True); opt = torch.optim.X([p], foreach=False, ...)
 *   for s in range(3): p.grad = torch.tensor(G[s]); opt.step()                            */
START_TEST(updates_match_pytorch)
{
    static const config cfg[6] = {
        {"sgd", {{"lr", 0.1}, {"momentum", 0.9}, {"nesterov", 1}, {"weight_decay", 0.01}}},
        {"sgd", {{"lr", 0.1}, {"momentum", 0.9}, {"dampening", 0.3}, {"weight_decay", 0.01}}},
        {"adam", {{"lr", 0.1}, {"amsgrad", 1}, {"weight_decay", 0.1}}},
        {"adamw", {{"lr", 0.1}, {"amsgrad", 1}, {"weight_decay", 0.1}}},
        {"rmsprop", {{"lr", 0.01}, {"momentum", 0.9}, {"centered", 1}, {"weight_decay", 0.1}}},
        {"adagrad",
         {{"lr", 0.1}, {"lr_decay", 0.1}, {"initial_accumulator_value", 0.5},
          {"weight_decay", 0.1}}},
    };
    static const double torch_p[6][N] = {
        {0.364157289, -0.283872634, 1.38820362, -2.56231189, 1.00534713, 0.0872757286},
        {0.402416259, -0.246449366, 1.39391303, -2.37462115, 0.94715625, 0.088578634},
        {0.234174639, -0.198483706, 1.30046618, -2.26573348, 0.958700657, -0.0678921416},
        {0.231583416, -0.206224918, 1.31826913, -2.21755981, 0.958475649, -0.0630838722},
        {0.146190122, -0.134222522, 1.24662149, -2.37392592, 1.0071969, -0.103937857},
        {0.433558047, -0.256339729, 1.43062103, -2.11143327, 0.808194816, 0.0917258114},
    };
    for (int k = 0; k < 6; k++) {
        float p[N];
        run_against_reference(&cfg[k], k, p);
        for (int i = 0; i < N; i++)
            ck_assert_msg(fabs(p[i] - torch_p[k][i]) <= 1e-6,
                          "%s: param %d = %.9g, PyTorch %.9g", cfg[k].kind, i, (double)p[i],
                          torch_p[k][i]);
    }
}
END_TEST

START_TEST(sgd_by_hand)
{
    /* lr 0.5, momentum 0.5, dampening 0.5: buf1 = g1 = 2 -> p = 1 - 1 = 0;
     * buf2 = 0.5*2 + 0.5*4 = 3 -> p = 0 - 1.5 = -1.5 */
    mtl_optimizer *o = make("sgd", 1);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.5));
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.5));
    ck_assert_ok(mtl_optimizer_set_double(o, "dampening", 0.5));
    float p = 1.0f, g = 2.0f;
    ck_assert_ok(mtli_optimizer_update(o, &p, &g));
    ck_assert_close(p, 0.0, 0);
    g = 4.0f;
    ck_assert_ok(mtli_optimizer_update(o, &p, &g));
    ck_assert_close(p, -1.5, 0);
    ck_assert_close(mtli_optimizer_buffer(o, 0)[0], 3.0, 0);
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(adam_first_step_is_lr_times_sign)
{
    /* bias correction makes the first Adam step lr * g / (|g| + eps*...) ~ lr * sign(g) */
    mtl_optimizer *o = make("adam", 3);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.01));
    float p[3] = {0, 0, 0}, g[3] = {5, -0.001f, 0};
    ck_assert_ok(mtli_optimizer_update(o, p, g));
    ck_assert_close(p[0], -0.01, 1e-8);
    ck_assert_close(p[1], 0.01, 1e-6);
    ck_assert_close(p[2], 0.0, 0);
    mtl_optimizer_free(o);
}
END_TEST

/* ---- clipping -------------------------------------------------------------------------- */

START_TEST(clip_by_value_then_norm)
{
    mtl_optimizer *o = make("sgd", 3);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 1.0));
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_value", 1.0));
    float p[3] = {0, 0, 0}, g[3] = {3, -5, 0.5f};
    ck_assert_ok(mtli_optimizer_update(o, p, g));
    /* clamped in place, then applied */
    ck_assert_close(g[0], 1.0, 0);
    ck_assert_close(g[1], -1.0, 0);
    ck_assert_close(g[2], 0.5, 0);
    ck_assert_close(p[0], -1.0, 0);
    ck_assert_close(p[1], 1.0, 0);
    ck_assert_close(p[2], -0.5, 0);
    mtl_optimizer_free(o);

    /* norm 5 > 1: scale 1 / (5 + 1e-6) as torch.nn.utils.clip_grad_norm_ */
    o = make("sgd", 2);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 1.0));
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_norm", 1.0));
    float q[2] = {0, 0}, h[2] = {3, 4};
    ck_assert_ok(mtli_optimizer_update(o, q, h));
    ck_assert_close(h[0], 3.0 / (5.0 + 1e-6), 1e-7);
    ck_assert_close(h[1], 4.0 / (5.0 + 1e-6), 1e-7);
    ck_assert_close(q[1], -4.0 / (5.0 + 1e-6), 1e-7);
    /* norm below the limit: untouched */
    float h2[2] = {0.3f, 0.4f};
    ck_assert_ok(mtli_optimizer_update(o, q, h2));
    ck_assert(h2[0] == 0.3f && h2[1] == 0.4f);

    /* both: clamp to 2 first ([2, -2, 0]), then the norm sqrt(8) is clipped to 1 */
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_value", 2.0));
    mtl_optimizer_free(o);
    o = make("sgd", 3);
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_value", 2.0));
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_norm", 1.0));
    float r[3] = {0, 0, 0}, k[3] = {3, -4, 0};
    ck_assert_ok(mtli_optimizer_update(o, r, k));
    ck_assert_close(k[0], 2.0 / (sqrt(8.0) + 1e-6), 1e-7);
    ck_assert_close(k[1], -2.0 / (sqrt(8.0) + 1e-6), 1e-7);
    ck_assert_close(k[2], 0.0, 0);
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(l2_norm_in_double)
{
    float g[5] = {3, 4, 0, 0, 12};
    ck_assert_close(mtli_l2_norm(g, 2), 5.0, 0);
    ck_assert_close(mtli_l2_norm(g, 5), 13.0, 0);
    ck_assert_close(mtli_l2_norm(g, 0), 0.0, 0);
    float big[3] = {3e30f, 4e30f, 0};
    ck_assert_close(mtli_l2_norm(big, 3) / 5e30, 1.0, 1e-7); /* no float overflow */
    float bad[6] = {1, 2, 3, 4, NAN, 5};
    ck_assert(isnan(mtli_l2_norm(bad, 6)));
    bad[4] = INFINITY;
    ck_assert(isinf(mtli_l2_norm(bad, 6)));
}
END_TEST

/* ---- non-finite gradients ---------------------------------------------------------------- */

START_TEST(non_finite_gradient_changes_nothing)
{
    const char *kinds[5] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
    for (int k = 0; k < 5; k++) {
        mtl_optimizer *o = make(kinds[k], N);
        if (k == 0 || k == 3)
            ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.9));
        ck_assert_ok(mtl_optimizer_set_double(o, "clip_value", 0.5)); /* must not hide NaN */
        ck_assert_ok(mtl_optimizer_set_double(o, "clip_norm", 0.1));
        float p[N], g[N];
        memcpy(p, p0, sizeof p);
        memcpy(g, G[0], sizeof g);
        ck_assert_ok(mtli_optimizer_update(o, p, g));
        for (int bad = 0; bad < 2; bad++) {
            float p_before[N], g_bad[N], g_before[N];
            memcpy(p_before, p, sizeof p);
            memcpy(g_bad, G[1], sizeof g_bad);
            g_bad[3] = bad ? -INFINITY : NAN;
            memcpy(g_before, g_bad, sizeof g_bad);
            int nb = mtli_optimizer_num_buffers(o);
            float saved[3][N];
            for (int b = 0; b < nb; b++)
                memcpy(saved[b], mtli_optimizer_buffer(o, b), sizeof saved[b]);
            double lr = mtl_optimizer_current_lr(o);
            ck_assert_error(mtli_optimizer_update(o, p, g_bad), MTL_ERR_NUMERIC,
                            bad ? "gradient 3 is -inf" : "gradient 3 is nan");
            ck_assert(memcmp(p, p_before, sizeof p) == 0);
            ck_assert(memcmp(g_bad, g_before, sizeof g_bad) == 0);
            for (int b = 0; b < nb; b++)
                ck_assert(memcmp(saved[b], mtli_optimizer_buffer(o, b), sizeof saved[b]) == 0);
            ck_assert_int_eq(mtl_optimizer_step_count(o), 1);
            ck_assert(mtl_optimizer_current_lr(o) == lr);
        }
        mtl_optimizer_free(o);
    }
}
END_TEST

/* ---- schedules --------------------------------------------------------------------------- */

static double lr_at(mtl_optimizer *o, int64_t step)
{
    *mtli_optimizer_step_ptr(o) = step;
    return mtl_optimizer_current_lr(o);
}

START_TEST(schedules_at_several_ticks)
{
    mtl_optimizer *o = make("sgd", 1);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 1.0));
    ck_assert_close(lr_at(o, 0), 1.0, 0);
    ck_assert_close(lr_at(o, 1000), 1.0, 0);

    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "step"));
    ck_assert_ok(mtl_optimizer_set_double(o, "gamma", 0.5));
    ck_assert_ok(mtl_optimizer_set_int(o, "step_size", 3));
    ck_assert_close(lr_at(o, 2), 1.0, 0);
    ck_assert_close(lr_at(o, 3), 0.5, 0);
    ck_assert_close(lr_at(o, 6), 0.25, 0);

    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "multistep"));
    ck_assert_ok(mtl_optimizer_set_double(o, "gamma", 0.1));
    ck_assert_ok(mtl_optimizer_set_string(o, "milestones", " 2, 5 "));
    ck_assert_str_eq(mtli_optimizer_get_string(o, "milestones"), " 2, 5 ");
    ck_assert_close(lr_at(o, 1), 1.0, 0);
    ck_assert_close(lr_at(o, 2), 0.1, 1e-15);
    ck_assert_close(lr_at(o, 4), 0.1, 1e-15);
    ck_assert_close(lr_at(o, 5), 0.01, 1e-15);
    ck_assert_close(lr_at(o, 500), 0.01, 1e-15);

    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "exponential"));
    ck_assert_ok(mtl_optimizer_set_double(o, "gamma", 0.9));
    ck_assert_close(lr_at(o, 4), 0.9 * 0.9 * 0.9 * 0.9, 1e-15);

    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "cosine"));
    ck_assert_ok(mtl_optimizer_set_int(o, "total_steps", 10));
    ck_assert_ok(mtl_optimizer_set_double(o, "min_lr", 0.1));
    ck_assert_close(lr_at(o, 0), 1.0, 1e-15);
    ck_assert_close(lr_at(o, 5), 0.55, 1e-15);
    ck_assert_close(lr_at(o, 2), 0.1 + 0.9 * (1 + cos(acos(-1.0) * 0.2)) / 2, 1e-15);
    ck_assert_close(lr_at(o, 10), 0.1, 1e-15);
    ck_assert_close(lr_at(o, 25), 0.1, 1e-15); /* clamped at T */

    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "linear"));
    ck_assert_ok(mtl_optimizer_set_int(o, "total_steps", 4));
    ck_assert_ok(mtl_optimizer_set_double(o, "min_lr", 0.2));
    ck_assert_close(lr_at(o, 1), 0.8, 1e-15);
    ck_assert_close(lr_at(o, 4), 0.2, 1e-15);
    ck_assert_close(lr_at(o, 9), 0.2, 1e-15);
    ck_assert_str_eq(mtli_optimizer_get_string(o, "schedule"), "linear");
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(warmup_and_schedule_interval)
{
    /* lr(t) = (s0 + (1-s0) t/W) * S(0) for t < W, then S(t - W) */
    mtl_optimizer *o = make("adam", 1);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 1.0));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "cosine"));
    ck_assert_ok(mtl_optimizer_set_int(o, "total_steps", 10));
    ck_assert_ok(mtl_optimizer_set_double(o, "min_lr", 0.1));
    ck_assert_ok(mtl_optimizer_set_int(o, "warmup_steps", 4));
    ck_assert_ok(mtl_optimizer_set_double(o, "warmup_start_factor", 0.2));
    ck_assert_close(lr_at(o, 0), 0.2, 1e-15);
    ck_assert_close(lr_at(o, 2), 0.6, 1e-15);
    ck_assert_close(lr_at(o, 3), 0.8, 1e-15);
    ck_assert_close(lr_at(o, 4), 1.0, 1e-15);
    ck_assert_close(lr_at(o, 9), 0.55, 1e-15);
    ck_assert_close(lr_at(o, 14), 0.1, 1e-15);
    /* three optimizer steps per tick */
    ck_assert_ok(mtl_optimizer_set_int(o, "schedule_interval", 3));
    ck_assert_close(lr_at(o, 2), 0.2, 1e-15);
    ck_assert_close(lr_at(o, 6), 0.6, 1e-15);
    ck_assert_close(lr_at(o, 8), 0.6, 1e-15);
    ck_assert_close(lr_at(o, 27), 0.55, 1e-15);
    /* multistep milestones count ticks after the warm-up */
    ck_assert_ok(mtl_optimizer_set_int(o, "schedule_interval", 1));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "multistep"));
    ck_assert_ok(mtl_optimizer_set_string(o, "milestones", "1"));
    ck_assert_close(lr_at(o, 4), 1.0, 1e-15);
    ck_assert_close(lr_at(o, 5), 0.1, 1e-15);
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(steps_use_the_scheduled_lr)
{
    /* sgd, lr 1, step decay by 0.5 every 2 ticks, one tick per step, warm-up from 0 over 2:
     * lrs 0, 0.5, 1, 1, 0.5, 0.5; gradient 1 each step */
    mtl_optimizer *o = make("sgd", 1);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 1.0));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "step"));
    ck_assert_ok(mtl_optimizer_set_double(o, "gamma", 0.5));
    ck_assert_ok(mtl_optimizer_set_int(o, "step_size", 2));
    ck_assert_ok(mtl_optimizer_set_int(o, "warmup_steps", 2));
    const double lrs[6] = {0, 0.5, 1, 1, 0.5, 0.5};
    float p = 0;
    double want = 0;
    for (int s = 0; s < 6; s++) {
        ck_assert_close(mtl_optimizer_current_lr(o), lrs[s], 1e-15);
        float g = 1;
        ck_assert_ok(mtli_optimizer_update(o, &p, &g));
        want -= lrs[s];
        ck_assert_close(p, want, 1e-7);
        ck_assert_int_eq(mtl_optimizer_step_count(o), s + 1);
    }
    mtl_optimizer_free(o);
}
END_TEST

/* ---- parts ------------------------------------------------------------------------------- */

START_TEST(per_part_learning_rates)
{
    /* trunk [0,4), age [4,6), digit [6,9), an unnamed gap [9,10) at multiplier 1 */
    const mtli_part parts[3] = {{"trunk", 0, 4}, {"age", 4, 2}, {"digit", 6, 3}};
    mtl_optimizer *o = NULL;
    int dummy;
    mtl_model *model = (mtl_model *)(void *)&dummy;
    ck_assert_ok(mtli_optimizer_create(&o, "sgd", 10, parts, 3, model));
    ck_assert_ptr_eq(mtli_optimizer_model(o), model);
    ck_assert_int_eq(mtli_optimizer_num_parts(o), 3);
    ck_assert_ok(mtl_optimizer_set_double(o, "lr", 0.1));
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "heads.age", 0.0));
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "trunk", 2.0));
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "digit", 0.5));
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 0), 2.0, 0);
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 1), 0.0, 0);
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 2), 0.5, 0);
    ck_assert_ptr_null(mtli_optimizer_part_scale_ptr(o, 3));
    float p[10], g[10];
    for (int i = 0; i < 10; i++) {
        p[i] = 1.0f + (float)i;
        g[i] = 1.0f;
    }
    ck_assert_ok(mtli_optimizer_update(o, p, g));
    const double move[10] = {0.2, 0.2, 0.2, 0.2, 0, 0, 0.05, 0.05, 0.05, 0.1};
    for (int i = 0; i < 10; i++)
        ck_assert_close(p[i], 1.0 + i - move[i], 1e-6);
    ck_assert(p[4] == 5.0f && p[5] == 6.0f); /* frozen: exactly unchanged */
    /* "heads": every part but the trunk */
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "heads", 3.0));
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 0), 2.0, 0);
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 1), 3.0, 0);
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 2), 3.0, 0);
    ck_assert_error(mtl_optimizer_set_lr_scale(o, "color", 1.0), MTL_ERR_NOT_FOUND,
                    "no part 'color'");
    ck_assert_error(mtl_optimizer_set_lr_scale(o, "heads.trunk", 1.0), MTL_ERR_NOT_FOUND,
                    "heads.trunk");
    ck_assert_error(mtl_optimizer_set_lr_scale(o, "age", -1.0), MTL_ERR_RANGE, "scale -1");
    ck_assert_status(mtl_optimizer_set_lr_scale(o, "age", NAN), MTL_ERR_RANGE);
    ck_assert_status(mtl_optimizer_set_lr_scale(o, NULL, 1.0), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_close(*mtli_optimizer_part_scale_ptr(o, 1), 3.0, 0);
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(frozen_part_keeps_params_but_moments_advance)
{
    const mtli_part parts[2] = {{"trunk", 0, 3}, {"task", 3, 3}};
    mtl_optimizer *o = NULL;
    ck_assert_ok(mtli_optimizer_create(&o, "adamw", N, parts, 2, NULL));
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "trunk", 0.0));
    float p[N], g[N];
    memcpy(p, p0, sizeof p);
    for (int s = 0; s < STEPS; s++) {
        memcpy(g, G[s], sizeof g);
        ck_assert_ok(mtli_optimizer_update(o, p, g));
    }
    ck_assert(memcmp(p, p0, 3 * sizeof(float)) == 0);
    for (int i = 3; i < N; i++)
        ck_assert(p[i] != p0[i]);
    ck_assert(mtli_optimizer_buffer(o, 0)[0] != 0.0f);
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(create_validates_kind_and_parts)
{
    mtl_optimizer *o = (mtl_optimizer *)(void *)&o;
    ck_assert_error(mtli_optimizer_create(&o, "adadelta", 4, NULL, 0, NULL),
                    MTL_ERR_INVALID_ARGUMENT, "unknown optimizer 'adadelta'");
    ck_assert_ptr_null(o);
    ck_assert_status(mtli_optimizer_create(NULL, "sgd", 4, NULL, 0, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtli_optimizer_create(&o, NULL, 4, NULL, 0, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtli_optimizer_create(&o, "sgd", 4, NULL, 2, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    const mtli_part overlap[2] = {{"trunk", 0, 3}, {"a", 2, 2}};
    ck_assert_error(mtli_optimizer_create(&o, "sgd", 4, overlap, 2, NULL),
                    MTL_ERR_INVALID_ARGUMENT, "must not overlap");
    const mtli_part beyond[1] = {{"trunk", 2, 3}};
    ck_assert_error(mtli_optimizer_create(&o, "sgd", 4, beyond, 1, NULL),
                    MTL_ERR_INVALID_ARGUMENT, "beyond the 4 parameters");
    const mtli_part dup[2] = {{"a", 0, 1}, {"a", 1, 1}};
    ck_assert_error(mtli_optimizer_create(&o, "sgd", 4, dup, 2, NULL), MTL_ERR_INVALID_ARGUMENT,
                    "two parts are named 'a'");
    const mtli_part unnamed[1] = {{NULL, 0, 1}};
    ck_assert_status(mtli_optimizer_create(&o, "sgd", 4, unnamed, 1, NULL),
                     MTL_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(o);
    /* part names are copied */
    char name[8] = "head";
    const mtli_part one[1] = {{name, 1, 2}};
    ck_assert_ok(mtli_optimizer_create(&o, "sgd", 4, one, 1, NULL));
    strcpy(name, "xxxx");
    ck_assert_ok(mtl_optimizer_set_lr_scale(o, "heads.head", 0.5));
    ck_assert_str_eq(mtl_optimizer_kind(o), "sgd");
    ck_assert_uint_eq(mtli_optimizer_nparams(o), 4);
    mtl_optimizer_free(o);
}
END_TEST

/* ---- keys -------------------------------------------------------------------------------- */

START_TEST(keys_defaults_and_listing)
{
    const char *kinds[5] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
    const double lr_def[5] = {0.01, 0.001, 0.001, 0.01, 0.01};
    const double wd_def[5] = {0, 0, 0.01, 0, 0};
    for (int k = 0; k < 5; k++) {
        mtl_optimizer *o = make(kinds[k], 2);
        double v;
        ck_assert_ok(mtl_optimizer_key_default(o, "lr", &v));
        ck_assert_close(v, lr_def[k], 0);
        ck_assert_ok(mtl_optimizer_get_double(o, "lr", &v));
        ck_assert_close(v, lr_def[k], 0);
        ck_assert_ok(mtl_optimizer_get_double(o, "weight_decay", &v));
        ck_assert_close(v, wd_def[k], 0);
        int n = 0, has_momentum = 0, has_eps = 0;
        for (const char *key; (key = mtl_optimizer_key_name(o, n)) != NULL; n++) {
            mtl_status st = mtl_optimizer_key_default(o, key, &v);
            int is_string = !strcmp(key, "schedule") || !strcmp(key, "milestones");
            ck_assert_status(st, is_string ? MTL_ERR_UNSUPPORTED : MTL_OK);
            if (!is_string) {
                double cur;
                ck_assert_ok(mtl_optimizer_get_double(o, key, &cur));
                ck_assert_msg(cur == v, "%s.%s: value %g, default %g", kinds[k], key, cur, v);
            }
            has_momentum |= !strcmp(key, "momentum");
            has_eps |= !strcmp(key, "eps");
        }
        ck_assert_int_eq(has_momentum, k == 0 || k == 3);
        ck_assert_int_eq(has_eps, k != 0);
        ck_assert_ptr_null(mtl_optimizer_key_name(o, -1));
        ck_assert_ptr_null(mtl_optimizer_key_name(o, n + 5));
        ck_assert_str_eq(mtl_optimizer_kind(o), kinds[k]);
        mtl_optimizer_free(o);
    }
    mtl_optimizer *o = make("adagrad", 1);
    double v;
    ck_assert_ok(mtl_optimizer_key_default(o, "eps", &v));
    ck_assert_close(v, 1e-10, 0);
    ck_assert_ok(mtl_optimizer_get_double(o, "total_steps", &v));
    ck_assert_close(v, 0, 0);
    ck_assert_ok(mtl_optimizer_set_int(o, "lr", 2)); /* integer into a real key */
    ck_assert_ok(mtl_optimizer_get_double(o, "lr", &v));
    ck_assert_close(v, 2.0, 0);
    ck_assert_ok(mtl_optimizer_set_double(o, "warmup_steps", 7.0)); /* integral double */
    ck_assert_ok(mtl_optimizer_get_double(o, "warmup_steps", &v));
    ck_assert_close(v, 7.0, 0);
    ck_assert_str_eq(mtli_optimizer_get_string(o, "schedule"), "constant");
    ck_assert_str_eq(mtli_optimizer_get_string(o, "milestones"), "");
    ck_assert_ptr_null(mtli_optimizer_get_string(o, "lr"));
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(key_errors_name_key_kind_and_value)
{
    mtl_optimizer *o = make("adam", 2);
    ck_assert_error(mtl_optimizer_set_double(o, "momentum", 0.9), MTL_ERR_INVALID_ARGUMENT,
                    "optimizer 'adam' does not use key 'momentum'");
    ck_assert_error(mtl_optimizer_set_double(o, "colour", 1), MTL_ERR_INVALID_ARGUMENT,
                    "optimizer 'adam': unknown key 'colour'");
    ck_assert_error(mtl_optimizer_set_double(o, "lr", 0), MTL_ERR_RANGE,
                    "key 'lr' = 0 is outside (0, inf)");
    ck_assert_error(mtl_optimizer_set_double(o, "lr", -1e-3), MTL_ERR_RANGE, "key 'lr'");
    ck_assert_error(mtl_optimizer_set_double(o, "lr", NAN), MTL_ERR_RANGE, "nan");
    ck_assert_error(mtl_optimizer_set_double(o, "lr", INFINITY), MTL_ERR_RANGE, "inf");
    ck_assert_error(mtl_optimizer_set_double(o, "beta1", 1.0), MTL_ERR_RANGE,
                    "key 'beta1' = 1 is outside [0, 1)");
    ck_assert_error(mtl_optimizer_set_double(o, "beta2", -0.1), MTL_ERR_RANGE, "beta2");
    ck_assert_error(mtl_optimizer_set_double(o, "eps", 0), MTL_ERR_RANGE, "eps");
    ck_assert_error(mtl_optimizer_set_double(o, "weight_decay", -1), MTL_ERR_RANGE,
                    "weight_decay");
    ck_assert_error(mtl_optimizer_set_double(o, "amsgrad", 0.5), MTL_ERR_RANGE, "0 or 1");
    ck_assert_error(mtl_optimizer_set_int(o, "amsgrad", 2), MTL_ERR_RANGE, "amsgrad");
    ck_assert_error(mtl_optimizer_set_double(o, "gamma", 0), MTL_ERR_RANGE, "(0, 1]");
    ck_assert_error(mtl_optimizer_set_double(o, "gamma", 1.5), MTL_ERR_RANGE, "gamma");
    ck_assert_error(mtl_optimizer_set_double(o, "warmup_start_factor", 1.5), MTL_ERR_RANGE,
                    "[0, 1]");
    ck_assert_error(mtl_optimizer_set_int(o, "step_size", 0), MTL_ERR_RANGE,
                    "key 'step_size' = 0 is outside an integer >= 1");
    ck_assert_error(mtl_optimizer_set_double(o, "step_size", 2.5), MTL_ERR_RANGE, "2.5");
    ck_assert_error(mtl_optimizer_set_int(o, "total_steps", -1), MTL_ERR_RANGE, "total_steps");
    ck_assert_error(mtl_optimizer_set_int(o, "schedule_interval", -3), MTL_ERR_RANGE,
                    "schedule_interval");
    ck_assert_error(mtl_optimizer_set_int(o, "warmup_steps", INT64_MAX), MTL_ERR_RANGE,
                    "warmup_steps");
    ck_assert_error(mtl_optimizer_set_double(o, "clip_norm", -1), MTL_ERR_RANGE, "clip_norm");
    ck_assert_error(mtl_optimizer_set_double(o, "clip_value", NAN), MTL_ERR_RANGE,
                    "clip_value");
    ck_assert_error(mtl_optimizer_set_double(o, "min_lr", -1), MTL_ERR_RANGE, "min_lr");
    /* wrong setter for the key's type */
    ck_assert_error(mtl_optimizer_set_double(o, "schedule", 1), MTL_ERR_INVALID_ARGUMENT,
                    "key 'schedule' takes a string");
    ck_assert_error(mtl_optimizer_set_int(o, "milestones", 1), MTL_ERR_INVALID_ARGUMENT,
                    "takes a string");
    ck_assert_error(mtl_optimizer_set_string(o, "lr", "0.1"), MTL_ERR_INVALID_ARGUMENT,
                    "key 'lr' is numeric");
    ck_assert_error(mtl_optimizer_set_string(o, "schedule", "onecycle"),
                    MTL_ERR_INVALID_ARGUMENT, "unknown schedule 'onecycle'");
    ck_assert_error(mtl_optimizer_set_string(o, "momentum", "x"), MTL_ERR_INVALID_ARGUMENT,
                    "does not use key 'momentum'");
    ck_assert_status(mtl_optimizer_set_string(o, "schedule", NULL), MTL_ERR_INVALID_ARGUMENT);
    const char *bad_ms[6] = {"5,2", "a", "1,,2", "1 2", "-1", "3,"};
    for (int i = 0; i < 6; i++)
        ck_assert_error(mtl_optimizer_set_string(o, "milestones", bad_ms[i]), MTL_ERR_RANGE,
                        "key 'milestones'");
    ck_assert_str_eq(mtli_optimizer_get_string(o, "milestones"), "");
    ck_assert_ok(mtl_optimizer_set_string(o, "milestones", ""));
    double v;
    ck_assert_error(mtl_optimizer_get_double(o, "schedule", &v), MTL_ERR_UNSUPPORTED,
                    "string key");
    ck_assert(isnan(v));
    ck_assert_error(mtl_optimizer_get_double(o, "alpha", &v), MTL_ERR_INVALID_ARGUMENT,
                    "does not use key 'alpha'");
    ck_assert_error(mtl_optimizer_key_default(o, "nope", &v), MTL_ERR_INVALID_ARGUMENT,
                    "unknown key 'nope'");
    ck_assert_status(mtl_optimizer_get_double(o, "lr", NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_optimizer_set_double(NULL, "lr", 1), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_optimizer_set_double(o, NULL, 1), MTL_ERR_INVALID_ARGUMENT);
    /* failed sets leave the old values */
    ck_assert_ok(mtl_optimizer_get_double(o, "lr", &v));
    ck_assert_close(v, 0.001, 0);
    ck_assert_ok(mtl_optimizer_get_double(o, "beta1", &v));
    ck_assert_close(v, 0.9, 0);
    ck_assert_ok(mtl_optimizer_get_double(o, "step_size", &v));
    ck_assert_close(v, 1, 0);
    mtl_optimizer_free(o);

    o = make("sgd", 1);
    ck_assert_error(mtl_optimizer_set_double(o, "beta1", 0.9), MTL_ERR_INVALID_ARGUMENT,
                    "optimizer 'sgd' does not use key 'beta1' (it is for adam, adamw)");
    ck_assert_error(mtl_optimizer_set_double(o, "momentum", 1.0), MTL_ERR_RANGE, "[0, 1)");
    ck_assert_error(mtl_optimizer_set_double(o, "dampening", 1.1), MTL_ERR_RANGE, "[0, 1]");
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(inconsistent_options_fail_the_step)
{
    mtl_optimizer *o = make("sgd", 1);
    float p = 1, g = 1;
    ck_assert_ok(mtl_optimizer_set_int(o, "nesterov", 1));
    ck_assert_error(mtli_optimizer_update(o, &p, &g), MTL_ERR_STATE,
                    "nesterov needs momentum > 0 and dampening 0");
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.9));
    ck_assert_ok(mtl_optimizer_set_double(o, "dampening", 0.1));
    ck_assert_status(mtli_optimizer_update(o, &p, &g), MTL_ERR_STATE);
    ck_assert_ok(mtl_optimizer_set_double(o, "dampening", 0));
    ck_assert_ok(mtl_optimizer_set_string(o, "schedule", "cosine"));
    ck_assert_error(mtli_optimizer_update(o, &p, &g), MTL_ERR_STATE,
                    "schedule 'cosine' needs total_steps");
    ck_assert(p == 1.0f);
    ck_assert_int_eq(mtl_optimizer_step_count(o), 0);
    ck_assert_ok(mtl_optimizer_set_int(o, "total_steps", 100));
    ck_assert_ok(mtli_optimizer_update(o, &p, &g));
    ck_assert_int_eq(mtl_optimizer_step_count(o), 1);
    ck_assert_status(mtli_optimizer_update(o, NULL, &g), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtli_optimizer_update(NULL, &p, &g), MTL_ERR_INVALID_ARGUMENT);
    mtl_optimizer_free(o);
}
END_TEST

/* ---- state ------------------------------------------------------------------------------- */

START_TEST(buffers_follow_the_options)
{
    mtl_optimizer *o = make("sgd", 5);
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 0);
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.5));
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 1);
    mtl_optimizer_free(o);

    o = make("adam", 5);
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 2);
    ck_assert_ok(mtl_optimizer_set_int(o, "amsgrad", 1));
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 3);
    for (int i = 0; i < 3; i++) {
        float *b = mtli_optimizer_buffer(o, i);
        ck_assert_ptr_nonnull(b);
        ck_assert_uint_eq((uintptr_t)b % 64, 0);
    }
    ck_assert_ptr_null(mtli_optimizer_buffer(o, 3));
    mtl_optimizer_free(o);

    o = make("rmsprop", 5);
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 1);
    ck_assert_ok(mtl_optimizer_set_int(o, "centered", 1));
    ck_assert_ok(mtl_optimizer_set_double(o, "momentum", 0.1));
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 3);
    mtl_optimizer_free(o);

    o = make("adagrad", 5);
    ck_assert_int_eq(mtli_optimizer_num_buffers(o), 1);
    ck_assert_ok(mtl_optimizer_set_double(o, "initial_accumulator_value", 0.25));
    ck_assert(mtli_optimizer_buffer(o, 0)[4] == 0.25f);
    mtl_optimizer_free(o);
}
END_TEST

START_TEST(reset_restarts_from_scratch)
{
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        mtl_optimizer *o = make(configs[k].kind, N);
        for (int j = 0; j < 6 && configs[k].set[j].key; j++)
            ck_assert_ok(mtl_optimizer_set_double(o, configs[k].set[j].key,
                                                  configs[k].set[j].value));
        float first[N], again[N], g[N];
        for (int round = 0; round < 2; round++) {
            float *p = round ? again : first;
            memcpy(p, p0, sizeof first);
            for (int s = 0; s < STEPS; s++) {
                memcpy(g, G[s], sizeof g);
                ck_assert_ok(mtli_optimizer_update(o, p, g));
            }
            ck_assert_ok(mtl_optimizer_reset(o));
            ck_assert_int_eq(mtl_optimizer_step_count(o), 0);
        }
        /* bit-identical after a reset: moments, step count and (adagrad) accumulators */
        ck_assert_msg(memcmp(first, again, sizeof first) == 0, "%s", configs[k].kind);
        mtl_optimizer_free(o);
    }
}
END_TEST

START_TEST(null_handles)
{
    mtl_optimizer_free(NULL);
    ck_assert_ptr_null(mtl_optimizer_kind(NULL));
    ck_assert_close(mtl_optimizer_current_lr(NULL), 0.0, 0);
    ck_assert_int_eq(mtl_optimizer_step_count(NULL), -1);
    ck_assert_ptr_null(mtl_optimizer_key_name(NULL, 0));
    ck_assert_status(mtl_optimizer_reset(NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_optimizer_set_lr_scale(NULL, "trunk", 1), MTL_ERR_INVALID_ARGUMENT);
    double v;
    ck_assert_status(mtl_optimizer_key_default(NULL, "lr", &v), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mtli_optimizer_num_buffers(NULL), 0);
    ck_assert_ptr_null(mtli_optimizer_buffer(NULL, 0));
    ck_assert_ptr_null(mtli_optimizer_step_ptr(NULL));
    ck_assert_ptr_null(mtli_optimizer_model(NULL));
}
END_TEST

/* ---- allocation failures ----------------------------------------------------------------- */

typedef struct {
    const char *kind;
    int nparts;
} oom_ctx;

static mtl_status create_one(void *ctx)
{
    const oom_ctx *c = ctx;
    const mtli_part parts[3] = {{"trunk", 0, 10}, {"a", 10, 5}, {"b", 20, 4}};
    mtl_optimizer *o = NULL;
    mtl_status st = mtli_optimizer_create(&o, c->kind, 30, parts, c->nparts, NULL);
    if (st != MTL_OK && o != NULL)
        return MTL_ERR_INTERNAL;
    if (st == MTL_OK) {
        /* options that allocate a buffer; a failed set stores nothing */
        int before = mtli_optimizer_num_buffers(o);
        if (!strcmp(c->kind, "adam"))
            st = mtl_optimizer_set_int(o, "amsgrad", 1);
        else if (!strcmp(c->kind, "rmsprop"))
            st = mtl_optimizer_set_int(o, "centered", 1);
        else if (!strcmp(c->kind, "sgd"))
            st = mtl_optimizer_set_double(o, "momentum", 0.9);
        if (st != MTL_OK && mtli_optimizer_num_buffers(o) != before)
            st = MTL_ERR_INTERNAL;
        if (st == MTL_OK) {
            st = mtl_optimizer_set_string(o, "milestones", "3, 9");
            if (st != MTL_OK && strcmp(mtli_optimizer_get_string(o, "milestones"), "") != 0)
                st = MTL_ERR_INTERNAL;
        }
    }
    mtl_optimizer_free(o);
    return st;
}

START_TEST(creation_survives_every_allocation_failure)
{
    const char *kinds[5] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
    for (int k = 0; k < 5; k++) {
        oom_ctx c0 = {kinds[k], 0}, c3 = {kinds[k], 3};
        ck_assert_int_ge(mtl_test_oom_sweep(create_one, &c0), 4);
        ck_assert_int_ge(mtl_test_oom_sweep(create_one, &c3), 7);
    }
}
END_TEST

START_TEST(update_does_not_allocate)
{
    mtl_optimizer *o = make("adam", N);
    ck_assert_ok(mtl_optimizer_set_int(o, "amsgrad", 1));
    ck_assert_ok(mtl_optimizer_set_double(o, "clip_norm", 0.1));
    float p[N], g[N];
    memcpy(p, p0, sizeof p);
    memcpy(g, G[0], sizeof g);
    mtli_alloc_reset_count();
    ck_assert_ok(mtli_optimizer_update(o, p, g));
    ck_assert_int_eq(mtli_alloc_count(), 0);
    mtl_optimizer_free(o);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, updates_match_reference_formulas);
    tcase_add_test(tc, updates_match_pytorch);
    tcase_add_test(tc, sgd_by_hand);
    tcase_add_test(tc, adam_first_step_is_lr_times_sign);
    tcase_add_test(tc, clip_by_value_then_norm);
    tcase_add_test(tc, l2_norm_in_double);
    tcase_add_test(tc, non_finite_gradient_changes_nothing);
    tcase_add_test(tc, schedules_at_several_ticks);
    tcase_add_test(tc, warmup_and_schedule_interval);
    tcase_add_test(tc, steps_use_the_scheduled_lr);
    tcase_add_test(tc, per_part_learning_rates);
    tcase_add_test(tc, frozen_part_keeps_params_but_moments_advance);
    tcase_add_test(tc, create_validates_kind_and_parts);
    tcase_add_test(tc, keys_defaults_and_listing);
    tcase_add_test(tc, key_errors_name_key_kind_and_value);
    tcase_add_test(tc, inconsistent_options_fail_the_step);
    tcase_add_test(tc, buffers_follow_the_options);
    tcase_add_test(tc, reset_restarts_from_scratch);
    tcase_add_test(tc, null_handles);
    tcase_add_test(tc, creation_survives_every_allocation_failure);
    tcase_add_test(tc, update_does_not_allocate);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(suite)
