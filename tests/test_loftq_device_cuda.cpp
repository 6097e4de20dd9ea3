// The LoftQ loop on the CUDA backend (device-resident quantization, loftq/device_quant.hpp)
// against the CPU backend, on heavy-tailed 384 x 640 weights with the exact SVD:
// - T = 1: Q is a quantization of W alone: codes and absmax bit for bit, errors within 1e-5.
// - T = 3: the same chosen iteration, errors within 1e-5 and the product B A within 1e-4.
// - W already on the device (ShardInput::in_backend_memory) gives bit for bit the run from host W.
// - fp16 backbone (host-staged on CUDA): codes bit for bit at T = 1.
// GPU-only (ctest label gpu): Skipped without a CUDA device. The CPU-side contract (device
// quantization is never chosen for the CPU backend) is in test_loftq_device.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "loftq/device_quant.hpp"
#include "loftq/loftq_loop.hpp"
#include "quant/format.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

constexpr int64_t kRows = 384, kCols = 640;

LoftqOptions options(int iters, Backbone backbone = Backbone::BF16) {
    LoftqOptions o;
    o.quant.format = &select_format("nf", 4);
    o.quant.blocksize = 64;
    o.backbone = backbone;
    o.iters = iters;
    o.svd = "exact";
    o.svd_options.rank = 16;
    return o;
}

double product_diff(const LoftqResult& a, const LoftqResult& b, int r) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < kRows; ++i)
        for (int64_t j = 0; j < kCols; ++j) {
            double pa = 0, pb = 0;
            for (int k = 0; k < r; ++k) {
                pa += double(a.B[0][i * r + k]) * a.A[k * kCols + j];
                pb += double(b.B[0][i * r + k]) * b.A[k * kCols + j];
            }
            num += (pa - pb) * (pa - pb);
            den += pa * pa;
        }
    return std::sqrt(num / den);
}

void expect_same_codes(const LoftqResult& a, const LoftqResult& b) {
    ASSERT_EQ(a.q.size(), 1u);
    ASSERT_EQ(b.q.size(), 1u);
    EXPECT_EQ(a.q[0].packed, b.q[0].packed);
    ASSERT_EQ(a.q[0].absmax.size(), b.q[0].absmax.size());
    for (size_t i = 0; i < a.q[0].absmax.size(); ++i)
        ASSERT_EQ(testing::float_bits(a.q[0].absmax[i]), testing::float_bits(b.q[0].absmax[i])) << "block " << i;
}

class LoftqDeviceGpu : public ::testing::Test {
protected:
    void SetUp() override {
        if (!cuda_device_present()) GTEST_SKIP() << "no CUDA device";
        cpu = make_cpu_backend();
        gpu = make_cuda_backend(0);
        w = testing::heavy_tailed(kRows * kCols, 42);
    }
    std::unique_ptr<LinalgBackend> cpu, gpu;
    std::vector<float> w;
};

TEST_F(LoftqDeviceGpu, OneIterationCodesBitExact) {
    ASSERT_TRUE(device_quant_supported(*gpu, options(1).quant, Backbone::BF16));
    const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, options(1));
    const LoftqResult g = run_loftq(*gpu, "w", w.data(), kRows, kCols, options(1));
    expect_same_codes(c, g);
    EXPECT_NEAR(c.qlora_error, g.qlora_error, 1e-5);
    EXPECT_NEAR(c.iteration_error[0], g.iteration_error[0], 1e-5);
    EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5);
    EXPECT_LT(product_diff(c, g, 16), 1e-4);
}

TEST_F(LoftqDeviceGpu, ThreeIterationsMatchTheCpu) {
    const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, options(3));
    const LoftqResult g = run_loftq(*gpu, "w", w.data(), kRows, kCols, options(3));
    EXPECT_EQ(c.chosen_iteration, g.chosen_iteration);
    ASSERT_EQ(g.iteration_error.size(), 3u);
    for (int t = 0; t < 3; ++t) EXPECT_NEAR(c.iteration_error[t], g.iteration_error[t], 1e-5) << "t = " << t + 1;
    EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5);
    EXPECT_LT(product_diff(c, g, 16), 1e-4);
    int64_t differ = 0;
    for (size_t i = 0; i < c.q[0].packed.size(); ++i) differ += c.q[0].packed[i] != g.q[0].packed[i];
    EXPECT_LE(differ, static_cast<int64_t>(c.q[0].packed.size() / 1000)) << differ << " code bytes differ";
}

TEST_F(LoftqDeviceGpu, WeightsAlreadyOnTheDeviceGiveTheSameBits) {
    const LoftqResult host = run_loftq(*gpu, "w", w.data(), kRows, kCols, options(3));
    DeviceBuffer dw(*gpu, w.size());
    gpu->upload(dw.get(), w.data(), w.size());
    ShardInput in{0, kRows, dw.get()};
    in.in_backend_memory = true;
    const LoftqResult dev = run_loftq_sharded(*gpu, nullptr, ShardLayout::single(kRows), "w", {in}, kRows, kCols,
                                              options(3));
    expect_same_codes(host, dev);
    EXPECT_EQ(host.A, dev.A);
    EXPECT_EQ(host.B, dev.B);
    EXPECT_EQ(host.iteration_error, dev.iteration_error);
    EXPECT_EQ(host.loaded_error, dev.loaded_error);
}

TEST_F(LoftqDeviceGpu, HostStagedFp16BackboneCodesBitExact) {
    ASSERT_FALSE(device_quant_supported(*gpu, options(1).quant, Backbone::FP16));
    const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, options(1, Backbone::FP16));
    const LoftqResult g = run_loftq(*gpu, "w", w.data(), kRows, kCols, options(1, Backbone::FP16));
    expect_same_codes(c, g);
    EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5);
}

TEST_F(LoftqDeviceGpu, NonFiniteWeightsAreRejected) {
    std::vector<float> bad = w;
    bad[1234] = std::nanf("");
    EXPECT_THROW(run_loftq(*gpu, "w", bad.data(), kRows, kCols, options(1)), InputError);
}

}  // namespace
}  // namespace loftq
