// The parameterised suite of the LoftQ loop and the backend's quantize-as-loaded slots
// (QuantSlots) over a backend name, one definition for both backends. Each binary instantiates it
// for one backend: test_loftq_device.cpp for "cpu" (always runs), test_loftq_device_cuda.cpp for
// "cuda" (ctest label gpu: Skipped without a device). Included once per test binary.
//
// Every case compares against the CPU functions of quant/quantize.hpp or the CPU backend:
// - slots: codes, absmax and Q as loaded equal quantize_as_loaded bit for bit for every format,
//   backbone and double quantization (on CUDA: the kernel, or the backend's host staging);
//   keep_current swaps; QLoRA's plain error; a step in place (low == res) gives the bits of a step
//   with a separate low, through the slots and through quantize_residual_steps;
// - loop, heavy-tailed 384 x 640 weights, exact SVD: T = 1 codes bit for bit; T = 3 the same
//   chosen iteration and errors within 1e-5 (bit for bit on the CPU backend); W already in
//   backend memory gives the same bits as W from the host; fp16 backbone and double quantization
//   codes bit for bit; non-finite weights are an InputError; the last step ends as stored (its
//   error is the error as loaded, recomputed here from Q, A and B).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "loftq/loftq_loop.hpp"
#include "quant/format.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

constexpr int64_t kRows = 384, kCols = 640;

LoftqOptions options(int iters, Backbone backbone = Backbone::BF16, bool double_quant = false) {
    LoftqOptions o;
    o.quant.format = &select_format("nf", 4);
    o.quant.blocksize = 64;
    o.quant.double_quant = double_quant;
    o.backbone = backbone;
    o.iters = iters;
    o.svd = SvdChoice::exact;
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

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i)
        ASSERT_EQ(testing::float_bits(a[i]), testing::float_bits(b[i])) << what << " element " << i;
}

void expect_same_codes(const QuantizedTensor& a, const QuantizedTensor& b, const std::string& what) {
    EXPECT_EQ(a.packed, b.packed) << what;
    expect_same_bits(a.absmax, b.absmax, what + " absmax");
    EXPECT_EQ(a.double_quant, b.double_quant) << what;
    if (a.double_quant) {
        EXPECT_EQ(a.nested.codes, b.nested.codes) << what;
        expect_same_bits(a.absmax_exact, b.absmax_exact, what + " absmax_exact");
    }
}

class LoftqBackend : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (GetParam() == "cuda" && cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
        be = make_backend(GetParam(), 0);
        cpu = make_cpu_backend();
        w = testing::heavy_tailed(kRows * kCols, 42);
    }
    bool is_cpu() const { return GetParam() == "cpu"; }

    // x (host) in backend memory.
    DeviceBuffer put(const std::vector<float>& x) {
        DeviceBuffer d(*be, x.size());
        be->upload(d.get(), x.data(), x.size());
        return d;
    }
    std::vector<float> get(const float* d, size_t n) {
        std::vector<float> h(n);
        be->download(h.data(), d, n);
        return h;
    }

    std::unique_ptr<LinalgBackend> be, cpu;
    std::vector<float> w;
};

// quantize_as_loaded on the host: the reference the slots must reproduce.
struct Reference {
    QuantizedTensor q;
    std::vector<float> loaded;
};
Reference reference(const QuantParams& p, Backbone bb, const std::vector<float>& x) {
    Reference r;
    r.loaded.resize(x.size());
    quantize_as_loaded(p, bb, x.data(), static_cast<int64_t>(x.size()), r.q, r.loaded.data(), "w");
    return r;
}

TEST_P(LoftqBackend, SlotsEqualQuantizeAsLoadedForEveryFormatAndBackbone) {
    const size_t n = 64 * 37;
    const std::vector<float> x = testing::heavy_tailed(static_cast<int64_t>(n), 7);
    DeviceBuffer dx = put(x), scratch(*be, n);
    for (const char* name : {"nf4", "fp4", "nf2", "nf8", "uniform4", "int8"})
        for (Backbone bb : {Backbone::BF16, Backbone::FP16, Backbone::FP32, Backbone::BNB4, Backbone::INT8})
            for (bool dq : {false, true}) {
                const QuantFormat& f = *find_format(name);
                if ((bb == Backbone::BNB4 || dq) && !f.is_bnb()) continue;
                if (bb == Backbone::INT8 && !f.is_row_wise()) continue;
                const QuantParams p{&f, 64, dq};
                const std::string label = std::string(name) + " " + backbone_name(bb) + (dq ? " dq" : "");
                const Reference want = reference(p, bb, x);
                auto slots = be->make_quant_slots(p, bb, n, scratch.get(), "w");
                slots->quantize_current(dx.get());
                expect_same_bits(get(slots->current_loaded(), n), want.loaded, label + " current");
                slots->keep_current();
                expect_same_bits(get(slots->best_loaded(), n), want.loaded, label + " best");
                expect_same_codes(slots->take_best(), want.q, label);
            }
}

// The loop forms L Rt in the residual buffer and passes it as `low` (res == low): the slots' step
// and its three-step form (what a backend without a fused pass takes) give the codes and residual
// bits of the step with a separate `low`, for the fused formats and those that take the steps.
TEST_P(LoftqBackend, QuantizeResidualInPlaceEqualsSeparateLow) {
    const size_t n = 64 * 37;
    const std::vector<float> w = testing::heavy_tailed(static_cast<int64_t>(n), 5);
    std::vector<float> low = testing::heavy_tailed(static_cast<int64_t>(n), 6);
    for (auto& v : low) v *= 0.25f;
    DeviceBuffer dw = put(w), dlow = put(low), scratch(*be, n);
    for (const char* name : {"nf4", "fp4", "nf2", "int8"})
        for (bool dq : {false, true})
            for (bool steps : {false, true}) {
                const QuantFormat& f = *find_format(name);
                if (dq && !f.is_bnb()) continue;
                const QuantParams p{&f, 64, dq};
                const Backbone bb = f.is_row_wise() ? Backbone::INT8 : Backbone::BF16;
                const std::string label = std::string(name) + (dq ? " dq" : "") + (steps ? " steps" : " slots");
                auto step = [&](QuantSlots& slots, const float* lo, float* res) {
                    if (steps)
                        quantize_residual_steps(*be, slots, n, dw.get(), lo, res);
                    else
                        slots.quantize_residual(*be, dw.get(), lo, res);
                    slots.keep_current();
                };
                DeviceBuffer res_apart(*be, n), res_inplace = put(low);
                auto apart = be->make_quant_slots(p, bb, n, scratch.get(), "w");
                step(*apart, dlow.get(), res_apart.get());
                auto inplace = be->make_quant_slots(p, bb, n, scratch.get(), "w");
                step(*inplace, res_inplace.get(), res_inplace.get());
                expect_same_bits(get(res_inplace.get(), n), get(res_apart.get(), n), label + " residual");
                expect_same_codes(inplace->take_best(), apart->take_best(), label);
            }
}

TEST_P(LoftqBackend, KeepCurrentSwapsTheSlots) {
    const size_t n = 64 * 16;
    const QuantParams p{find_format("nf4"), 64, false};
    const std::vector<float> x1 = testing::heavy_tailed(static_cast<int64_t>(n), 1);
    const std::vector<float> x2 = testing::heavy_tailed(static_cast<int64_t>(n), 2);
    const Reference r1 = reference(p, Backbone::BF16, x1), r2 = reference(p, Backbone::BF16, x2);
    DeviceBuffer d1 = put(x1), d2 = put(x2), scratch(*be, n);
    auto slots = be->make_quant_slots(p, Backbone::BF16, n, scratch.get(), "w");
    slots->quantize_current(d1.get());
    slots->keep_current();  // best = q(x1)
    slots->quantize_current(d2.get());
    expect_same_bits(get(slots->current_loaded(), n), r2.loaded, "current after the swap");
    expect_same_bits(get(slots->best_loaded(), n), r1.loaded, "best is still x1");
    slots->quantize_current(d2.get());  // rewriting the current slot leaves the best alone
    expect_same_codes(slots->take_best(), r1.q, "best codes");
    slots->keep_current();  // best = q(x2)
    expect_same_bits(get(slots->best_loaded(), n), r2.loaded, "best is x2 after the second keep");
    expect_same_codes(slots->take_best(), r2.q, "best codes after the second keep");
}

TEST_P(LoftqBackend, PlainErrorIsQloraError) {
    const size_t n = 64 * 16;
    const QuantParams p{find_format("nf4"), 64, false};
    const std::vector<float> x = testing::heavy_tailed(static_cast<int64_t>(n), 3);
    QuantizedTensor q;
    quantize(p, x.data(), static_cast<int64_t>(n), q, "w");
    std::vector<float> deq(n);
    dequantize(q, deq.data());
    // The CPU sums the exact differences in double in the fixed order of ordered_sum.
    const double want = ordered_sum(static_cast<int64_t>(n), [&](int64_t i) {
        return (double(x[i]) - deq[i]) * (double(x[i]) - deq[i]);
    });
    DeviceBuffer dx = put(x), scratch(*be, n);
    auto slots = be->make_quant_slots(p, Backbone::BF16, n, scratch.get(), "w");
    const double got = slots->plain_error_squared(dx.get());
    if (is_cpu())
        EXPECT_EQ(got, want);
    else
        EXPECT_NEAR(got, want, 1e-6 * want);
    std::vector<float> bad = x;
    bad[100] = std::nanf("");
    DeviceBuffer dbad = put(bad);
    EXPECT_THROW(slots->plain_error_squared(dbad.get()), InputError);
}

TEST_P(LoftqBackend, OneIterationCodesBitExact) {
    const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, options(1));
    const LoftqResult g = run_loftq(*be, "w", w.data(), kRows, kCols, options(1));
    ASSERT_EQ(g.q.size(), 1u);
    expect_same_codes(c.q[0], g.q[0], "T = 1");
    EXPECT_NEAR(c.qlora_error, g.qlora_error, 1e-5);
    EXPECT_NEAR(c.iteration_error[0], g.iteration_error[0], 1e-5);
    EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5);
    EXPECT_LT(product_diff(c, g, 16), 1e-4);
}

TEST_P(LoftqBackend, ThreeIterationsMatchTheCpu) {
    const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, options(3));
    const LoftqResult g = run_loftq(*be, "w", w.data(), kRows, kCols, options(3));
    EXPECT_EQ(c.chosen_iteration, g.chosen_iteration);
    ASSERT_EQ(g.iteration_error.size(), 3u);
    for (int t = 0; t < 3; ++t) EXPECT_NEAR(c.iteration_error[t], g.iteration_error[t], 1e-5) << "t = " << t + 1;
    EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5);
    EXPECT_LT(product_diff(c, g, 16), 1e-4);
    int64_t differ = 0;
    for (size_t i = 0; i < c.q[0].packed.size(); ++i) differ += c.q[0].packed[i] != g.q[0].packed[i];
    EXPECT_LE(differ, static_cast<int64_t>(c.q[0].packed.size() / 1000)) << differ << " code bytes differ";
    EXPECT_LE(g.loaded_error, g.qlora_error);  // the best iterate is never worse than QLoRA
}

// ||W - Q - s B A|| / ||W|| in double on the host, from what a result stores: the error as loaded.
double loaded_error_of(const LoftqResult& res, const std::vector<float>& w, const LoftqOptions& o) {
    std::vector<float> q(w.size());
    loaded_values(res.q[0], o.backbone, q.data());
    const int r = o.rank();
    const double s = o.lora_scaling();
    double num = 0, den = 0;
    for (int64_t i = 0; i < kRows; ++i)
        for (int64_t j = 0; j < kCols; ++j) {
            double ba = 0;
            for (int k = 0; k < r; ++k) ba += double(res.B[0][i * r + k]) * res.A[k * kCols + j];
            const double x = double(w[i * kCols + j]);
            const double e = x - double(q[i * kCols + j]) - s * ba;
            num += e * e;
            den += x * x;
        }
    return std::sqrt(num / den);
}

// The last step, with the LoRA scaling compensated, forms the stored factors and its error is the
// error as loaded, with nothing evaluated after the loop: when it is kept, the loaded error is
// that iteration's error bit for bit, and both are what the stored Q, A and B give. Without
// compensation (PEFT's semantics) the last step's error stays the loop's ||W - Q - L Rt||.
TEST_P(LoftqBackend, TheLastStepEndsAsStored) {
    LoftqOptions o = options(3);
    o.lora_alpha = 8;  // s = 1/2, f = sqrt(2): stored factors that are not L and Rt
    const LoftqResult c = run_loftq(*be, "w", w.data(), kRows, kCols, o);
    ASSERT_EQ(c.chosen_iteration, 3);  // LoftQ's error falls at every step of these weights
    EXPECT_EQ(c.loaded_error, c.iteration_error.back());
    EXPECT_NEAR(loaded_error_of(c, w, o), c.loaded_error, 1e-6 * c.loaded_error);
    LoftqOptions peft = o;
    peft.compensate_scaling = false;
    const LoftqResult p = run_loftq(*be, "w", w.data(), kRows, kCols, peft);
    ASSERT_EQ(p.chosen_iteration, 3);
    EXPECT_NEAR(loaded_error_of(p, w, peft), p.loaded_error, 1e-6 * p.loaded_error);
    EXPECT_NE(p.loaded_error, p.iteration_error.back());  // s = alpha / r != 1 on the stored L Rt
    // The same iterate either way: the loop's error of the last step agrees with the loaded one
    // to float rounding (the stored factors are f U, f Vt with f = 1 / sqrt(s) rounded).
    EXPECT_NEAR(c.iteration_error.back(), p.iteration_error.back(), 1e-6 * c.loaded_error);
}

TEST_P(LoftqBackend, WeightsAlreadyInBackendMemoryGiveTheSameBits) {
    const LoftqResult host = run_loftq(*be, "w", w.data(), kRows, kCols, options(3));
    DeviceBuffer dw = put(w);
    ShardInput in{0, kRows, dw.get()};
    in.in_backend_memory = true;
    const LoftqResult dev = run_loftq_sharded(*be, nullptr, ShardLayout::single(kRows), "w", {in}, kRows, kCols,
                                              options(3));
    expect_same_codes(host.q[0], dev.q[0], "resident W");
    EXPECT_EQ(host.A, dev.A);
    EXPECT_EQ(host.B, dev.B);
    EXPECT_EQ(host.iteration_error, dev.iteration_error);
    EXPECT_EQ(host.loaded_error, dev.loaded_error);
}

TEST_P(LoftqBackend, Fp16BackboneAndDoubleQuantCodesBitExact) {
    for (const LoftqOptions& o : {options(1, Backbone::FP16), options(1, Backbone::BF16, true)}) {
        const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, o);
        const LoftqResult g = run_loftq(*be, "w", w.data(), kRows, kCols, o);
        const std::string label = std::string(backbone_name(o.backbone)) + (o.quant.double_quant ? " dq" : "");
        expect_same_codes(c.q[0], g.q[0], label);
        EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5) << label;
    }
}

// LLM.int8 (rows of kCols): every backend gives the CPU's codes and SCB (CUDA stages it).
TEST_P(LoftqBackend, Int8CodesBitExact) {
    for (Backbone bb : {Backbone::BF16, Backbone::INT8}) {
        LoftqOptions o = options(2, bb);
        o.quant.format = &select_format("int8", 8);
        o.quant.blocksize = static_cast<int>(kCols);
        const LoftqResult c = run_loftq(*cpu, "w", w.data(), kRows, kCols, o);
        const LoftqResult g = run_loftq(*be, "w", w.data(), kRows, kCols, o);
        expect_same_codes(c.q[0], g.q[0], std::string("int8 ") + backbone_name(bb));
        EXPECT_NEAR(c.loaded_error, g.loaded_error, 1e-5) << backbone_name(bb);
        EXPECT_LE(g.loaded_error, g.qlora_error);
    }
}

TEST_P(LoftqBackend, NonFiniteWeightsAreRejected) {
    std::vector<float> bad = w;
    bad[1234] = std::nanf("");
    EXPECT_THROW(run_loftq(*be, "w", bad.data(), kRows, kCols, options(1)), InputError);
}

// A 3.3e38 outlier (its squares overflow float32 in the SVD) and subnormal weights (their squared
// norms underflow the float32 transport of the sums: every error read 0) are refused by name;
// with or without keeping the best iterate. Weights scaled by 2^-40 (tiny, but normal floats)
// give the same relative errors as the originals: the figures stay true inside the range.
TEST_P(LoftqBackend, ExtremeWeightsAreRefusedOrTrue) {
    std::vector<float> huge = w;
    huge[1234] = 3.3e38f;
    float peak = 0;
    for (float v : w) peak = std::max(peak, std::fabs(v));
    std::vector<float> subnormal(w.size()), small(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
        subnormal[i] = static_cast<float>(w[i] / peak * 1e-42);
        small[i] = std::ldexp(w[i], -40);
    }
    for (bool keep_best : {true, false}) {
        LoftqOptions o = options(2);
        o.keep_best = keep_best;
        for (const auto* x : {&huge, &subnormal}) {
            try {
                run_loftq(*be, "model.x.weight", x->data(), kRows, kCols, o);
                ADD_FAILURE() << "accepted " << (x == &huge ? "a 3.3e38 outlier" : "subnormal weights");
            } catch (const InputError& e) {
                EXPECT_NE(std::string(e.what()).find("model.x.weight"), std::string::npos) << e.what();
                EXPECT_NE(std::string(e.what()).find("Frobenius norm"), std::string::npos) << e.what();
            }
        }
        const LoftqResult a = run_loftq(*be, "w", w.data(), kRows, kCols, o);
        const LoftqResult b = run_loftq(*be, "w", small.data(), kRows, kCols, o);
        EXPECT_GT(b.qlora_error, 0.01);
        EXPECT_NEAR(b.qlora_error, a.qlora_error, 1e-6 * a.qlora_error);
        EXPECT_NEAR(b.loaded_error, a.loaded_error, 1e-4 * a.loaded_error);
    }
}

}  // namespace
}  // namespace loftq
