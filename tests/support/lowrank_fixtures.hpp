// Fixtures for the low-rank tests: matrices with a prescribed spectrum, the real stories260K
// weights, and the SLATE-style accuracy measures (all in double, on host row-major data).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/matrix.hpp"

namespace loftq::testing {

// A = U diag(sigma) V^T with Haar-like random orthonormal U (rows x p), V (cols x p) drawn from
// `seed`; p = sigma.size() <= min(rows, cols).
Matrix matrix_with_spectrum(int64_t rows, int64_t cols, const std::vector<double>& sigma,
                            uint64_t seed);
std::vector<double> decaying_spectrum(int64_t p, double rate);  // sigma_i = exp(-rate * i)
std::vector<double> flat_spectrum(int64_t p);                   // sigma_i = 1 - 0.5 i / p

// One float32 tensor of tests/data/stories260K/model.safetensors as a matrix (2-D tensors).
Matrix load_stories_tensor(const std::string& name);
// Names of the 2-D projection weights (q,k,v,o,gate,up,down of every layer).
std::vector<std::string> stories_linear_names();

// Singular values of A in double precision (LAPACK dgesdd): the reference.
std::vector<double> reference_singular_values(const Matrix& a);

double frobenius(const Matrix& a);
// ||A - U diag(s) Vt||_F / ||A||_F for row-major U (m x r), Vt (r x n).
double relative_residual(const Matrix& a, const std::vector<float>& u, const std::vector<float>& s,
                         const std::vector<float>& vt, int64_t r);
// ||A - U diag(s) Vt||_F (absolute).
double residual(const Matrix& a, const std::vector<float>& u, const std::vector<float>& s,
                const std::vector<float>& vt, int64_t r);
// ||I - Q^T Q||_F for Q (m x r) row-major when `columns`, or Q (r x n) rows when not.
double orthogonality_error(const std::vector<float>& q, int64_t m, int64_t r, bool columns);
// ||X - Y||_F / ||Y||_F of the two products U diag(s) Vt.
double relative_product_difference(const std::vector<float>& u1, const std::vector<float>& s1,
                                   const std::vector<float>& vt1, const std::vector<float>& u2,
                                   const std::vector<float>& s2, const std::vector<float>& vt2,
                                   int64_t m, int64_t n, int64_t r);
// sqrt(sum_{i >= r} sigma_i^2): the optimal rank-r residual.
double tail_norm(const std::vector<double>& sigma, int64_t r);

}  // namespace loftq::testing
