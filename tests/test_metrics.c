/* Metrics: hand-computed values, scikit-learn reference values, error paths.
 *
 * The reference arrays and values below were produced with scikit-learn 1.2.1 / numpy 1.24:
 *   rng = np.random.default_rng(20240501); N, C = 40, 4
 *   y = rng.integers(0, C, N).astype(np.int32); y[rng.choice(N, 5, replace=False)] = -1
 *   scores = rng.normal(size=(N, C)).astype(np.float32)
 *   scores[np.arange(N), np.where(y >= 0, y, 0)] += 0.8; pred = scores.argmax(1)
 *   (metrics of y[y >= 0] vs pred[y >= 0], zero_division=0)
 *   yb = rng.integers(0, 2, 30).astype(np.int32); yb[[3, 17]] = -1
 *   sb = np.round(rng.uniform(size=30) + 0.3 * (yb == 1), 1).astype(np.float32)
 *   (roc_auc_score on the valid entries, scores as float64; binary P/R/F1 of sb >= 0.5)
 *   t = rng.normal(size=(25, 2)).astype(np.float32)
 *   pr = (t + 0.5 * rng.normal(size=(25, 2))).astype(np.float32)
 *   t[[1, 7], 0] = np.nan; t[[4], 1] = np.nan
 *   (per-column sklearn metric over non-NaN targets, in float64, averaged over columns)
 * Tolerance: 1e-12 relative (both sides accumulate in double over the same float32 inputs). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <mtl/mtl.h>

#include "test_main.h"
#include "test_oom.h"

static int32_t y_cls[40] = {
    3, 1, 1, -1, 0, 0, 0, 0, 0, 1, 0, 1, 3, -1, 0, 1, 3, -1, 2, 0, 0, 0, 3, 0, 2, 0, 3, 3, 3, 1, 0,
    3, 1, -1, 0, 3, 3, 2, -1, 0,
};
static float s_cls[160] = {
    0.10194122f, -1.2129252f, -1.15537763f, 2.4878273f, -0.144851804f, 0.426351339f, 2.14878917f,
    0.996505797f, 0.576431572f, 1.66775751f, 0.567717612f, 0.131064266f, -1.53775883f,
    0.650077641f, -0.139082044f, 1.52188468f, 1.79774547f, 1.35793102f, -0.402410507f,
    0.455671251f, 2.11398172f, -0.997074544f, -0.134987488f, -0.541245937f, 0.998884737f,
    -0.08134038f, -0.34886238f, 0.832479f, 1.31667757f, 0.826546967f, 0.658775985f, -1.31542838f,
    0.975190341f, -0.701944828f, 1.56357384f, -0.0776556432f, 1.11731219f, 1.46716857f,
    0.123732112f, -1.34617949f, 0.51982218f, 0.395469606f, 0.954701304f, 1.74283957f, 0.472304404f,
    2.89030695f, -0.36615026f, 0.303593338f, -0.350868523f, -0.691936433f, -1.69839776f,
    -1.09377122f, 2.17059469f, -1.60543752f, -0.858298838f, -1.29865015f, 0.803770185f, -1.434358f,
    -1.36333919f, 0.377171129f, 0.150248975f, 0.39297843f, 1.19192064f, 1.39157355f, 0.379852057f,
    -0.747827053f, 0.667183638f, 1.23613644f, 3.03977847f, 0.403839648f, 0.868200362f,
    -0.0888207033f, 2.30102658f, -0.0101992805f, 2.59601665f, 2.45713472f, -0.0173568726f,
    -1.21373665f, -0.897228122f, -0.947432399f, 0.624486446f, -1.53773761f, 0.675573945f,
    0.331242949f, -0.309467971f, -0.354803026f, 2.19902611f, 0.0965229347f, 0.313666433f,
    0.383768857f, -1.57146883f, 1.71981716f, 2.05375981f, -1.96386838f, 0.638243496f,
    -0.963374734f, 0.0124885617f, -0.526173532f, 0.492700666f, -2.44257188f, -0.725804746f,
    0.100991212f, -1.11853194f, 0.232861698f, -0.831237078f, -0.302285016f, 0.712593794f,
    1.78315783f, -0.405102521f, 2.10286665f, 0.000969323853f, 1.27148235f, -0.442534059f,
    -0.890276313f, 2.48277664f, -1.06706929f, -1.24390221f, 1.72486329f, -1.63835669f,
    0.0161129888f, 0.206842124f, -2.17069578f, 1.21420407f, 1.38259351f, -0.932277262f,
    -0.291822225f, -0.528271556f, 1.06138754f, -0.700252712f, 1.10271883f, 0.863953888f,
    0.0479246229f, 0.0391788483f, 0.529542744f, 0.642202497f, -0.591775835f, 0.205850065f,
    -0.665949941f, -1.02951682f, 2.03787398f, 0.904132485f, -1.94677019f, -0.539176583f,
    0.460110515f, -1.81181526f, 0.955762863f, 0.994680405f, 1.05463672f, 0.833521187f,
    -0.168110326f, 1.41035843f, -0.230033204f, -0.0696492195f, 2.78213453f, -0.820834398f,
    -2.13645267f, 1.75274193f, 1.08979309f, 0.841344774f, 0.605496764f,
};
static int32_t y_bin[30] = {
    0, 1, 0, -1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, -1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1,
};
static float s_bin[30] = {
    0.400000006f, 0.800000012f, 0.400000006f, 0.800000012f, 0.600000024f, 0.5f, 0.699999988f,
    0.699999988f, 0.600000024f, 0.899999976f, 1.29999995f, 0.800000012f, 0.800000012f, 1.20000005f,
    1.20000005f, 0.5f, 0.899999976f, 0.200000003f, 0.300000012f, 1.20000005f, 1.20000005f,
    0.300000012f, 0.5f, 1.0f, 0.699999988f, 1.0f, 0.899999976f, 0.699999988f, 0.5f, 1.20000005f,
};
static float t_reg[50] = {
    -0.897466898f, 0.0863182843f, NAN, 0.212787196f, -1.18621421f, -2.89771485f, 1.01016843f,
    0.453772485f, -0.656963408f, NAN, 0.816119552f, 0.297931492f, 0.906003892f, 0.0347851329f, NAN,
    -0.509608507f, 0.428073794f, -0.462174296f, -0.937208831f, 0.116758861f, -1.70336294f,
    0.423728257f, -1.05044007f, 0.302315474f, -1.22344089f, -1.01864207f, 0.546944797f,
    -0.990917385f, -1.31040132f, 1.72941613f, -2.97299719f, -0.659242749f, 1.35012615f,
    1.00974298f, 1.58858788f, 0.256459594f, -1.22690868f, -0.18778567f, 0.627365053f, 0.597925127f,
    0.315515339f, -0.731424212f, 0.106327869f, -1.68388784f, 1.02116537f, -0.494625151f,
    0.300316095f, -0.970353723f, 0.392394751f, 0.933210433f,
};
static float p_reg[50] = {
    -1.25698209f, -0.802743196f, -0.542551219f, -0.0059328205f, -1.4071939f, -2.42672086f,
    0.98012507f, 0.482281208f, -0.145382002f, 0.732597411f, -0.0862763599f, 0.182431385f,
    1.60887253f, 0.177010432f, -2.22276521f, 0.486702651f, -0.164026678f, -0.375209957f,
    -0.746148944f, -0.273533374f, -1.85478854f, 1.2671417f, -1.02136326f, 1.1914705f, -1.35623229f,
    -1.40254843f, 1.15960503f, -1.71351743f, -1.22392571f, 2.17477584f, -3.48714805f,
    -0.312769741f, 0.0789650306f, 0.66681397f, 1.60755205f, -0.685865939f, -1.19766104f,
    -0.0505750328f, 0.496623248f, 0.114986934f, -0.236027598f, 0.0938208401f, 0.658557832f,
    -1.93541026f, 0.824816465f, -0.0598661751f, 7.2491224e-07f, -0.993624151f, 0.412719935f,
    0.903227627f,
};

#define TOL 1e-12
#define ck_close(got, want)                                                                 \
    ck_assert_msg(fabs((got) - (want)) <= TOL * fmax(1.0, fabs(want)), "%s = %.17g, want %.17g", \
                  #got, (double)(got), (double)(want))
#define ck_msg_has(sub)                                                                     \
    ck_assert_msg(strstr(mtl_last_error(), (sub)) != NULL, "message '%s' lacks '%s'",        \
                  mtl_last_error(), (sub))

static mtl_tensor *ivec(int32_t *data, int64_t n)
{
    mtl_tensor *t = NULL;
    ck_assert_ok(mtl_tensor_wrap(&t, MTL_INT32, data, 1, &n));
    return t;
}

static mtl_tensor *fmat(float *data, int64_t n, int64_t c)
{
    mtl_tensor *t = NULL;
    int64_t shape[2] = {n, c};
    ck_assert_ok(mtl_tensor_wrap(&t, MTL_FLOAT32, data, c ? 2 : 1, shape));
    return t;
}

START_TEST(accuracy_hand_computed_skips_missing)
{
    int32_t pred[5] = {0, 1, 2, 1, 0}, lab[5] = {0, 2, 2, 1, -1};
    mtl_tensor *p = ivec(pred, 5), *y = ivec(lab, 5);
    double v = -1;
    ck_assert_ok(mtl_metric_accuracy(&v, p, y));
    ck_close(v, 0.75); /* 3 of the 4 valid samples */
    /* [N, 1] labels are accepted too */
    int64_t s21[2] = {5, 1};
    ck_assert_ok(mtl_tensor_reshape(y, 2, s21));
    ck_assert_ok(mtl_metric_accuracy(&v, p, y));
    ck_close(v, 0.75);
    mtl_tensor_free(p);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(scores_use_first_argmax)
{
    /* row 1 ties between classes 1 and 2: the first maximum (1) is predicted */
    float s[9] = {2, 1, 0, 0, 5, 5, 0, 1, 3};
    int32_t lab[3] = {0, 1, 1};
    mtl_tensor *p = fmat(s, 3, 3), *y = ivec(lab, 3);
    double v;
    ck_assert_ok(mtl_metric_accuracy(&v, p, y));
    ck_close(v, 2.0 / 3.0);
    int64_t conf[9];
    ck_assert_ok(mtl_metric_confusion(conf, 3, p, y));
    int64_t want[9] = {1, 0, 0, 0, 1, 1, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(conf[i], want[i]);
    mtl_tensor_free(p);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(prf_hand_computed_zero_division)
{
    /* labels 0 0 1 1 2, predictions 0 1 1 1 1: class 2 never predicted -> precision 0 */
    int32_t pred[5] = {0, 1, 1, 1, 1}, lab[5] = {0, 0, 1, 1, 2};
    mtl_tensor *p = ivec(pred, 5), *y = ivec(lab, 5);
    double P[3], R[3], F[3];
    int64_t S[3];
    ck_assert_ok(mtl_metric_per_class(P, R, F, S, 3, p, y));
    ck_close(P[0], 1.0);
    ck_close(R[0], 0.5);
    ck_close(F[0], 2.0 / 3.0);
    ck_close(P[1], 0.5);
    ck_close(R[1], 1.0);
    ck_close(F[1], 2.0 / 3.0);
    ck_close(P[2], 0.0);
    ck_close(R[2], 0.0);
    ck_close(F[2], 0.0);
    ck_assert_int_eq(S[0], 2);
    ck_assert_int_eq(S[2], 1);
    double v;
    ck_assert_ok(mtl_metric_precision(&v, p, y, "macro"));
    ck_close(v, 0.5);
    ck_assert_ok(mtl_metric_f1(&v, p, y, "macro"));
    ck_close(v, 4.0 / 9.0);
    ck_assert_ok(mtl_metric_recall(&v, p, y, "weighted"));
    ck_close(v, (2 * 0.5 + 2 * 1.0 + 0.0) / 5.0);
    ck_assert_ok(mtl_metric_f1(&v, p, y, "micro"));
    ck_close(v, 0.6);
    /* NULL output arrays are skipped */
    double F4[4];
    ck_assert_ok(mtl_metric_per_class(NULL, NULL, F4, NULL, 4, p, y));
    ck_close(F4[1], 2.0 / 3.0);
    ck_close(F4[3], 0.0); /* a class beyond the data */
    mtl_tensor_free(p);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(macro_averages_present_classes_only)
{
    /* sklearn: f1_score([0,0,3],[0,3,3], average="macro") = 0.6666..., precision 0.75:
     * classes 1 and 2 appear nowhere and are not averaged */
    int32_t pred[3] = {0, 3, 3}, lab[3] = {0, 0, 3};
    mtl_tensor *p = ivec(pred, 3), *y = ivec(lab, 3);
    double v;
    ck_assert_ok(mtl_metric_f1(&v, p, y, "macro"));
    ck_close(v, 0.6666666666666666);
    ck_assert_ok(mtl_metric_precision(&v, p, y, "macro"));
    ck_close(v, 0.75);
    mtl_tensor_free(p);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(classification_matches_sklearn)
{
    mtl_tensor *s = fmat(s_cls, 40, 4), *y = ivec(y_cls, 40);
    double v;
    ck_assert_ok(mtl_metric_accuracy(&v, s, y));
    ck_close(v, 0.62857142857142856);
    const char *avg[3] = {"macro", "micro", "weighted"};
    const double want[3][3] = {
        {0.63844696969696968, 0.71190476190476193, 0.63152847152847147},
        {0.62857142857142856, 0.62857142857142856, 0.62857142857142856},
        {0.69751082251082253, 0.62857142857142856, 0.63815042100756381},
    };
    for (int a = 0; a < 3; a++) {
        ck_assert_ok(mtl_metric_precision(&v, s, y, avg[a]));
        ck_close(v, want[a][0]);
        ck_assert_ok(mtl_metric_recall(&v, s, y, avg[a]));
        ck_close(v, want[a][1]);
        ck_assert_ok(mtl_metric_f1(&v, s, y, avg[a]));
        ck_close(v, want[a][2]);
    }
    double P[4], R[4], F[4];
    int64_t S[4];
    ck_assert_ok(mtl_metric_per_class(P, R, F, S, 4, s, y));
    const double wp[4] = {0.80000000000000004, 0.83333333333333337, 0.375, 0.54545454545454541};
    const double wr[4] = {0.53333333333333333, 0.7142857142857143, 1, 0.59999999999999998};
    const double wf[4] = {0.64000000000000001, 0.76923076923076916, 0.54545454545454541,
                          0.57142857142857129};
    const int64_t ws[4] = {15, 7, 3, 10};
    for (int k = 0; k < 4; k++) {
        ck_close(P[k], wp[k]);
        ck_close(R[k], wr[k]);
        ck_close(F[k], wf[k]);
        ck_assert_int_eq(S[k], ws[k]);
    }
    int64_t conf[16];
    const int64_t wc[16] = {8, 0, 3, 4, 0, 5, 1, 1, 0, 0, 3, 0, 2, 1, 1, 6};
    ck_assert_ok(mtl_metric_confusion(conf, 4, s, y));
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(conf[i], wc[i]);
    mtl_tensor_free(s);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(auc_ties_average_ranks)
{
    float s[4] = {0.5f, 0.5f, 0.5f, 0.9f};
    int32_t lab[4] = {0, 1, 0, 1};
    mtl_tensor *p = fmat(s, 4, 0), *y = ivec(lab, 4);
    double v;
    ck_assert_ok(mtl_metric_roc_auc(&v, p, y));
    ck_close(v, 0.75); /* sklearn.metrics.roc_auc_score([0,1,0,1], [.5,.5,.5,.9]) */
    mtl_tensor_free(p);
    /* [N, 2] probabilities: column 1 is the positive score */
    float s2[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.1f, 0.9f};
    p = fmat(s2, 4, 2);
    ck_assert_ok(mtl_metric_roc_auc(&v, p, y));
    ck_close(v, 0.75);
    mtl_tensor_free(p);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(binary_matches_sklearn)
{
    mtl_tensor *s = fmat(s_bin, 30, 0), *y = ivec(y_bin, 30);
    double v;
    ck_assert_ok(mtl_metric_roc_auc(&v, s, y));
    ck_close(v, 0.73979591836734693);
    ck_assert_ok(mtl_metric_compute(&v, "roc_auc", s, y));
    ck_close(v, 0.73979591836734693);
    int32_t pb[30];
    for (int i = 0; i < 30; i++)
        pb[i] = s_bin[i] >= 0.5f;
    mtl_tensor *p = ivec(pb, 30);
    ck_assert_ok(mtl_metric_precision(&v, p, y, "binary"));
    ck_close(v, 0.54166666666666663);
    ck_assert_ok(mtl_metric_recall(&v, p, y, "binary"));
    ck_close(v, 0.9285714285714286);
    ck_assert_ok(mtl_metric_f1(&v, p, y, "binary"));
    ck_close(v, 0.68421052631578938);
    ck_assert_ok(mtl_metric_compute(&v, "f1", p, y));
    ck_close(v, 0.68421052631578938);
    mtl_tensor_free(p);
    mtl_tensor_free(s);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(regression_matches_sklearn)
{
    mtl_tensor *p = fmat(p_reg, 25, 2), *t = fmat(t_reg, 25, 2);
    double v;
    ck_assert_ok(mtl_metric_mse(&v, p, t));
    ck_close(v, 0.25734206805087112);
    ck_assert_ok(mtl_metric_mae(&v, p, t));
    ck_close(v, 0.39375400006829619);
    ck_assert_ok(mtl_metric_r2(&v, p, t));
    ck_close(v, 0.74828680161028027);
    ck_assert_ok(mtl_metric_compute(&v, "rmse", p, t));
    ck_close(v, sqrt(0.25734206805087112));
    mtl_tensor_free(p);
    mtl_tensor_free(t);
    /* column 0 alone, as [N] and [N, 1] */
    float pc[25], tc[25];
    for (int i = 0; i < 25; i++) {
        pc[i] = p_reg[2 * i];
        tc[i] = t_reg[2 * i];
    }
    p = fmat(pc, 25, 0);
    t = fmat(tc, 25, 1);
    ck_assert_ok(mtl_metric_mse(&v, p, t));
    ck_close(v, 0.22596492399510429);
    ck_assert_ok(mtl_metric_mae(&v, p, t));
    ck_close(v, 0.35252183342236737);
    ck_assert_ok(mtl_metric_r2(&v, p, t));
    ck_close(v, 0.82441592941523623);
    mtl_tensor_free(p);
    mtl_tensor_free(t);
}
END_TEST

START_TEST(r2_constant_target)
{
    float t[3] = {2, 2, 2}, exact[3] = {2, 2, 2}, off[3] = {2, 2, 3};
    mtl_tensor *tt = fmat(t, 3, 0), *pe = fmat(exact, 3, 0), *po = fmat(off, 3, 0);
    double v = -5;
    ck_assert_ok(mtl_metric_r2(&v, pe, tt));
    ck_close(v, 1.0);
    ck_assert_ok(mtl_metric_r2(&v, po, tt));
    ck_close(v, 0.0);
    ck_assert_ok(mtl_metric_mse(&v, po, tt));
    ck_close(v, 1.0 / 3.0);
    mtl_tensor_free(tt);
    mtl_tensor_free(pe);
    mtl_tensor_free(po);
}
END_TEST

START_TEST(delta_m_hand_computed)
{
    /* accuracy 0.8 vs 0.75 (+6.667%), error 0.09 vs 0.1 (lower is better: +10%) */
    double m[2] = {0.8, 0.09}, b[2] = {0.75, 0.1};
    int low[2] = {0, 1};
    double v;
    ck_assert_ok(mtl_metric_delta_m(&v, m, b, low, 2));
    ck_close(v, 100.0 / 2.0 * ((0.8 - 0.75) / 0.75 - (0.09 - 0.1) / 0.1));
    ck_assert_ok(mtl_metric_delta_m(&v, m, b, NULL, 1));
    ck_close(v, 100.0 * (0.05 / 0.75));
    b[1] = 0.0;
    ck_assert_status(mtl_metric_delta_m(&v, m, b, low, 2), MTL_ERR_RANGE);
    ck_msg_has("task 1");
    b[1] = 0.1;
    low[0] = 2;
    ck_assert_status(mtl_metric_delta_m(&v, m, b, low, 2), MTL_ERR_RANGE);
    ck_msg_has("lower_is_better[0]");
    low[0] = 0;
    ck_assert_status(mtl_metric_delta_m(&v, m, b, low, 0), MTL_ERR_INVALID_ARGUMENT);
    m[0] = NAN;
    ck_assert_status(mtl_metric_delta_m(&v, m, b, low, 2), MTL_ERR_NUMERIC);
    ck_assert_status(mtl_metric_delta_m(NULL, m, b, low, 2), MTL_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(names_and_directions)
{
    ck_assert_int_eq(mtl_metric_lower_is_better("mse"), 1);
    ck_assert_int_eq(mtl_metric_lower_is_better("mae"), 1);
    ck_assert_int_eq(mtl_metric_lower_is_better("f1_macro"), 0);
    ck_assert_int_eq(mtl_metric_lower_is_better("r2"), 0);
    ck_assert_int_eq(mtl_metric_lower_is_better("bleu"), -1);
    ck_msg_has("unknown metric 'bleu'");
    int n = 0;
    while (mtl_metric_name(n))
        ck_assert_int_ge(mtl_metric_lower_is_better(mtl_metric_name(n++)), 0);
    ck_assert_int_eq(n, 18);
    ck_assert_ptr_null(mtl_metric_name(-1));
    int32_t pred[2] = {0, 1}, lab[2] = {0, 0};
    mtl_tensor *p = ivec(pred, 2), *y = ivec(lab, 2);
    double v = 7;
    ck_assert_status(mtl_metric_compute(&v, "bleu", p, y), MTL_ERR_NOT_FOUND);
    ck_assert_ok(mtl_metric_compute(&v, "precision_weighted", p, y));
    ck_close(v, 1.0);
    ck_assert_ok(mtl_metric_compute(&v, "recall_macro", p, y));
    ck_close(v, 0.25); /* class 0: 1/2, class 1 (predicted only): 0 */
    mtl_tensor_free(p);
    mtl_tensor_free(y);
}
END_TEST

START_TEST(error_paths)
{
    int32_t pred[3] = {0, 1, 2}, lab[3] = {0, 1, 1}, lab2[2] = {0, 1}, none[3] = {-1, -1, -1};
    int32_t bad[3] = {0, -2, 1}, negp[3] = {0, -1, 1};
    float s1[3] = {0.1f, 0.2f, 0.3f}, s3n[6] = {1, 0, NAN, 1, 0, 1};
    mtl_tensor *p = ivec(pred, 3), *y = ivec(lab, 3), *y2 = ivec(lab2, 2), *yn = ivec(none, 3);
    mtl_tensor *yb = ivec(bad, 3), *pn = ivec(negp, 3), *f1 = fmat(s1, 3, 1);
    mtl_tensor *fn = fmat(s3n, 3, 2), *fv = fmat(s1, 3, 0);
    double v = 42;
    ck_assert_status(mtl_metric_accuracy(&v, p, y2), MTL_ERR_SHAPE);
    ck_msg_has("pred has 3 samples, labels 2");
    ck_assert_status(mtl_metric_accuracy(&v, p, yn), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("no valid sample");
    ck_assert_status(mtl_metric_accuracy(&v, p, yb), MTL_ERR_RANGE);
    ck_msg_has("label 1 is -2");
    ck_assert_status(mtl_metric_accuracy(&v, pn, y), MTL_ERR_RANGE);
    ck_msg_has("prediction 1 is class -1");
    ck_assert_status(mtl_metric_accuracy(&v, f1, y), MTL_ERR_SHAPE);
    ck_msg_has("C = 1");
    ck_assert_status(mtl_metric_accuracy(&v, fn, y), MTL_ERR_NUMERIC);
    ck_msg_has("score [1, 0] is NaN");
    ck_assert_status(mtl_metric_f1(&v, p, y, "samples"), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("unknown average 'samples'");
    ck_assert_status(mtl_metric_f1(&v, p, y, "binary"), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("class 2 occurs");
    ck_assert_status(mtl_metric_f1(&v, p, y, NULL), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_metric_accuracy(&v, NULL, y), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_metric_accuracy(NULL, p, y), MTL_ERR_INVALID_ARGUMENT);
    /* per-class / confusion: ids must fit num_classes */
    double P[2];
    int64_t conf[4];
    ck_assert_status(mtl_metric_per_class(P, NULL, NULL, NULL, 2, p, y), MTL_ERR_RANGE);
    ck_msg_has("prediction 2 is class 2");
    ck_assert_status(mtl_metric_confusion(conf, 0, p, y), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_metric_confusion(conf, 3, fn, y), MTL_ERR_SHAPE);
    ck_msg_has("scores have 2 columns, num_classes is 3");
    /* AUC */
    int32_t one[3] = {1, 1, -1}, three[3] = {0, 2, 1};
    mtl_tensor *yo = ivec(one, 3), *y3 = ivec(three, 3);
    ck_assert_status(mtl_metric_roc_auc(&v, fv, yo), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("only one class (1)");
    ck_assert_status(mtl_metric_roc_auc(&v, fv, y3), MTL_ERR_RANGE);
    ck_msg_has("label 1 is 2");
    ck_assert_status(mtl_metric_roc_auc(&v, fv, yn), MTL_ERR_INVALID_ARGUMENT);
    ck_assert_status(mtl_metric_roc_auc(&v, fv, y2), MTL_ERR_SHAPE);
    ck_assert_status(mtl_metric_roc_auc(&v, p, y), MTL_ERR_SHAPE);
    /* regression */
    float tn[3] = {NAN, NAN, NAN}, pnan[3] = {NAN, 1, 1}, t3[3] = {1, 2, 3};
    mtl_tensor *ttn = fmat(tn, 3, 0), *ppn = fmat(pnan, 3, 0), *tt3 = fmat(t3, 3, 0);
    ck_assert_status(mtl_metric_mse(&v, fv, ttn), MTL_ERR_INVALID_ARGUMENT);
    ck_msg_has("no valid sample");
    ck_assert_status(mtl_metric_mse(&v, ppn, tt3), MTL_ERR_NUMERIC);
    ck_msg_has("prediction [0, 0] is NaN");
    ck_assert_status(mtl_metric_r2(&v, fn, tt3), MTL_ERR_SHAPE);
    ck_msg_has("3 rows of 2 outputs");
    ck_assert_status(mtl_metric_mae(&v, p, tt3), MTL_ERR_SHAPE);
    ck_assert(v == 42); /* never written on failure */
    mtl_tensor *all[] = {p, y, y2, yn, yb, pn, f1, fn, fv, yo, y3, ttn, ppn, tt3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        mtl_tensor_free(all[i]);
}
END_TEST

typedef struct {
    mtl_tensor *a, *b;
} pair;

static mtl_status auc_fn(void *ctx)
{
    pair *pp = ctx;
    double v;
    return mtl_metric_roc_auc(&v, pp->a, pp->b);
}

static mtl_status f1_fn(void *ctx)
{
    pair *pp = ctx;
    double v;
    return mtl_metric_f1(&v, pp->a, pp->b, "weighted");
}

static mtl_status confusion_fn(void *ctx)
{
    pair *pp = ctx;
    int64_t conf[16];
    return mtl_metric_confusion(conf, 4, pp->a, pp->b);
}

START_TEST(allocation_failures)
{
    pair b = {fmat(s_bin, 30, 0), ivec(y_bin, 30)};
    ck_assert_int_ge(mtl_test_oom_sweep(auc_fn, &b), 1);
    pair c = {fmat(s_cls, 40, 4), ivec(y_cls, 40)};
    ck_assert_int_ge(mtl_test_oom_sweep(f1_fn, &c), 1);
    ck_assert_int_ge(mtl_test_oom_sweep(confusion_fn, &c), 1);
    mtl_tensor_free(b.a);
    mtl_tensor_free(b.b);
    mtl_tensor_free(c.a);
    mtl_tensor_free(c.b);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, accuracy_hand_computed_skips_missing);
    tcase_add_test(tc, scores_use_first_argmax);
    tcase_add_test(tc, prf_hand_computed_zero_division);
    tcase_add_test(tc, macro_averages_present_classes_only);
    tcase_add_test(tc, classification_matches_sklearn);
    tcase_add_test(tc, auc_ties_average_ranks);
    tcase_add_test(tc, binary_matches_sklearn);
    tcase_add_test(tc, regression_matches_sklearn);
    tcase_add_test(tc, r2_constant_target);
    tcase_add_test(tc, delta_m_hand_computed);
    tcase_add_test(tc, names_and_directions);
    tcase_add_test(tc, error_paths);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

MTL_TEST_MAIN(metrics_suite)
