// Truncated SVD checked the way SLATE checks SVD (STYLE.md 16): relative residual, orthogonality
// of U and V, singular values against LAPACK in double, each against a named tolerance; on the
// real stories260K weights and on synthetic matrices with decaying and flat spectra.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "lowrank/exact_svd.hpp"
#include "lowrank/randomized_svd.hpp"
#include "support/lowrank_fixtures.hpp"

using namespace loftq;
using namespace loftq::testing;

namespace {

constexpr double kOrthTol = 2e-5;            // ||I - U^T U||_F, ||I - V^T V||_F in float32
constexpr double kSingularValueTol = 2e-6;   // |s_i - s_i(LAPACK double)| / s_0
constexpr double kOptimalityTol = 1e-4;      // exact: residual / optimal tail - 1
constexpr double kRandomizedTol = 0.01;      // randomized: residual within 1% of the exact one
constexpr double kShardedTol = 1e-5;         // sharded vs unsharded U S Vt, relative
// Randomized singular values / s_0: the small stories matrices have flat spectra (no gap at r), so
// the leading values are only found to ~2% while the residual is within 1% of optimal.
constexpr double kRandomizedFlatSvTol = 3e-2;
constexpr double kRandomizedDecayingSvTol = 1e-4;

struct Factors {
    std::vector<float> u, s, vt;
};

Factors run(TruncatedSvd& svd, const Matrix& a, int64_t r) {
    Factors f{std::vector<float>(static_cast<size_t>(a.rows * r), NAN),
              std::vector<float>(static_cast<size_t>(r), NAN),
              std::vector<float>(static_cast<size_t>(r * a.cols), NAN)};  // poisoned
    svd.compute(a.ptr(), f.u.data(), f.s.data(), f.vt.data());
    return f;
}

// The SLATE checks of a rank-r factorization of A against its double-precision spectrum.
void check_factors(const Matrix& a, const Factors& f, int64_t r, const std::vector<double>& ref,
                   double sv_tol, const std::string& what) {
    EXPECT_LT(orthogonality_error(f.u, a.rows, r, true), kOrthTol) << what;
    EXPECT_LT(orthogonality_error(f.vt, a.cols, r, false), kOrthTol) << what;
    for (int64_t i = 0; i < r; ++i) EXPECT_NEAR(f.s[i], ref[i], sv_tol * ref[0]) << what << " s" << i;
    // Sign convention: the entry of largest magnitude of every U column is positive.
    for (int64_t j = 0; j < r; ++j) {
        float best = 0;
        for (int64_t i = 0; i < a.rows; ++i)
            if (std::fabs(f.u[i * r + j]) > std::fabs(best)) best = f.u[i * r + j];
        EXPECT_GT(best, 0.0f) << what << " column " << j;
    }
}

}  // namespace

TEST(ExactSvd, StoriesWeightsMatchLapack) {
    auto be = make_cpu_backend();
    for (const auto& name : stories_linear_names()) {
        const Matrix w = load_stories_tensor(name);
        const int64_t r = 8;
        ExactSvd svd(*be, w.rows, w.cols, static_cast<int>(r));
        const Factors f = run(svd, w, r);
        const auto ref = reference_singular_values(w);
        check_factors(w, f, r, ref, kSingularValueTol, name);
        const double optimal = tail_norm(ref, r);
        EXPECT_LT(residual(w, f.u, f.s, f.vt, r) / optimal - 1.0, kOptimalityTol) << name;
    }
}

TEST(RandomizedSvd, StoriesWeightsWithinOnePercentOfExact) {
    auto be = make_cpu_backend();
    for (const auto& name : stories_linear_names()) {
        const Matrix w = load_stories_tensor(name);
        const int64_t r = 4;
        SvdOptions opt;
        opt.rank = 4;
        opt.name = name;
        RandomizedSvd svd(*be, w.rows, w.cols, opt);
        const Factors f = run(svd, w, r);
        const auto ref = reference_singular_values(w);
        check_factors(w, f, r, ref, kRandomizedFlatSvTol, name);
        EXPECT_LT(residual(w, f.u, f.s, f.vt, r) / tail_norm(ref, r), 1.0 + kRandomizedTol) << name;
    }
}

TEST(RandomizedSvd, DecayingSpectrumAtDefaultsWithinOnePercent) {
    auto be = make_cpu_backend();
    const int64_t m = 600, n = 400, r = 16;
    const auto sigma = decaying_spectrum(n, 0.05);
    const Matrix a = matrix_with_spectrum(m, n, sigma, 11);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.name = "decaying";
    RandomizedSvd svd(*be, m, n, opt);
    const Factors f = run(svd, a, r);
    const auto ref = reference_singular_values(a);
    check_factors(a, f, r, ref, kRandomizedDecayingSvTol, "decaying");
    const double ratio = residual(a, f.u, f.s, f.vt, r) / tail_norm(ref, r);
    EXPECT_LT(ratio, 1.0 + kRandomizedTol);
    EXPECT_GE(ratio, 1.0 - 1e-6);  // nothing beats the optimal rank-r approximation
}

// Flat spectrum (sigma from 1 down to 0.5, no gap at r): the subspace is ill-determined, yet the
// residual stays near-optimal because every direction costs about the same; power iterations
// and oversampling still buy accuracy in the singular values.
TEST(RandomizedSvd, FlatSpectrumPowerIterationsHelp) {
    auto be = make_cpu_backend();
    const int64_t m = 500, n = 300, r = 16;
    const Matrix a = matrix_with_spectrum(m, n, flat_spectrum(n), 12);
    const auto ref = reference_singular_values(a);
    const double optimal = tail_norm(ref, r);
    double previous = 1e9;
    for (int q : {0, 2, 6}) {
        SvdOptions opt;
        opt.rank = static_cast<int>(r);
        opt.power_iters = q;
        opt.name = "flat";
        RandomizedSvd svd(*be, m, n, opt);
        const Factors f = run(svd, a, r);
        const double ratio = residual(a, f.u, f.s, f.vt, r) / optimal;
        EXPECT_LT(ratio, 1.05) << "q=" << q;
        EXPECT_LT(ratio, previous) << "q=" << q;
        previous = ratio;
        EXPECT_LT(orthogonality_error(f.u, m, r, true), kOrthTol);
    }
}

// Warm start: a sequence of slowly changing matrices (the LoftQ residual), one power iteration
// from the previous subspace stays within 1% of the exact residual.
TEST(RandomizedSvd, WarmStartTracksASlowlyChangingMatrix) {
    auto be = make_cpu_backend();
    const int64_t m = 400, n = 300, r = 16;
    Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(n, 0.04), 21);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.name = "warm";
    RandomizedSvd svd(*be, m, n, opt);
    EXPECT_EQ(svd.next_power_iters(), opt.power_iters);
    std::vector<float> noise(a.data.size());
    for (int t = 0; t < 4; ++t) {
        be->fill_gaussian(5, 1000 + t, 0, noise.size(), noise.data());
        for (size_t i = 0; i < noise.size(); ++i) a.data[i] += 1e-3f * noise[i];
        const Factors f = run(svd, a, r);
        EXPECT_EQ(svd.next_power_iters(), opt.warm_power_iters);
        const double ratio = residual(a, f.u, f.s, f.vt, r) / tail_norm(reference_singular_values(a), r);
        EXPECT_LT(ratio, 1.0 + kRandomizedTol) << "iteration " << t;
    }
    svd.reset_warm_start();
    EXPECT_EQ(svd.next_power_iters(), opt.power_iters);
}

TEST(RandomizedSvd, SameSeedAndNameGiveTheSameBits) {
    auto be = make_cpu_backend();
    const Matrix a = matrix_with_spectrum(300, 200, decaying_spectrum(200, 0.05), 31);
    SvdOptions opt;
    opt.rank = 8;
    opt.name = "layer.0";
    opt.warm_start = false;
    RandomizedSvd one(*be, 300, 200, opt), two(*be, 300, 200, opt);
    const Factors f1 = run(one, a, 8), f2 = run(two, a, 8), f3 = run(one, a, 8);
    EXPECT_EQ(f1.u, f2.u);
    EXPECT_EQ(f1.vt, f2.vt);
    EXPECT_EQ(f1.u, f3.u);  // no warm start: every call starts from the same sketch
}

TEST(RandomizedSvd, ShardsInOneProcessMatchUnsharded) {
    auto be = make_cpu_backend();
    const int64_t m = 256, n = 160, r = 8;
    const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(n, 0.1), 41);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.name = "split";
    RandomizedSvd whole(*be, m, n, opt);
    const Factors ref = run(whole, a, r);
    const ShardLayout layout{{0, 70, 130, 200, 256}, {0, 0, 0, 0}};
    RandomizedSvd sharded(*be, m, n, opt, layout, nullptr);
    Factors f{std::vector<float>(static_cast<size_t>(m * r)), std::vector<float>(r),
              std::vector<float>(static_cast<size_t>(r * n))};
    std::vector<const float*> as;
    std::vector<float*> us;
    for (int s = 0; s < 4; ++s) {
        as.push_back(a.ptr() + layout.row_offsets[s] * n);
        us.push_back(f.u.data() + layout.row_offsets[s] * r);
    }
    sharded.compute_shards(as, us, f.s.data(), f.vt.data());
    EXPECT_LT(relative_product_difference(f.u, f.s, f.vt, ref.u, ref.s, ref.vt, m, n, r), kShardedTol);
    check_factors(a, f, r, reference_singular_values(a), kRandomizedDecayingSvTol, "sharded");
}

TEST(SvdChoice, AutoPicksBySizeAndRejectsBadRequests) {
    SvdOptions opt;
    opt.rank = 64;
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 4096, 11008, opt), SvdMethod::randomized);
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 256, 256, opt), SvdMethod::exact);
    EXPECT_EQ(choose_svd_method(SvdChoice::exact, 4096, 11008, opt), SvdMethod::exact);
    EXPECT_EQ(choose_svd_method(SvdChoice::randomized, 256, 256, opt), SvdMethod::randomized);
    EXPECT_THROW(parse_svd_choice("fast"), ConfigError);
    EXPECT_THROW(choose_svd_method(SvdChoice::automatic, 32, 64, opt), ConfigError);  // rank 64 > 32
    opt.rank = 8;
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 32, 64, opt), SvdMethod::exact);
    auto be = make_cpu_backend();
    EXPECT_THROW(ExactSvd(*be, 32, 64, 33), ConfigError);
    const ShardLayout tiny{{0, 10, 200}, {0, 0}};
    SvdOptions o2;
    o2.rank = 8;
    EXPECT_THROW(RandomizedSvd(*be, 200, 100, o2, tiny, nullptr), ConfigError);  // 10 rows < k
}
