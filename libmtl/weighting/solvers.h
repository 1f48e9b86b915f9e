/* Internal: small dense solvers for the weighting methods (T x T problems, T <= 256).
 *
 * We do not link LAPACK (Debian's LAPACK pulls in a second BLAS through the libblas.so.3
 * alternative), so the few dense kernels the methods need are written here, in double
 * precision, with explicit tolerances and iteration caps. None allocates: the caller passes
 * workspace of the documented size. Matrices are row-major n x n.
 *
 *   mtli_sym_eig          cyclic Jacobi eigen-decomposition of a symmetric matrix
 *   mtli_chol / _solve    Cholesky factorisation and solve for SPD matrices
 *   mtli_sym_pinv_solve   minimum-norm least-squares solve through the eigen-decomposition
 *   mtli_proj_simplex     Euclidean projection onto the probability simplex
 *   mtli_qp_simplex       min 1/2 x'Qx + c'x over the simplex   (MGDA)
 *   mtli_qp_orthant       min 1/2 x'Qx + c'x over x >= 0        (UPGrad, DualProj)
 *   mtli_solve_fair       (Qa)_i = a_i^(-p), a > 0               (Nash-MTL p=1, FairGrad)
 *   mtli_cagrad_dual      min_{w in simplex} b'w + r sqrt(w'Qw)  (CAGrad)
 */
#ifndef MTLI_WEIGHTING_SOLVERS_H
#define MTLI_WEIGHTING_SOLVERS_H

#include <stddef.h>

/* Workspace (doubles) that covers every solver below for n unknowns. */
size_t mtli_solver_ws(int n);

/* y = Q x (n x n times n). */
void mtli_symv(int n, const double *Q, const double *x, double *y);
double mtli_dot(int n, const double *a, const double *b);

/* Eigen-decomposition of the symmetric n x n matrix A (overwritten). On return evals[]
 * holds the eigenvalues in descending order and column j of V (V[i*n + j]) the unit
 * eigenvector of evals[j]. Cyclic Jacobi rotations until the off-diagonal Frobenius norm is
 * <= 1e-15 times the matrix's Frobenius norm, at most 64 sweeps (each O(n^3); a few sweeps
 * suffice in practice: convergence is quadratic). Returns the sweeps used, -1 if the cap
 * was reached or the input is not finite. */
int mtli_sym_eig(int n, double *A, double *evals, double *V);

/* In-place Cholesky A = L L' (L in the lower triangle). Returns 0, or -1 when a pivot is
 * <= 0 or not finite (A not positive definite). */
int mtli_chol(int n, double *A);
/* Solve L L' x = b in place (b becomes x). */
void mtli_chol_solve(int n, const double *Lf, double *b);

/* x = A^+ b for symmetric A through its eigen-decomposition; eigenvalues below
 * rcond * max|eigenvalue| are treated as zero. ws: 2n^2 + 2n doubles. Returns 0 or -1 (the
 * eigen-decomposition did not converge). */
int mtli_sym_pinv_solve(int n, const double *A, const double *b, double *x, double rcond,
                        double *ws);

/* x = argmin ||x - v|| over {x >= 0, sum x = 1}. ws: n doubles. v and x may alias. */
void mtli_proj_simplex(int n, const double *v, double *x, double *ws);

/* min 1/2 x'Qx + c'x over the simplex (c may be NULL: 0), Q symmetric PSD. x: start point
 * on input (projected first), solution on output. Accelerated projected gradient (FISTA)
 * with adaptive restart and step 1/Lip, Lip = Gershgorin bound of Q. Stops when the
 * Frank-Wolfe gap grad'x - min_i grad_i (an upper bound of f(x) - f*) is <= tol; at most
 * max_iter iterations. *gap receives the final gap. Every few iterations the solution is
 * polished by solving the KKT system on the current support exactly (kept only if
 * feasible with a smaller gap). ws: mtli_solver_ws(n). Returns the iterations
 * used or -1 when the cap was reached (x then holds the iterate with the smallest gap). */
int mtli_qp_simplex(int n, const double *Q, const double *c, double *x, double tol,
                    int max_iter, double *gap, double *ws);

/* min 1/2 x'Qx + c'x over x >= 0, Q symmetric PSD. Same method as mtli_qp_simplex; stops
 * when the projected-gradient residual max_i |r_i| <= tol, r_i = grad_i if x_i > 0 and
 * min(grad_i, 0) if x_i = 0; then polishes the solution by solving the equality system on
 * the free variables exactly (kept only if feasible and its residual is smaller). *resid
 * receives the final residual. ws: mtli_solver_ws(n). Returns iterations or -1. */
int mtli_qp_orthant(int n, const double *Q, const double *c, double *x, double tol,
                    int max_iter, double *resid, double *ws);

/* Solve (Q a)_i = a_i^(-p) for a > 0 (p > 0; Nash-MTL is p = 1, FairGrad p = 1/alpha).
 * This is the stationarity condition of the strictly convex
 *     phi(a) = 1/2 a'Qa - sum_i h(a_i),  h'(a) = a^(-p)
 * minimised by damped Newton (Cholesky of Q + diag(p a^(-p-1)), backtracking Armijo line
 * search that keeps a > 0). Q must have a positive diagonal. Stops when
 * max_i |a_i^p (Qa)_i - 1| <= tol; at most max_iter Newton steps. a: output (the start is
 * the diagonal solution). ws: n^2 + 5n doubles. Returns the iterations or -1 (*resid: the
 * final residual). */
int mtli_solve_fair(int n, const double *Q, double p, double *a, double tol, int max_iter,
                    double *resid, double *ws);

/* CAGrad's dual: min over the simplex of F(w) = b'w + r sqrt(w'Qw). Accelerated projected
 * gradient with backtracking and restart; stops when the Frank-Wolfe gap <= tol. ws: 8n
 * doubles. Returns iterations or -1 (*gap: the final gap). */
int mtli_cagrad_dual(int n, const double *Q, const double *b, double r, double *w,
                     double tol, int max_iter, double *gap, double *ws);

#endif
