// The CPU backend's factorizations on row-major data in both orientations: Q R = A with Q
// orthonormal, orthonormal rows spanning the same row space, thin SVD against LAPACK in double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "linalg/backend.hpp"
#include "support/lowrank_fixtures.hpp"

using namespace loftq;
using namespace loftq::testing;

namespace {
constexpr double kOrthTol = 1e-5;      // ||I - Q^T Q||_F, float32 Householder, k <= 40
constexpr double kResidualTol = 1e-5;  // ||A - Q R|| / ||A||, ||A - U S Vt|| / ||A||

Matrix gaussian(int64_t m, int64_t n, uint64_t seed) {
    Matrix a(m, n);
    make_cpu_backend()->fill_gaussian(seed, 99, 0, a.data.size(), a.ptr());
    return a;
}
}  // namespace

TEST(CpuBackend, QrColumnsIsAnOrthonormalFactorization) {
    auto be = make_cpu_backend();
    const int64_t m = 300, k = 40;
    const Matrix a = gaussian(m, k, 1);
    std::vector<float> q(a.data), r(static_cast<size_t>(k * k), -7.0f);
    std::vector<float> work(be->qr_columns_work(m, k));
    be->qr_columns(m, k, q.data(), r.data(), work.data());
    EXPECT_LT(orthogonality_error(q, m, k, true), kOrthTol);
    for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < i; ++j) ASSERT_EQ(r[i * k + j], 0.0f);
    std::vector<float> qr(static_cast<size_t>(m * k));
    be->gemm(Trans::no, Trans::no, m, k, k, 1.0f, q.data(), k, r.data(), k, 0.0f, qr.data(), k);
    double d = 0;
    for (size_t i = 0; i < qr.size(); ++i) d += std::pow(double(qr[i]) - a.data[i], 2);
    EXPECT_LT(std::sqrt(d) / frobenius(a), kResidualTol);
}

TEST(CpuBackend, QrRowsKeepsTheRowSpaceAndGivesR) {
    auto be = make_cpu_backend();
    const int64_t k = 24, n = 200;
    const Matrix a = gaussian(k, n, 2);
    std::vector<float> q(a.data), r(static_cast<size_t>(k * k), -1.0f), work(be->qr_rows_work(k, n));
    be->qr_rows(k, n, q.data(), r.data(), work.data());
    EXPECT_LT(orthogonality_error(q, n, k, false), kOrthTol);
    // R is upper triangular and A = R^T Q (the QR of the column-major n x k matrix A^T).
    for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < i; ++j) ASSERT_EQ(r[i * k + j], 0.0f);
    std::vector<float> rq(a.data.size());
    be->gemm(Trans::yes, Trans::no, k, n, k, 1.0f, r.data(), k, q.data(), n, 0.0f, rq.data(), n);
    double dr = 0;
    for (size_t i = 0; i < rq.size(); ++i) dr += std::pow(double(rq[i]) - a.data[i], 2);
    EXPECT_LT(std::sqrt(dr) / frobenius(a), kResidualTol);
    std::vector<float> q2(a.data);  // without R: the same Q
    be->qr_rows(k, n, q2.data(), nullptr, work.data());
    EXPECT_EQ(q2, q);
    // Projecting A's rows onto span(Q rows) must give A back: A Q^T Q = A.
    std::vector<float> aq(static_cast<size_t>(k * k)), back(a.data.size());
    be->gemm(Trans::no, Trans::yes, k, k, n, 1.0f, a.ptr(), n, q.data(), n, 0.0f, aq.data(), k);
    be->gemm(Trans::no, Trans::no, k, n, k, 1.0f, aq.data(), k, q.data(), n, 0.0f, back.data(), n);
    double d = 0;
    for (size_t i = 0; i < back.size(); ++i) d += std::pow(double(back[i]) - a.data[i], 2);
    EXPECT_LT(std::sqrt(d) / frobenius(a), kResidualTol);
}

TEST(CpuBackend, ThinSvdBothOrientationsAgainstLapackDouble) {
    auto be = make_cpu_backend();
    for (auto [m, n] : {std::pair<int64_t, int64_t>{70, 130}, {130, 70}}) {
        const Matrix a = gaussian(m, n, 3 + m);
        const int64_t p = std::min(m, n);
        std::vector<float> copy(a.data), u(static_cast<size_t>(m * p)), s(static_cast<size_t>(p)),
            vt(static_cast<size_t>(p * n)), work(be->svd_work(m, n));
        be->svd(m, n, copy.data(), u.data(), s.data(), vt.data(), work.data());
        EXPECT_LT(relative_residual(a, u, s, vt, p), kResidualTol) << m << "x" << n;
        EXPECT_LT(orthogonality_error(u, m, p, true), kOrthTol);
        EXPECT_LT(orthogonality_error(vt, n, p, false), kOrthTol);
        const auto ref = reference_singular_values(a);
        for (int64_t i = 0; i < p; ++i) EXPECT_NEAR(s[i], ref[i], 1e-5 * ref[0]) << i;
    }
}

// The randomized SVD's small SVD (svd_wide): through the Gram matrix in double on the CPU, the
// singular values, U and Vt of the accurate driver to float32 rounding on a well-conditioned wide
// matrix; an ill-conditioned one (here of rank 10, singular values down to 0) takes the accurate
// driver and stays a valid SVD.
TEST(CpuBackend, SvdWideMatchesTheAccurateDriver) {
    auto be = make_cpu_backend();
    for (int64_t m : {64, 192}) {
        const int64_t n = 2048;
        const Matrix a = gaussian(m, n, 40 + m);
        std::vector<float> copy(a.data), u(static_cast<size_t>(m * m)), s(static_cast<size_t>(m)),
            vt(static_cast<size_t>(m * n)), work(be->svd_work(m, n));
        be->svd_wide(m, n, copy.data(), u.data(), s.data(), vt.data(), work.data());
        EXPECT_LT(relative_residual(a, u, s, vt, m), kResidualTol) << m;
        EXPECT_LT(orthogonality_error(u, m, m, true), kOrthTol);
        EXPECT_LT(orthogonality_error(vt, n, m, false), kOrthTol);
        const auto ref = reference_singular_values(a);
        for (int64_t i = 0; i < m; ++i) EXPECT_NEAR(s[i], ref[i], 1e-5 * ref[0]) << m << " " << i;
    }
    const int64_t m = 32, n = 300, rank = 10;  // A = X Y: rank 10
    const Matrix x = gaussian(m, rank, 5), y = gaussian(rank, n, 6);
    Matrix a = gaussian(m, n, 7);
    be->gemm(Trans::no, Trans::no, m, n, rank, 1.0f, x.ptr(), rank, y.ptr(), n, 0.0f, a.ptr(), n);
    std::vector<float> copy(a.data), u(static_cast<size_t>(m * m)), s(static_cast<size_t>(m)),
        vt(static_cast<size_t>(m * n)), work(be->svd_work(m, n));
    be->svd_wide(m, n, copy.data(), u.data(), s.data(), vt.data(), work.data());
    EXPECT_LT(relative_residual(a, u, s, vt, m), kResidualTol);
    EXPECT_LT(orthogonality_error(u, m, m, true), kOrthTol);
    EXPECT_LT(orthogonality_error(vt, n, m, false), kOrthTol);
    for (int64_t i = rank; i < m; ++i) EXPECT_LT(s[i], 1e-5f * s[0]) << i;
}
