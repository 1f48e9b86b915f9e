/* Small dense solvers for the weighting methods (see solvers.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "weighting/solvers.h"

size_t mtli_solver_ws(int n)
{
    size_t m = (size_t)n + 1;
    return 3 * m * m + 12 * m;
}

void mtli_symv(int n, const double *Q, const double *x, double *y)
{
    for (int i = 0; i < n; i++) {
        const double *q = Q + (size_t)i * n;
        double s = 0.0;
        for (int j = 0; j < n; j++)
            s += q[j] * x[j];
        y[i] = s;
    }
}

double mtli_dot(int n, const double *a, const double *b)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ---- Jacobi eigen-decomposition --------------------------------------------------------- */

int mtli_sym_eig(int n, double *A, double *evals, double *V)
{
    double fro = 0.0;
    for (size_t i = 0; i < (size_t)n * n; i++)
        fro += A[i] * A[i];
    if (!isfinite(fro))
        return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            V[(size_t)i * n + j] = i == j ? 1.0 : 0.0;
    int sweeps = 0;
    const double tol = 1e-15 * sqrt(fro);
    for (;;) {
        double off = 0.0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++)
                off += A[(size_t)p * n + q] * A[(size_t)p * n + q];
        if (sqrt(2.0 * off) <= tol || off == 0.0)
            break;
        if (sweeps == 64)
            return -1;
        sweeps++;
        for (int p = 0; p < n; p++) {
            for (int q = p + 1; q < n; q++) {
                double apq = A[(size_t)p * n + q];
                if (apq == 0.0)
                    continue;
                double app = A[(size_t)p * n + p], aqq = A[(size_t)q * n + q];
                double theta = (aqq - app) / (2.0 * apq);
                double t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                if (!isfinite(theta)) /* apq negligible against the diagonal gap */
                    t = apq / (aqq - app);
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                A[(size_t)p * n + p] = app - t * apq;
                A[(size_t)q * n + q] = aqq + t * apq;
                A[(size_t)p * n + q] = A[(size_t)q * n + p] = 0.0;
                for (int r = 0; r < n; r++) {
                    if (r == p || r == q)
                        continue;
                    double arp = A[(size_t)r * n + p], arq = A[(size_t)r * n + q];
                    double nrp = c * arp - s * arq, nrq = s * arp + c * arq;
                    A[(size_t)r * n + p] = A[(size_t)p * n + r] = nrp;
                    A[(size_t)r * n + q] = A[(size_t)q * n + r] = nrq;
                }
                for (int r = 0; r < n; r++) {
                    double vrp = V[(size_t)r * n + p], vrq = V[(size_t)r * n + q];
                    V[(size_t)r * n + p] = c * vrp - s * vrq;
                    V[(size_t)r * n + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    for (int i = 0; i < n; i++)
        evals[i] = A[(size_t)i * n + i];
    /* selection sort, descending, moving the eigenvector columns along */
    for (int i = 0; i < n; i++) {
        int best = i;
        for (int j = i + 1; j < n; j++)
            if (evals[j] > evals[best])
                best = j;
        if (best != i) {
            double e = evals[i];
            evals[i] = evals[best];
            evals[best] = e;
            for (int r = 0; r < n; r++) {
                double v = V[(size_t)r * n + i];
                V[(size_t)r * n + i] = V[(size_t)r * n + best];
                V[(size_t)r * n + best] = v;
            }
        }
    }
    return sweeps;
}

/* ---- Cholesky ------------------------------------------------------------------------------ */

int mtli_chol(int n, double *A)
{
    for (int j = 0; j < n; j++) {
        double d = A[(size_t)j * n + j];
        for (int k = 0; k < j; k++)
            d -= A[(size_t)j * n + k] * A[(size_t)j * n + k];
        if (!(d > 0.0) || !isfinite(d))
            return -1;
        d = sqrt(d);
        A[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = A[(size_t)i * n + j];
            for (int k = 0; k < j; k++)
                s -= A[(size_t)i * n + k] * A[(size_t)j * n + k];
            A[(size_t)i * n + j] = s / d;
        }
    }
    return 0;
}

void mtli_chol_solve(int n, const double *Lf, double *b)
{
    for (int i = 0; i < n; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= Lf[(size_t)i * n + k] * b[k];
        b[i] = s / Lf[(size_t)i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = b[i];
        for (int k = i + 1; k < n; k++)
            s -= Lf[(size_t)k * n + i] * b[k];
        b[i] = s / Lf[(size_t)i * n + i];
    }
}

/* ---- pseudo-inverse ------------------------------------------------------------------------ */

int mtli_sym_pinv_solve(int n, const double *A, const double *b, double *x, double rcond,
                        double *ws)
{
    double *Ac = ws, *V = ws + (size_t)n * n, *ev = V + (size_t)n * n, *tmp = ev + n;
    memcpy(Ac, A, (size_t)n * n * sizeof(double));
    if (mtli_sym_eig(n, Ac, ev, V) < 0)
        return -1;
    double amax = 0.0;
    for (int j = 0; j < n; j++)
        if (fabs(ev[j]) > amax)
            amax = fabs(ev[j]);
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        if (fabs(ev[j]) > rcond * amax && amax > 0.0) {
            for (int i = 0; i < n; i++)
                s += V[(size_t)i * n + j] * b[i];
            s /= ev[j];
        }
        tmp[j] = s;
    }
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < n; j++)
            s += V[(size_t)i * n + j] * tmp[j];
        x[i] = s;
    }
    return 0;
}

/* ---- simplex projection -------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

void mtli_proj_simplex(int n, const double *v, double *x, double *ws)
{
    memcpy(ws, v, (size_t)n * sizeof(double));
    qsort(ws, (size_t)n, sizeof(double), cmp_desc);
    double cum = 0.0, theta = 0.0;
    for (int i = 0; i < n; i++) {
        cum += ws[i];
        double t = (cum - 1.0) / (i + 1);
        if (i == n - 1 || ws[i + 1] <= t) {
            theta = t;
            break;
        }
    }
    for (int i = 0; i < n; i++)
        x[i] = v[i] > theta ? v[i] - theta : 0.0;
}

static double gershgorin(int n, const double *Q)
{
    double m = 0.0;
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < n; j++)
            s += fabs(Q[(size_t)i * n + j]);
        if (s > m)
            m = s;
    }
    return m;
}

/* ---- QP over the simplex ------------------------------------------------------------------- */

/* f = 1/2 x'Qx + c'x and the Frank-Wolfe gap from Qx. */
static void simplex_eval(int n, const double *x, const double *Qx, const double *c, double *f,
                         double *gap)
{
    double q = 0.0, lin = 0.0, gx = 0.0, gmin = INFINITY;
    for (int i = 0; i < n; i++) {
        double g = Qx[i] + (c ? c[i] : 0.0);
        q += x[i] * Qx[i];
        lin += c ? c[i] * x[i] : 0.0;
        gx += g * x[i];
        if (g < gmin)
            gmin = g;
    }
    *f = 0.5 * q + lin;
    *gap = gx - gmin;
}

/* Exact solve on the support of x: [Q_SS 1; 1' 0] [x_S; -mu] = [-c_S; 1]. Writes the
 * candidate into out (zeros off the support); returns 0 if it is feasible. */
static int simplex_polish(int n, const double *Q, const double *c, const double *x, double *out,
                          double *ws)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > 0.0)
            m++;
    if (m == 0)
        return -1;
    int mb = m + 1;
    double *K = ws, *rhs = K + (size_t)mb * mb, *sol = rhs + mb, *pws = sol + mb;
    int a = 0;
    for (int i = 0; i < n; i++) {
        if (!(x[i] > 0.0))
            continue;
        int b = 0;
        for (int j = 0; j < n; j++) {
            if (!(x[j] > 0.0))
                continue;
            K[(size_t)a * mb + b] = Q[(size_t)i * n + j];
            b++;
        }
        K[(size_t)a * mb + m] = K[(size_t)m * mb + a] = 1.0;
        rhs[a] = c ? -c[i] : 0.0;
        a++;
    }
    K[(size_t)m * mb + m] = 0.0;
    rhs[m] = 1.0;
    if (mtli_sym_pinv_solve(mb, K, rhs, sol, 1e-13, pws) < 0)
        return -1;
    a = 0;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (x[i] > 0.0) {
            out[i] = sol[a++];
            if (out[i] < 0.0 && out[i] >= -1e-13)
                out[i] = 0.0; /* rounding of a weight that sits on its bound */
            if (!(out[i] >= 0.0))
                return -1;
            sum += out[i];
        } else
            out[i] = 0.0;
    }
    if (!(fabs(sum - 1.0) <= 1e-9))
        return -1;
    for (int i = 0; i < n; i++)
        out[i] /= sum;
    return 0;
}

int mtli_qp_simplex(int n, const double *Q, const double *c, double *x, double tol,
                    int max_iter, double *gap, double *ws)
{
    double *y = ws, *xn = ws + n, *Qv = ws + 2 * n, *best = ws + 3 * n, *pw = ws + 4 * n;
    if (n == 1) {
        x[0] = 1.0;
        *gap = 0.0;
        return 0;
    }
    double lip = gershgorin(n, Q);
    if (!(lip > 0.0)) { /* Q = 0: a linear program; put the mass on the smallest c */
        double cmin = INFINITY;
        int cnt = 0;
        for (int i = 0; i < n; i++)
            cmin = fmin(cmin, c ? c[i] : 0.0);
        for (int i = 0; i < n; i++)
            cnt += (c ? c[i] : 0.0) == cmin;
        for (int i = 0; i < n; i++)
            x[i] = (c ? c[i] : 0.0) == cmin ? 1.0 / cnt : 0.0;
        *gap = 0.0;
        return 0;
    }
    mtli_proj_simplex(n, x, x, pw);
    double f, g, fn, gn, bestgap;
    mtli_symv(n, Q, x, Qv);
    simplex_eval(n, x, Qv, c, &f, &g);
    memcpy(best, x, (size_t)n * sizeof(double));
    bestgap = g;
    if (g <= tol) {
        *gap = g;
        return 0;
    }
    memcpy(y, x, (size_t)n * sizeof(double));
    double t = 1.0;
    int next_polish = 16;
    for (int it = 1; it <= max_iter; it++) {
        mtli_symv(n, Q, y, Qv);
        for (int i = 0; i < n; i++)
            xn[i] = y[i] - (Qv[i] + (c ? c[i] : 0.0)) / lip;
        mtli_proj_simplex(n, xn, xn, pw);
        mtli_symv(n, Q, xn, Qv);
        simplex_eval(n, xn, Qv, c, &fn, &gn);
        if (gn < bestgap) {
            bestgap = gn;
            memcpy(best, xn, (size_t)n * sizeof(double));
        }
        if (gn <= tol) {
            memcpy(x, xn, (size_t)n * sizeof(double));
            *gap = gn;
            return it;
        }
        if (it == next_polish) {
            next_polish *= 2;
            double *cand = y; /* y is recomputed below; use it as room for the candidate */
            if (simplex_polish(n, Q, c, xn, cand, pw) == 0) {
                double fc, gc;
                mtli_symv(n, Q, cand, Qv);
                simplex_eval(n, cand, Qv, c, &fc, &gc);
                if (gc < bestgap) {
                    bestgap = gc;
                    memcpy(best, cand, (size_t)n * sizeof(double));
                }
                if (gc <= tol) {
                    memcpy(x, cand, (size_t)n * sizeof(double));
                    *gap = gc;
                    return it;
                }
            }
        }
        if (fn > f) { /* adaptive restart: drop the momentum */
            t = 1.0;
            memcpy(y, xn, (size_t)n * sizeof(double));
        } else {
            double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
            double beta = (t - 1.0) / tn;
            for (int i = 0; i < n; i++)
                y[i] = xn[i] + beta * (xn[i] - x[i]);
            t = tn;
        }
        memcpy(x, xn, (size_t)n * sizeof(double));
        f = fn;
    }
    memcpy(x, best, (size_t)n * sizeof(double));
    *gap = bestgap;
    return -1;
}

/* ---- QP over the non-negative orthant ------------------------------------------------------ */

static double orthant_resid(int n, const double *x, const double *Qx, const double *c)
{
    double r = 0.0;
    for (int i = 0; i < n; i++) {
        double g = Qx[i] + c[i];
        double ri = x[i] > 0.0 ? fabs(g) : (g < 0.0 ? -g : 0.0);
        if (ri > r || ri != ri)
            r = ri;
    }
    return r;
}

static double quad_obj(int n, const double *x, const double *Qx, const double *c)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += x[i] * (0.5 * Qx[i] + c[i]);
    return s;
}

/* Exact solve of Q_FF x_F = -c_F on the free set F = {x_i > 0 or grad_i < 0}. */
static int orthant_polish(int n, const double *Q, const double *c, const double *x,
                          const double *Qx, double *out, double *ws)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > 0.0 || Qx[i] + c[i] < 0.0)
            m++;
    if (m == 0)
        return -1;
    double *K = ws, *rhs = K + (size_t)m * m, *sol = rhs + m, *pws = sol + m;
    int a = 0;
    for (int i = 0; i < n; i++) {
        if (!(x[i] > 0.0 || Qx[i] + c[i] < 0.0))
            continue;
        int b = 0;
        for (int j = 0; j < n; j++) {
            if (!(x[j] > 0.0 || Qx[j] + c[j] < 0.0))
                continue;
            K[(size_t)a * m + b] = Q[(size_t)i * n + j];
            b++;
        }
        rhs[a] = -c[i];
        a++;
    }
    if (mtli_sym_pinv_solve(m, K, rhs, sol, 1e-13, pws) < 0)
        return -1;
    double smax = 0.0;
    for (int i = 0; i < m; i++)
        smax = fmax(smax, fabs(sol[i]));
    a = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] > 0.0 || Qx[i] + c[i] < 0.0) {
            out[i] = sol[a++];
            if (out[i] < 0.0 && out[i] >= -1e-13 * smax)
                out[i] = 0.0; /* rounding of a variable that sits on its bound */
            if (!(out[i] >= 0.0))
                return -1;
        } else
            out[i] = 0.0;
    }
    return 0;
}

int mtli_qp_orthant(int n, const double *Q, const double *c, double *x, double tol,
                    int max_iter, double *resid, double *ws)
{
    double *y = ws, *xn = ws + n, *Qv = ws + 2 * n, *best = ws + 3 * n, *cand = ws + 4 * n,
           *pw = ws + 5 * n;
    for (int i = 0; i < n; i++)
        x[i] = x[i] > 0.0 ? x[i] : 0.0;
    double lip = gershgorin(n, Q);
    mtli_symv(n, Q, x, Qv);
    double r = orthant_resid(n, x, Qv, c), f = quad_obj(n, x, Qv, c);
    double bestr = r;
    memcpy(best, x, (size_t)n * sizeof(double));
    if (r <= tol) {
        *resid = r;
        return 0;
    }
    if (!(lip > 0.0) || !isfinite(lip)) {
        *resid = r;
        return -1; /* Q = 0 with c having a negative entry: unbounded */
    }
    memcpy(y, x, (size_t)n * sizeof(double));
    double t = 1.0;
    int next_polish = 8;
    for (int it = 1; it <= max_iter; it++) {
        mtli_symv(n, Q, y, Qv);
        for (int i = 0; i < n; i++) {
            double v = y[i] - (Qv[i] + c[i]) / lip;
            xn[i] = v > 0.0 ? v : 0.0;
        }
        mtli_symv(n, Q, xn, Qv);
        double rn = orthant_resid(n, xn, Qv, c), fn = quad_obj(n, xn, Qv, c);
        if (rn < bestr) {
            bestr = rn;
            memcpy(best, xn, (size_t)n * sizeof(double));
        }
        if (rn <= tol) {
            memcpy(x, xn, (size_t)n * sizeof(double));
            *resid = rn;
            return it;
        }
        if (it == next_polish) {
            next_polish *= 2;
            /* polish, then again from the polished point (its free set can be sharper);
             * y and Qv serve as scratch: both are recomputed before their next use */
            const double *from = xn;
            for (int rep = 0; rep < 3 && orthant_polish(n, Q, c, from, Qv, cand, pw) == 0;
                 rep++) {
                mtli_symv(n, Q, cand, Qv);
                double rc = orthant_resid(n, cand, Qv, c);
                if (rc < bestr) {
                    bestr = rc;
                    memcpy(best, cand, (size_t)n * sizeof(double));
                }
                if (rc <= tol) {
                    memcpy(x, cand, (size_t)n * sizeof(double));
                    *resid = rc;
                    return it;
                }
                memcpy(y, cand, (size_t)n * sizeof(double));
                from = y;
            }
        }
        if (fn > f) {
            t = 1.0;
            memcpy(y, xn, (size_t)n * sizeof(double));
        } else {
            double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
            double beta = (t - 1.0) / tn;
            for (int i = 0; i < n; i++) {
                double v = xn[i] + beta * (xn[i] - x[i]);
                y[i] = v;
            }
            t = tn;
        }
        memcpy(x, xn, (size_t)n * sizeof(double));
        f = fn;
    }
    memcpy(x, best, (size_t)n * sizeof(double));
    *resid = bestr;
    return -1;
}

/* ---- (Qa)_i = a_i^-p ------------------------------------------------------------------------ */

int mtli_solve_fair(int n, const double *Q, double p, double *a, double tol, int max_iter,
                    double *resid, double *ws)
{
    double *H = ws, *g = H + (size_t)n * n, *d = g + n, *Qa = d + n, *an = Qa + n, *tmp = an + n;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double q = Q[(size_t)i * n + i];
        if (!(q > 0.0) || !isfinite(q)) {
            *resid = INFINITY;
            return -1;
        }
        if (q > s)
            s = q;
    }
    /* Solve with Q/s (diagonal <= 1) and rescale: a = s^(-1/(1+p)) a~. */
    const double inv_s = 1.0 / s;
    for (int i = 0; i < n; i++)
        a[i] = pow(Q[(size_t)i * n + i] * inv_s, -1.0 / (1.0 + p));
    double r = INFINITY;
    int it = 0;
    for (;; it++) {
        mtli_symv(n, Q, a, Qa);
        r = 0.0;
        for (int i = 0; i < n; i++) {
            Qa[i] *= inv_s;
            double ri = fabs(pow(a[i], p) * Qa[i] - 1.0);
            if (!(ri <= r))
                r = ri;
        }
        if (r <= tol || it == max_iter || !isfinite(r))
            break;
        for (int i = 0; i < n; i++) {
            g[i] = Qa[i] - pow(a[i], -p);
            for (int j = 0; j < n; j++)
                H[(size_t)i * n + j] = Q[(size_t)i * n + j] * inv_s;
            H[(size_t)i * n + i] += p * pow(a[i], -p - 1.0);
        }
        if (mtli_chol(n, H) < 0)
            break;
        for (int i = 0; i < n; i++)
            d[i] = -g[i];
        mtli_chol_solve(n, H, d);
        double step = 1.0;
        for (int i = 0; i < n; i++)
            if (d[i] < 0.0 && -0.99 * a[i] / d[i] < step)
                step = -0.99 * a[i] / d[i];
        /* phi(a) = 1/2 a'(Q/s)a - sum h(a_i) */
        double dec = mtli_dot(n, g, d);
        double phi0 = 0.0, phin = 0.0;
        {
            mtli_symv(n, Q, a, tmp);
            phi0 = 0.5 * mtli_dot(n, a, tmp) * inv_s;
            for (int i = 0; i < n; i++)
                phi0 -= p == 1.0 ? log(a[i]) : pow(a[i], 1.0 - p) / (1.0 - p);
        }
        int halvings = 0;
        for (;;) {
            for (int i = 0; i < n; i++)
                an[i] = a[i] + step * d[i];
            mtli_symv(n, Q, an, tmp);
            phin = 0.5 * mtli_dot(n, an, tmp) * inv_s;
            for (int i = 0; i < n; i++)
                phin -= p == 1.0 ? log(an[i]) : pow(an[i], 1.0 - p) / (1.0 - p);
            if (phin <= phi0 + 1e-4 * step * dec || halvings == 60)
                break;
            /* near the solution phi's decrease drowns in rounding: accept any step that
             * reduces the residual of the equations instead */
            double rn = 0.0;
            for (int i = 0; i < n; i++) {
                double ri = fabs(pow(an[i], p) * tmp[i] * inv_s - 1.0);
                if (!(ri <= rn))
                    rn = ri;
            }
            if (rn < 0.5 * r)
                break;
            step *= 0.5;
            halvings++;
        }
        memcpy(a, an, (size_t)n * sizeof(double));
    }
    double scale = pow(s, -1.0 / (1.0 + p));
    for (int i = 0; i < n; i++)
        a[i] *= scale;
    *resid = r;
    return r <= tol ? it : -1;
}

/* ---- CAGrad's dual ------------------------------------------------------------------------- */

static double cagrad_F(int n, const double *Q, const double *b, double r, const double *w,
                       double *Qw, double *q)
{
    mtli_symv(n, Q, w, Qw);
    *q = mtli_dot(n, w, Qw);
    if (*q < 0.0)
        *q = 0.0;
    return mtli_dot(n, b, w) + r * sqrt(*q + 1e-30);
}

static void cagrad_grad(int n, const double *b, double r, const double *Qw, double q,
                        double *g)
{
    double k = r / sqrt(q + 1e-30);
    for (int i = 0; i < n; i++)
        g[i] = b[i] + k * Qw[i];
}

int mtli_cagrad_dual(int n, const double *Q, const double *b, double r, double *w, double tol,
                     int max_iter, double *gap, double *ws)
{
    double *y = ws, *wn = ws + n, *g = ws + 2 * n, *Qv = ws + 3 * n, *best = ws + 4 * n,
           *pw = ws + 5 * n, *gy = ws + 6 * n;
    if (n == 1) {
        w[0] = 1.0;
        *gap = 0.0;
        return 0;
    }
    mtli_proj_simplex(n, w, w, pw);
    double q, F = cagrad_F(n, Q, b, r, w, Qv, &q);
    cagrad_grad(n, b, r, Qv, q, g);
    double gx = mtli_dot(n, g, w), gmin = INFINITY;
    for (int i = 0; i < n; i++)
        gmin = fmin(gmin, g[i]);
    double bestgap = gx - gmin;
    memcpy(best, w, (size_t)n * sizeof(double));
    if (bestgap <= tol) {
        *gap = bestgap;
        return 0;
    }
    double L = gershgorin(n, Q) + 1e-12;
    memcpy(y, w, (size_t)n * sizeof(double));
    double t = 1.0;
    for (int it = 1; it <= max_iter; it++) {
        double qy, Fy = cagrad_F(n, Q, b, r, y, Qv, &qy);
        cagrad_grad(n, b, r, Qv, qy, gy);
        double Fn = 0.0;
        for (int bt = 0; bt < 200; bt++) {
            for (int i = 0; i < n; i++)
                wn[i] = y[i] - gy[i] / L;
            mtli_proj_simplex(n, wn, wn, pw);
            double lin = 0.0, sq = 0.0;
            for (int i = 0; i < n; i++) {
                double dlt = wn[i] - y[i];
                lin += gy[i] * dlt;
                sq += dlt * dlt;
            }
            Fn = cagrad_F(n, Q, b, r, wn, Qv, &q);
            if (Fn <= Fy + lin + 0.5 * L * sq + 1e-15 * fabs(Fy))
                break;
            L *= 2.0;
        }
        cagrad_grad(n, b, r, Qv, q, g);
        gx = mtli_dot(n, g, wn);
        gmin = INFINITY;
        for (int i = 0; i < n; i++)
            gmin = fmin(gmin, g[i]);
        double gp = gx - gmin;
        if (gp < bestgap) {
            bestgap = gp;
            memcpy(best, wn, (size_t)n * sizeof(double));
        }
        if (gp <= tol) {
            memcpy(w, wn, (size_t)n * sizeof(double));
            *gap = gp;
            return it;
        }
        if (Fn > F) {
            t = 1.0;
            memcpy(y, wn, (size_t)n * sizeof(double));
        } else {
            double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
            double beta = (t - 1.0) / tn;
            for (int i = 0; i < n; i++)
                y[i] = wn[i] + beta * (wn[i] - w[i]);
            t = tn;
        }
        memcpy(w, wn, (size_t)n * sizeof(double));
        F = Fn;
        L *= 0.9; /* let the step grow again */
    }
    memcpy(w, best, (size_t)n * sizeof(double));
    *gap = bestgap;
    return -1;
}
