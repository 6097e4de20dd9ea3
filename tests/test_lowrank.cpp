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
        // Matrices of 32..172 columns with flat spectra need oversampling: without it the q + 1
        // Krylov blocks span only 3 r = 12 columns (--svd auto runs them exact).
        opt.oversample = 16;
        opt.name = name;
        RandomizedSvd svd(*be, w.rows, w.cols, opt);
        const Factors f = run(svd, w, r);
        const auto ref = reference_singular_values(w);
        check_factors(w, f, r, ref, kRandomizedFlatSvTol, name);
        EXPECT_LT(residual(w, f.u, f.s, f.vt, r) / tail_norm(ref, r), 1.0 + kRandomizedTol) << name;
    }
}

// At the defaults (no oversampling) the rank-r product is within 1% of optimal, but the Ritz values
// next to the cut (s_12..s_15 here) are only good to ~1e-3 s_0; with oversampling every singular
// value is within 1e-4 s_0. LoftQ uses the product (bench/results/passes.md).
TEST(RandomizedSvd, DecayingSpectrumAtDefaultsWithinOnePercent) {
    auto be = make_cpu_backend();
    const int64_t m = 600, n = 400, r = 16;
    const auto sigma = decaying_spectrum(n, 0.05);
    const Matrix a = matrix_with_spectrum(m, n, sigma, 11);
    const auto ref = reference_singular_values(a);
    for (int p : {SvdOptions().oversample, 16}) {
        SvdOptions opt;
        opt.rank = static_cast<int>(r);
        opt.oversample = p;
        opt.name = "decaying";
        RandomizedSvd svd(*be, m, n, opt);
        const Factors f = run(svd, a, r);
        check_factors(a, f, r, ref, p > 0 ? kRandomizedDecayingSvTol : 3e-3, "decaying");
        const double ratio = residual(a, f.u, f.s, f.vt, r) / tail_norm(ref, r);
        EXPECT_LT(ratio, 1.0 + kRandomizedTol) << "oversample " << p;
        EXPECT_GE(ratio, 1.0 - 1e-6);  // nothing beats the optimal rank-r approximation
    }
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

// The Krylov scheme keeps every block the fresh power steps make: at the same 2q + 2 passes over
// A it beats the subspace scheme (the last block only) on a flat spectrum, where power iteration
// alone converges slowly (the LoftQ residual: quantization noise, bench/results/passes.md).
TEST(RandomizedSvd, KrylovBlocksBeatTheLastBlockAtTheSamePasses) {
    auto be = make_cpu_backend();
    const int64_t m = 500, n = 300, r = 16;
    const Matrix a = matrix_with_spectrum(m, n, flat_spectrum(n), 13);
    const auto ref = reference_singular_values(a);
    const double optimal = tail_norm(ref, r);
    double ratio[2] = {0, 0};
    for (PowerScheme scheme : {PowerScheme::subspace, PowerScheme::krylov}) {
        SvdOptions opt;
        opt.rank = static_cast<int>(r);
        opt.power_iters = 2;
        opt.scheme = scheme;
        opt.name = "flat";
        RandomizedSvd svd(*be, m, n, opt);
        const Factors f = run(svd, a, r);
        EXPECT_EQ(svd.last_gemm_passes(), 6);
        EXPECT_EQ(svd.last_gemm_columns(), scheme == PowerScheme::krylov ? 5 * 16 + 3 * 16 : 6 * 16);
        ratio[scheme == PowerScheme::krylov] = residual(a, f.u, f.s, f.vt, r) / optimal;
        EXPECT_LT(orthogonality_error(f.u, m, r, true), kOrthTol);
        EXPECT_LT(orthogonality_error(f.vt, n, r, false), kOrthTol);
    }
    EXPECT_LT(ratio[1], ratio[0]);
    EXPECT_GE(ratio[1], 1.0 - 1e-6);
    // The fresh step's blocks are far closer to optimal: less than half the excess residual.
    EXPECT_LT(ratio[1] - 1.0, 0.5 * (ratio[0] - 1.0));
}

// A matrix too small for q + 1 Krylov blocks keeps as many as fit (here 2 of 3 blocks of 16 in 40
// rows): the power step they cannot hold runs first on the sketch alone, the passes stay 2q + 2.
TEST(RandomizedSvd, KrylovBlocksThatDoNotFitAreClamped) {
    auto be = make_cpu_backend();
    const int64_t m = 40, n = 200, r = 8;
    const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(m, 0.1), 17);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.oversample = 8;
    opt.power_iters = 2;
    opt.name = "small";
    RandomizedSvd svd(*be, m, n, opt);
    const Factors f = run(svd, a, r);
    EXPECT_EQ(svd.last_gemm_passes(), 6);
    EXPECT_EQ(svd.last_gemm_columns(), 5 * 16 + 2 * 16);
    check_factors(a, f, r, reference_singular_values(a), kRandomizedDecayingSvTol, "small");
    EXPECT_LT(residual(a, f.u, f.s, f.vt, r) / tail_norm(reference_singular_values(a), r), 1.0 + kRandomizedTol);
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
    opt.oversample = 16;  // k = 24: 2 of the 3 Krylov blocks fit the 56-row shard (clamped)
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
    // Krylov (default, q = 2): 2 (q + 1) k <= min side; the subspace scheme: 4 k <= min side.
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 383, 4096, opt), SvdMethod::exact);
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 384, 4096, opt), SvdMethod::randomized);
    SvdOptions sub = opt;
    sub.scheme = PowerScheme::subspace;
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 256, 4096, sub), SvdMethod::randomized);
    EXPECT_THROW(parse_power_scheme("lanczos"), ConfigError);
    EXPECT_EQ(parse_power_scheme("subspace"), PowerScheme::subspace);
    EXPECT_EQ(choose_svd_method(SvdChoice::exact, 4096, 11008, opt), SvdMethod::exact);
    EXPECT_EQ(choose_svd_method(SvdChoice::randomized, 256, 256, opt), SvdMethod::randomized);
    EXPECT_THROW(parse_svd_choice("fast"), ConfigError);
    EXPECT_THROW(choose_svd_method(SvdChoice::automatic, 32, 64, opt), ConfigError);  // rank 64 > 32
    opt.rank = 8;
    EXPECT_EQ(choose_svd_method(SvdChoice::automatic, 32, 64, opt), SvdMethod::exact);
    auto be = make_cpu_backend();
    EXPECT_THROW(ExactSvd(*be, 32, 64, 33), ConfigError);
    const ShardLayout tiny{{0, 7, 200}, {0, 0}};
    SvdOptions o2;
    o2.rank = 8;
    EXPECT_THROW(RandomizedSvd(*be, 200, 100, o2, tiny, nullptr), ConfigError);  // 7 rows < k
}
