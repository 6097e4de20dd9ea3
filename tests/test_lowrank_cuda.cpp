// The CUDA backend against the CPU backend (skipped without a device): the same Gaussian sketch
// bits, the same factorizations within float32 rounding, the same exact and randomized truncated
// SVDs (signs included, by the shared sign convention).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "lowrank/exact_svd.hpp"
#include "lowrank/randomized_svd.hpp"
#include "support/lowrank_fixtures.hpp"

using namespace loftq;
using namespace loftq::testing;

namespace {

constexpr double kProductTol = 1e-4;    // GPU vs CPU U S Vt, relative (float32, different BLAS)
constexpr double kOrthTol = 2e-5;
constexpr double kSingularValueTol = 1e-5;  // GPU exact vs LAPACK double, / s_0
// Box-Muller in double on both sides: a 1-ulp libm difference flips a float rounding with
// probability ~1e-8 per element (core/philox.hpp).
constexpr size_t kMaxSketchMismatches = 2;

#define REQUIRE_GPU()                                                   \
    do {                                                                \
        if (!cuda_device_present()) GTEST_SKIP() << "no CUDA device";   \
    } while (0)

struct Factors {
    std::vector<float> u, s, vt;
};

Factors run_on(LinalgBackend& be, TruncatedSvd& svd, const Matrix& a, int64_t r, int calls = 1) {
    const size_t mn = a.data.size(), mr = static_cast<size_t>(a.rows * r), rn = static_cast<size_t>(r * a.cols);
    DeviceBuffer da(be, mn), du(be, mr), ds(be, r), dvt(be, rn);
    be.upload(da.get(), a.ptr(), mn);
    for (int c = 0; c < calls; ++c) svd.compute(da.get(), du.get(), ds.get(), dvt.get());
    Factors f{std::vector<float>(mr), std::vector<float>(r), std::vector<float>(rn)};
    be.download(f.u.data(), du.get(), mr);
    be.download(f.s.data(), ds.get(), r);
    be.download(f.vt.data(), dvt.get(), rn);
    return f;
}

}  // namespace

TEST(CudaBackend, SketchBitsMatchTheCpu) {
    REQUIRE_GPU();
    auto gpu = make_cuda_backend(0);
    auto cpu = make_cpu_backend();
    const size_t n = 1 << 20;
    std::vector<float> host(n), dev_copy(n);
    cpu->fill_gaussian(11, 0x1234abcdULL, 17, n, host.data());
    DeviceBuffer d(*gpu, n);
    gpu->fill_gaussian(11, 0x1234abcdULL, 17, n, d.get());
    gpu->download(dev_copy.data(), d.get(), n);
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) {
        mismatches += host[i] != dev_copy[i];
        ASSERT_NEAR(host[i], dev_copy[i], 1e-6f * (1 + std::fabs(host[i]))) << i;
    }
    EXPECT_LE(mismatches, kMaxSketchMismatches);
}

TEST(CudaBackend, ExactSvdMatchesCpuBothOrientations) {
    REQUIRE_GPU();
    auto gpu = make_cuda_backend(0);
    auto cpu = make_cpu_backend();
    for (auto [m, n] : {std::pair<int64_t, int64_t>{300, 500}, {500, 300}}) {
        const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(std::min(m, n), 0.03), m + n);
        const int r = 16;
        ExactSvd g(*gpu, m, n, r), c(*cpu, m, n, r);
        const Factors fg = run_on(*gpu, g, a, r), fc = run_on(*cpu, c, a, r);
        EXPECT_LT(relative_product_difference(fg.u, fg.s, fg.vt, fc.u, fc.s, fc.vt, m, n, r), kProductTol);
        EXPECT_LT(orthogonality_error(fg.u, m, r, true), kOrthTol);
        EXPECT_LT(orthogonality_error(fg.vt, n, r, false), kOrthTol);
        const auto ref = reference_singular_values(a);
        for (int i = 0; i < r; ++i) EXPECT_NEAR(fg.s[i], ref[i], kSingularValueTol * ref[0]);
        // Same sign convention: columns agree, not just products.
        double du = 0;
        for (size_t i = 0; i < fg.u.size(); ++i) du = std::max(du, double(std::fabs(fg.u[i] - fc.u[i])));
        EXPECT_LT(du, 1e-3);
    }
}

TEST(CudaBackend, StoriesExactSvdMatchesCpu) {
    REQUIRE_GPU();
    auto gpu = make_cuda_backend(0);
    auto cpu = make_cpu_backend();
    for (const auto& name : stories_linear_names()) {
        const Matrix w = load_stories_tensor(name);
        ExactSvd g(*gpu, w.rows, w.cols, 8), c(*cpu, w.rows, w.cols, 8);
        const Factors fg = run_on(*gpu, g, w, 8), fc = run_on(*cpu, c, w, 8);
        EXPECT_LT(relative_product_difference(fg.u, fg.s, fg.vt, fc.u, fc.s, fc.vt, w.rows, w.cols, 8),
                  kProductTol) << name;
    }
}

TEST(CudaBackend, RandomizedSvdMatchesCpuFreshAndWarm) {
    REQUIRE_GPU();
    auto gpu = make_cuda_backend(0);
    auto cpu = make_cpu_backend();
    const int64_t m = 1024, n = 2816, r = 32;
    const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(m, 0.02), 5);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.name = "model.layers.0.mlp.up_proj.weight";
    for (int calls : {1, 2}) {
        RandomizedSvd g(*gpu, m, n, opt), c(*cpu, m, n, opt);
        const Factors fg = run_on(*gpu, g, a, r, calls), fc = run_on(*cpu, c, a, r, calls);
        EXPECT_LT(relative_product_difference(fg.u, fg.s, fg.vt, fc.u, fc.s, fc.vt, m, n, r), kProductTol)
            << "calls " << calls;
        EXPECT_LT(orthogonality_error(fg.u, m, r, true), kOrthTol);
        const double ratio = residual(a, fg.u, fg.s, fg.vt, r) / tail_norm(reference_singular_values(a), r);
        EXPECT_LT(ratio, 1.01);
    }
}

TEST(CudaBackend, ShardedRandomizedSvdInOneProcessMatchesUnsharded) {
    REQUIRE_GPU();
    auto gpu = make_cuda_backend(0);
    const int64_t m = 512, n = 384, r = 8;
    const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(n, 0.05), 9);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.name = "split";
    RandomizedSvd whole(*gpu, m, n, opt);
    const Factors ref = run_on(*gpu, whole, a, r);
    const ShardLayout layout{{0, 128, 256, 384, 512}, {0, 0, 0, 0}};
    RandomizedSvd sharded(*gpu, m, n, opt, layout, nullptr);
    DeviceBuffer da(*gpu, a.data.size()), du(*gpu, m * r), ds(*gpu, r), dvt(*gpu, r * n);
    gpu->upload(da.get(), a.ptr(), a.data.size());
    std::vector<const float*> as;
    std::vector<float*> us;
    for (int s = 0; s < 4; ++s) {
        as.push_back(da.get() + layout.row_offsets[s] * n);
        us.push_back(du.get() + layout.row_offsets[s] * r);
    }
    sharded.compute_shards(as, us, ds.get(), dvt.get());
    Factors f{std::vector<float>(m * r), std::vector<float>(r), std::vector<float>(r * n)};
    gpu->download(f.u.data(), du.get(), f.u.size());
    gpu->download(f.s.data(), ds.get(), r);
    gpu->download(f.vt.data(), dvt.get(), f.vt.size());
    EXPECT_LT(relative_product_difference(f.u, f.s, f.vt, ref.u, ref.s, ref.vt, m, n, r), 1e-5);
}
