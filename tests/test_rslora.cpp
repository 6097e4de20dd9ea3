// --rslora through the LoftQ loop (`loftq quantize` on stories260K, rank 8, one process): PEFT
// applies s = lora_alpha / sqrt(r) instead of lora_alpha / r, and with scale compensation (the
// default) the loop stores A, B such that s * B * A is the low-rank term it computed. So:
// - for each run, the stored Q (codes + absmax as loaded) and s * B * A reproduce the run file's
//   loaded_error ||W - Q - s B A|| / ||W||, recomputed here in double from stories260K's W;
// - between the runs with and without --rslora, s * B * A (each with its own s) and loaded_error
//   are equal up to float rounding, while B and A themselves differ by the factor
//   sqrt(s_plain / s_rslora): the flag reached the loop (if the loop ignored it, B A would be the
//   same and the two s * B * A would differ by s_rslora / s_plain = sqrt(8)).
// T = 1 (Q = q(W) in both runs, one SVD of the same residual) is equal to float rounding of the
// factor; at T = 3 the next iterations quantize W - s B A computed from the scaled factors, where
// one float ulp can move an element across a code threshold, so the tolerance there is looser.
// Measured here (OpenBLAS): s B A differs by <= 9.3e-8 relative at T = 1 and T = 3, loaded_error
// by <= 6e-9; the recomputed loaded_error matches the stored one to 5e-9.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "io/runfile.hpp"
#include "quant/format.hpp"
#include "quant/quantize.hpp"
#include "support/paths.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

using testing::TempDir;

constexpr int kRank = 8;
constexpr double kAlpha = 16;  // --lora-alpha default

std::string quantize(const TempDir& dir, int iters, bool rslora) {
    const std::string work = dir / ("run_" + std::to_string(iters) + (rslora ? "_rslora" : "") + ".h5");
    const std::string cmd = testing::loftq_binary() + " quantize --model " + testing::stories_dir() + " --work " +
                            work + " --rank " + std::to_string(kRank) + " --iters " + std::to_string(iters) +
                            (rslora ? " --rslora" : "");
    const auto r = testing::run_command(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    return work;
}

// s * B * A in double, rows x cols.
std::vector<double> low_rank_term(const MatrixRecord& m, double s) {
    std::vector<double> out(static_cast<size_t>(m.layout.rows * m.layout.cols), 0.0);
    for (int64_t i = 0; i < m.layout.rows; ++i)
        for (int k = 0; k < kRank; ++k) {
            const double b = s * m.B[static_cast<size_t>(i * kRank + k)];
            for (int64_t j = 0; j < m.layout.cols; ++j) out[i * m.layout.cols + j] += b * m.A[static_cast<size_t>(k * m.layout.cols + j)];
        }
    return out;
}

double relative_difference(const std::vector<double>& x, const std::vector<double>& y) {
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        num += (x[i] - y[i]) * (x[i] - y[i]);
        den += x[i] * x[i];
    }
    return std::sqrt(num / den);
}

// ||W - Q - L|| / ||W|| with Q as transformers holds it (default bf16 backbone, nf4).
double loaded_error(const MatrixRecord& m, const std::vector<float>& w, const std::vector<double>& l) {
    QuantizedTensor q;
    q.format = find_format(m.layout.format);
    q.blocksize = static_cast<int>(m.layout.blocksize);
    q.numel = m.layout.rows * m.layout.cols;
    q.packed = m.codes;
    q.absmax = m.absmax;
    std::vector<float> qv(static_cast<size_t>(q.numel));
    loaded_values(q, Backbone::BF16, qv.data());
    double num = 0, den = 0;
    for (size_t i = 0; i < qv.size(); ++i) {
        const double e = double(w[i]) - qv[i] - l[i];
        num += e * e;
        den += double(w[i]) * w[i];
    }
    return std::sqrt(num / den);
}

void compare_runs(int iters, double product_tol, double error_tol) {
    TempDir dir;
    const RunFile plain = RunFile::open_read(quantize(dir, iters, false));
    const RunFile rs = RunFile::open_read(quantize(dir, iters, true));
    std::map<std::string, std::vector<float>> weights;
    for (auto& t : testing::stories_target_weights()) weights[t.name] = std::move(t.data);
    const double s_plain = kAlpha / kRank, s_rs = kAlpha / std::sqrt(double(kRank));
    ASSERT_EQ(plain.layout().size(), rs.layout().size());
    ASSERT_GT(plain.layout().size(), 0u);
    for (size_t i = 0; i < plain.layout().size(); ++i) {
        const MatrixRecord a = plain.read_matrix(i), b = rs.read_matrix(i);
        SCOPED_TRACE(a.layout.name + ", T = " + std::to_string(iters));
        ASSERT_EQ(a.layout.name, b.layout.name);
        ASSERT_FALSE(a.layout.double_quant);
        ASSERT_EQ(weights.count(a.layout.name), 1u);
        const std::vector<float>& w = weights[a.layout.name];
        const std::vector<double> la = low_rank_term(a, s_plain), lb = low_rank_term(b, s_rs);
        // Each run: the stored factors times its own s give the error the loop measured.
        EXPECT_NEAR(loaded_error(a, w, la), a.loaded_error, 1e-6 * a.loaded_error);
        EXPECT_NEAR(loaded_error(b, w, lb), b.loaded_error, 1e-6 * b.loaded_error);
        // Between the runs: the same low-rank term and error, from differently scaled factors.
        EXPECT_LT(relative_difference(la, lb), product_tol);
        EXPECT_NEAR(a.loaded_error, b.loaded_error, error_tol * a.loaded_error);
        const std::vector<double> ba_a = low_rank_term(a, 1.0), ba_b = low_rank_term(b, 1.0);
        std::vector<double> scaled(ba_b.size());
        for (size_t k = 0; k < scaled.size(); ++k) scaled[k] = ba_b[k] * (s_rs / s_plain);
        EXPECT_LT(relative_difference(ba_a, scaled), product_tol) << "B A should scale by s_rslora / s_plain";
        EXPECT_GT(relative_difference(ba_a, ba_b), 0.5) << "--rslora left the stored factors unchanged";
    }
}

TEST(Rslora, OneIterationScalingAppliedToFloatRounding) { compare_runs(1, 1e-6, 1e-6); }

TEST(Rslora, ThreeIterationsScalingApplied) { compare_runs(3, 1e-5, 1e-5); }

}  // namespace
}  // namespace loftq
