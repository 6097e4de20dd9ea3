// Truncated SVD on the CPU backend: exact (LAPACK gesdd) vs randomized (fresh sketch) vs
// warm-started randomized, at the Llama-2-7B MLP shape 4096 x 11008, r = 64. Reports wall time
// (median of repetitions) and the rank-r residual relative to the exact one:
//   residual_ratio = ||A - U S Vt||_F / sqrt(sum_{i >= r} sigma_i^2)   (1 = optimal)
// Before the timed benchmarks, two accuracy studies with an exact reference at smaller shapes:
//   --study_out FILE  warm start along a LoftQ-like trajectory (how many power iterations a warm
//                     start saves at equal accuracy) and a flat spectrum (what p and q buy there).
// Test matrix ("decaying"): A = G1 diag(exp(-i / 40)) G2 + 1e-4 N, G1 (m x 512), G2 (512 x n), N
// Gaussian, G1 and G2 scaled to unit-norm columns/rows: a decaying head over a flat noise floor.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/matrix.hpp"
#include "lowrank/exact_svd.hpp"
#include "lowrank/randomized_svd.hpp"

using namespace loftq;

namespace {

constexpr int64_t kRows = 4096, kCols = 11008;
constexpr int kRank = 64;

Matrix decaying_matrix(int64_t m, int64_t n, int64_t head, double tau, float noise, uint64_t seed) {
    auto be = make_cpu_backend();
    std::vector<float> g1(static_cast<size_t>(m * head)), g2(static_cast<size_t>(head * n));
    be->fill_gaussian(seed, 1, 0, g1.size(), g1.data());
    be->fill_gaussian(seed, 2, 0, g2.size(), g2.data());
    for (int64_t j = 0; j < head; ++j) {
        const float s = static_cast<float>(std::exp(-static_cast<double>(j) / tau));
        for (int64_t i = 0; i < m; ++i) g1[i * head + j] *= s / std::sqrt(float(m));
    }
    for (auto& x : g2) x /= std::sqrt(float(n));
    Matrix a(m, n);
    be->fill_gaussian(seed, 3, 0, a.data.size(), a.ptr());
    for (auto& x : a.data) x *= noise;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, head, 1.0f, g1.data(), head,
                g2.data(), n, 1.0f, a.ptr(), n);
    return a;
}

// ||A - U diag(s) Vt||_F in float32 GEMM, double accumulation.
double residual(const Matrix& a, const std::vector<float>& u, const std::vector<float>& s,
                const std::vector<float>& vt, int64_t r) {
    std::vector<float> us(u), diff(a.data);
    for (int64_t i = 0; i < a.rows; ++i)
        for (int64_t j = 0; j < r; ++j) us[i * r + j] *= s[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a.rows, a.cols, r, -1.0f, us.data(), r,
                vt.data(), a.cols, 1.0f, diff.data(), a.cols);
    double acc = 0;
    for (float x : diff) acc += double(x) * x;
    return std::sqrt(acc);
}

double tail(const std::vector<float>& sigma, int64_t r) {
    double acc = 0;
    for (size_t i = static_cast<size_t>(r); i < sigma.size(); ++i) acc += double(sigma[i]) * sigma[i];
    return std::sqrt(acc);
}

struct Out {
    std::vector<float> u, s, vt;
    Out(int64_t m, int64_t n, int64_t r)
        : u(static_cast<size_t>(m * r)), s(static_cast<size_t>(r)), vt(static_cast<size_t>(r * n)) {}
    void run(TruncatedSvd& svd, const Matrix& a) { svd.compute(a.ptr(), u.data(), s.data(), vt.data()); }
};

// The shared 4096 x 11008 fixture and its exact optimal residual (from the first exact run).
const Matrix& big() {
    static const Matrix a = decaying_matrix(kRows, kCols, 512, 40.0, 1e-4f, 2024);
    return a;
}
double g_exact_tail = 0;

void set_ratio(benchmark::State& st, const Matrix& a, const Out& o) {
    const double res = residual(a, o.u, o.s, o.vt, kRank);
    st.counters["residual"] = res;
    if (g_exact_tail > 0) st.counters["residual_ratio"] = res / g_exact_tail;
}

void BM_Exact(benchmark::State& st) {
    auto be = make_cpu_backend();
    const Matrix& a = big();
    ExactSvd svd(*be, kRows, kCols, kRank);
    Out o(kRows, kCols, kRank);
    for (auto _ : st) o.run(svd, a);
    g_exact_tail = tail(svd.all_singular_values(), kRank);
    set_ratio(st, a, o);
}

void BM_Randomized(benchmark::State& st) {
    auto be = make_cpu_backend();
    const Matrix& a = big();
    SvdOptions opt;
    opt.rank = kRank;
    opt.oversample = static_cast<int>(st.range(0));
    opt.power_iters = static_cast<int>(st.range(1));
    opt.warm_start = false;
    opt.name = "bench";
    RandomizedSvd svd(*be, kRows, kCols, opt);
    Out o(kRows, kCols, kRank);
    for (auto _ : st) o.run(svd, a);
    set_ratio(st, a, o);
}

// Warm: primed by one call on a slightly different matrix (the previous LoftQ iterate), then timed.
void BM_RandomizedWarm(benchmark::State& st) {
    auto be = make_cpu_backend();
    const Matrix& a = big();
    SvdOptions opt;
    opt.rank = kRank;
    opt.warm_power_iters = static_cast<int>(st.range(0));
    opt.name = "bench";
    RandomizedSvd svd(*be, kRows, kCols, opt);
    Out o(kRows, kCols, kRank);
    Matrix prev(a);
    std::vector<float> n(prev.data.size());
    be->fill_gaussian(9, 9, 0, n.size(), n.data());
    for (size_t i = 0; i < n.size(); ++i) prev.data[i] += 1e-4f * n[i];
    for (auto _ : st) {
        st.PauseTiming();
        svd.reset_warm_start();
        o.run(svd, prev);
        st.ResumeTiming();
        o.run(svd, a);
    }
    set_ratio(st, a, o);
}

// 4-bit absmax round-to-nearest over blocks of 64 of the flattened matrix (a stand-in for the
// project's quantizers: it only has to produce a LoftQ-like residual trajectory).
void quantize4(const std::vector<float>& x, std::vector<float>& q) {
    for (size_t b = 0; b < x.size(); b += 64) {
        const size_t e = std::min(x.size(), b + 64);
        float amax = 0;
        for (size_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float step = amax > 0 ? amax / 7.0f : 1.0f;
        for (size_t i = b; i < e; ++i) q[i] = std::nearbyint(x[i] / step) * step;
    }
}

// LoftQ trajectory driven by the exact SVD: R_t = W - Q(W - L_{t-1}); every randomized variant
// sees the same R_t sequence and keeps its own warm state.
nlohmann::json warm_study(int64_t m, int64_t n, int r, int iters) {
    auto be = make_cpu_backend();
    const Matrix w = decaying_matrix(m, n, 512, 40.0, 1e-4f, 77);
    struct Variant { std::string label; bool warm; int q; std::unique_ptr<RandomizedSvd> svd; std::vector<double> ratio; };
    std::vector<Variant> vs;
    for (int q : {0, 1, 2, 3}) {
        SvdOptions o;
        o.rank = r;
        o.name = "study";
        o.power_iters = q;
        o.warm_start = false;
        vs.push_back({"fresh_q" + std::to_string(q), false, q, std::make_unique<RandomizedSvd>(*be, m, n, o), {}});
    }
    for (int q : {0, 1, 2}) {
        SvdOptions o;
        o.rank = r;
        o.name = "study";
        o.power_iters = 2;  // first call fresh at the default, then warm with q
        o.warm_power_iters = q;
        vs.push_back({"warm_q" + std::to_string(q), true, q, std::make_unique<RandomizedSvd>(*be, m, n, o), {}});
    }
    ExactSvd exact(*be, m, n, r);
    Matrix res(m, n), low(m, n);
    std::vector<float> target(w.data.size()), q(w.data.size());
    Out eo(m, n, r), ro(m, n, r);
    nlohmann::json exact_resid = nlohmann::json::array();
    for (int t = 0; t < iters; ++t) {
        for (size_t i = 0; i < target.size(); ++i) target[i] = w.data[i] - low.data[i];
        quantize4(target, q);
        for (size_t i = 0; i < q.size(); ++i) res.data[i] = w.data[i] - q[i];
        eo.run(exact, res);
        const double opt = tail(exact.all_singular_values(), r);
        exact_resid.push_back(opt);
        for (auto& v : vs) {
            ro.run(*v.svd, res);
            v.ratio.push_back(residual(res, ro.u, ro.s, ro.vt, r) / opt);
        }
        std::vector<float> us(eo.u);
        for (int64_t i = 0; i < m; ++i)
            for (int j = 0; j < r; ++j) us[i * r + j] *= eo.s[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0f, us.data(), r,
                    eo.vt.data(), n, 0.0f, low.ptr(), n);
    }
    nlohmann::json j;
    j["shape"] = {m, n};
    j["rank"] = r;
    j["oversample"] = 16;
    j["loftq_iterations"] = iters;
    j["exact_residual_per_iteration"] = exact_resid;
    for (auto& v : vs) {
        double worst = 0;
        for (size_t t = 1; t < v.ratio.size(); ++t) worst = std::max(worst, v.ratio[t]);
        j["variants"][v.label] = {{"residual_ratio_per_iteration", v.ratio},
                                  {"worst_ratio_after_first_iteration", worst},
                                  {"power_iters_after_first", v.q}};
    }
    return j;
}

// Flat spectrum (sigma_i = 1 - 0.5 i / p over the whole matrix, no gap at r): residual ratio and
// worst singular-value error / sigma_0 for several p and q.
nlohmann::json flat_study(int64_t m, int64_t n, int r) {
    auto be = make_cpu_backend();
    // Orthonormal factors are costly at this size; a Gaussian matrix has a flat-ish
    // Marchenko-Pastur spectrum with no gap, which is the regime in question.
    Matrix a(m, n);
    be->fill_gaussian(5, 5, 0, a.data.size(), a.ptr());
    ExactSvd exact(*be, m, n, r);
    Out eo(m, n, r), ro(m, n, r);
    eo.run(exact, a);
    const auto sig = exact.all_singular_values();
    const double opt = tail(sig, r);
    nlohmann::json rows = nlohmann::json::array();
    for (int p : {0, 8, 16, 32})
        for (int q : {0, 1, 2, 4}) {
            SvdOptions o;
            o.rank = r;
            o.oversample = p;
            o.power_iters = q;
            o.warm_start = false;
            o.name = "flat";
            RandomizedSvd svd(*be, m, n, o);
            ro.run(svd, a);
            double sv_err = 0;
            for (int i = 0; i < r; ++i) sv_err = std::max(sv_err, std::fabs(double(ro.s[i]) - sig[i]) / sig[0]);
            rows.push_back({{"oversample", p}, {"power_iters", q},
                            {"residual_ratio", residual(a, ro.u, ro.s, ro.vt, r) / opt},
                            {"max_singular_value_error_rel", sv_err}});
        }
    return {{"shape", {m, n}}, {"rank", r}, {"matrix", "Gaussian (Marchenko-Pastur, no gap)"},
            {"sigma_r_over_sigma_0", sig[r] / sig[0]}, {"grid", rows}};
}

}  // namespace

BENCHMARK(BM_Exact)->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(3)->ReportAggregatesOnly(false);
BENCHMARK(BM_Randomized)->Args({16, 2})->Args({16, 1})->Args({16, 0})->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(9);
BENCHMARK(BM_RandomizedWarm)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(9);

int main(int argc, char** argv) {
    std::string study_out;
    std::vector<char*> rest;
    for (int i = 0; i < argc; ++i) {
        if (std::strncmp(argv[i], "--study_out=", 12) == 0) study_out = argv[i] + 12;
        else rest.push_back(argv[i]);
    }
    int rc = static_cast<int>(rest.size());
    benchmark::Initialize(&rc, rest.data());
    if (!study_out.empty()) {
        nlohmann::json j;
        j["warm_start"] = warm_study(1024, 2752, 32, 5);
        j["flat_spectrum"] = flat_study(1024, 2752, 32);
        std::ofstream(study_out) << j.dump(2) << "\n";
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
