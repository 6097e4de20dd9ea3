// The SIMD quantize kernels and the fused quantize-residual pass (quant/simd_kernels.hpp,
// quantize_residual_as_loaded): every instruction-set level this CPU has gives the bits of the
// scalar reference rules (format_tables.hpp), and the fused pass the bits of its three steps
// (x = w - low, quantize_as_loaded, w - Q). ctest runs this binary three times: with the
// process's own choice (the widest level), and with LOFTQ_SIMD=avx2 and =scalar for the fused
// pass (quant_simd_avx2, quant_simd_scalar; Skipped where the CPU lacks the level).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "quant/format.hpp"
#include "quant/format_tables.hpp"
#include "quant/quantize.hpp"
#include "quant/quantize_ref.hpp"
#include "quant/simd_kernels.hpp"

namespace loftq {
namespace {

// Under LOFTQ_SIMD=<a level this CPU lacks> the fused pass refuses to run: those cases skip.
bool forced_level_missing() {
    const char* forced = std::getenv("LOFTQ_SIMD");
    return forced && *forced && !quant_kernels_for(forced);
}

uint32_t bits_of(float v) {
    uint32_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
}

// Values that sit on every decision point of nf4 / fp4 (and one ulp either side), zeros of
// both signs, subnormals, NaN, infinities and ordinary random values.
std::vector<float> edge_values(uint32_t seed, size_t random_count) {
    std::vector<float> v;
    auto around = [&](float t) {
        v.push_back(t);
        v.push_back(std::nextafter(t, 2.0f));
        v.push_back(std::nextafter(t, -2.0f));
        v.push_back(-t);
    };
    for (float t : tables::kNF4Thresholds) around(t);
    for (float t : tables::kFP4Pivots) around(t);
    for (float t : tables::kNF4) around(t);
    for (float t : {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-39f, 1.0f, -1.0f, 1e30f, -1e30f}) v.push_back(t);
    v.push_back(std::numeric_limits<float>::quiet_NaN());
    v.push_back(std::numeric_limits<float>::infinity());
    v.push_back(-std::numeric_limits<float>::infinity());
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.6f);
    for (size_t i = 0; i < random_count; ++i) v.push_back(normal(rng));
    return v;
}

TEST(QuantSimd, EveryLevelMatchesTheScalarRules) {
    const std::vector<std::string> levels = available_simd_levels();
    ASSERT_FALSE(levels.empty());
    EXPECT_EQ(levels.front(), "scalar");
    const std::vector<float> x = edge_values(7, 5000);
    const auto n = static_cast<int64_t>(x.size());
    std::vector<float> low(x.size());
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    for (auto& l : low) l = normal(rng);
    for (const std::string& level : levels) {
        SCOPED_TRACE(level);
        const QuantKernels* k = quant_kernels_for(level);
        ASSERT_NE(k, nullptr);
        EXPECT_EQ(std::string(k->level), level);
        for (float recip : {1.0f, 3.5f, 1.0f / 0.0371f}) {
            std::vector<uint8_t> got(x.size());
            k->nf4_codes(x.data(), n, recip, got.data());
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], nf4_code(x[i] * recip)) << "nf4 element " << i;
            k->fp4_codes(x.data(), n, recip, got.data());
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], fp4_code(x[i] * recip)) << "fp4 element " << i;
        }
        for (const float* lp : {static_cast<const float*>(nullptr), static_cast<const float*>(low.data())}) {
            std::vector<float> got(x.size());
            const uint32_t m = k->diff_absmax_bits(x.data(), lp, n, got.data());
            uint32_t want = 0;
            for (int64_t i = 0; i < n; ++i) {
                const float d = lp ? x[i] - lp[i] : x[i];
                ASSERT_EQ(bits_of(got[i]), bits_of(d)) << "difference " << i;
                want = std::max(want, bits_of(d) & 0x7fffffffu);
            }
            EXPECT_EQ(m, want);
            EXPECT_GE(m, 0x7f800000u);  // the NaN / inf entries are reported
        }
        // Finite values: the absmax bits are the bits of max |x|.
        std::vector<float> finite(x.begin() + 40, x.begin() + 400), scratch(360);
        float want = 0;
        for (float f : finite)
            if (std::isfinite(f)) want = std::max(want, std::fabs(f));
        for (auto& f : finite)
            if (!std::isfinite(f)) f = 0.0f;
        EXPECT_EQ(k->diff_absmax_bits(finite.data(), nullptr, 360, scratch.data()), bits_of(want));
        std::vector<uint8_t> codes(x.size());
        for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7 % 16);
        for (int64_t len : {n, n - 1, int64_t{64}, int64_t{33}, int64_t{31}}) {
            std::vector<uint8_t> packed(static_cast<size_t>(len + 1) / 2);
            pack_codes(*find_format("nf4"), codes.data(), len, 0, packed.data());
            for (const float* table : {tables::kNF4, tables::kFP4}) {
                std::vector<float> got(static_cast<size_t>(len));
                k->dequant_nibbles(packed.data(), len, table, 0.0371f, got.data());
                for (int64_t i = 0; i < len; ++i)
                    ASSERT_EQ(bits_of(got[i]), bits_of(table[codes[i]] * 0.0371f)) << "dequant_nibbles " << i;
            }
        }
        for (int64_t len : {n, n - 1, int64_t{64}, int64_t{33}}) {
            std::vector<uint8_t> got(static_cast<size_t>(len / 2) + 1, 0xAB), want(got.size(), 0xAB);
            k->pack_pairs(codes.data(), len, got.data());
            pack_codes(*find_format("nf4"), codes.data(), len / 2 * 2, 0, want.data());
            ASSERT_EQ(got, want) << "pack_pairs of " << len;
        }
        for (const float* table : {tables::kNF4, tables::kFP4}) {
            std::vector<float> got(x.size());
            const float scale = 0.0371f;
            k->residual(low.data(), codes.data(), n, table, scale, got.data());
            for (int64_t i = 0; i < n; ++i)
                ASSERT_EQ(bits_of(got[i]), bits_of(low[i] - table[codes[i]] * scale)) << "residual " << i;
        }
    }
}

// Weights whose blocks span many orders of magnitude: ordinary, bf16 / fp16 subnormal range
// (where the stored values are not what we computed and bitsandbytes' re-quantization decides),
// around the proof's threshold, and near the fp16 maximum.
std::vector<float> wide_weights(int64_t n, int blocksize, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const float scales[] = {0.02f, 1.0f, 3e-3f, 1e-3f, 5e-4f, 1e-4f, 3e-5f, 1e-6f, 1e-8f, 2e-36f, 1e-37f, 1000.0f};
    std::vector<float> w(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t block = i / blocksize;
        w[static_cast<size_t>(i)] = scales[(block * 5 + seed) % 12] * normal(rng);
    }
    return w;
}

struct Case {
    const char* format;
    Backbone backbone;
};

// The fused pass (one pass, SIMD, the settle check skipped where the proof covers the block)
// against its steps, for every backbone, with and without the low-rank term.
TEST(QuantSimd, FusedPassEqualsItsSteps) {
    if (forced_level_missing()) GTEST_SKIP() << "LOFTQ_SIMD names a level this CPU lacks";
    const Case cases[] = {{"nf4", Backbone::BF16}, {"nf4", Backbone::FP16}, {"nf4", Backbone::FP32},
                          {"nf4", Backbone::BNB4}, {"fp4", Backbone::BF16}, {"fp4", Backbone::FP16},
                          {"fp4", Backbone::FP32}, {"fp4", Backbone::BNB4}};
    for (const Case& c : cases) {
        for (int blocksize : {64, 128}) {
            for (int64_t n : {int64_t{64} * 997, int64_t{64} * 40 + 33, int64_t{1} << 19}) {
                SCOPED_TRACE(std::string(c.format) + " " + backbone_name(c.backbone) + " blocksize " +
                             std::to_string(blocksize) + " n " + std::to_string(n));
                QuantParams p;
                p.format = find_format(c.format);
                p.blocksize = blocksize;
                const std::vector<float> w = wide_weights(n, blocksize, static_cast<uint32_t>(n % 1000));
                std::vector<float> low(w.size());
                std::mt19937 rng(11);
                std::uniform_real_distribution<float> u(-0.3f, 0.3f);
                for (size_t i = 0; i < w.size(); ++i) low[i] = w[i] * u(rng);
                for (const float* lp : {static_cast<const float*>(nullptr), static_cast<const float*>(low.data())}) {
                    // The steps, as the loop took them before the fused pass.
                    std::vector<float> x(w.size()), want_q(w.size()), want_res(w.size());
                    for (size_t i = 0; i < w.size(); ++i) x[i] = lp ? w[i] - lp[i] : w[i];
                    QuantizedTensor want;
                    quantize_as_loaded(p, c.backbone, x.data(), n, want, want_q.data(), "t");
                    for (size_t i = 0; i < w.size(); ++i) want_res[i] = w[i] - want_q[i];

                    std::vector<float> scratch(lp ? low : std::vector<float>(w.size())), res(w.size());
                    QuantizedTensor got;
                    quantize_residual_as_loaded(p, c.backbone, w.data(), lp ? scratch.data() : nullptr, n, got,
                                                res.data(), scratch.data(), "t");
                    ASSERT_EQ(got.packed, want.packed);
                    ASSERT_EQ(got.absmax.size(), want.absmax.size());
                    for (size_t b = 0; b < got.absmax.size(); ++b)
                        ASSERT_EQ(bits_of(got.absmax[b]), bits_of(want.absmax[b])) << "block " << b;
                    EXPECT_EQ(got.requantized_blocks, want.requantized_blocks);
                    for (size_t i = 0; i < w.size(); ++i)
                        ASSERT_EQ(bits_of(res[i]), bits_of(want_res[i])) << "residual " << i;
                }
            }
        }
    }
}

// QLoRA's plain error in one pass against its three steps (quantize, dequantize, ordered_sum):
// the same codes, scales and bits of the sum, over several chunks with a partial tail; a
// non-finite weight is refused as quantize refuses it.
TEST(QuantSimd, PlainErrorEqualsItsSteps) {
    if (forced_level_missing()) GTEST_SKIP() << "LOFTQ_SIMD names a level this CPU lacks";
    for (const char* format : {"nf4", "fp4"}) {
        for (int blocksize : {64, 256}) {
            for (int64_t n : {int64_t{64} * 997 + 31, int64_t{3} << 16, int64_t{100}}) {
                SCOPED_TRACE(std::string(format) + " blocksize " + std::to_string(blocksize) + " n " + std::to_string(n));
                QuantParams p;
                p.format = find_format(format);
                p.blocksize = blocksize;
                const std::vector<float> w = wide_weights(n, blocksize, 9);
                QuantizedTensor want;
                quantize(p, w.data(), n, want, "t");
                std::vector<float> deq(w.size());
                dequantize(want, deq.data());
                const double want_sum = ordered_sum(n, [&](int64_t i) {
                    const double e = static_cast<double>(w[i]) - static_cast<double>(deq[i]);
                    return e * e;
                });
                QuantizedTensor got;
                const double got_sum = quantize_plain_error(p, w.data(), n, got, "t");
                EXPECT_EQ(got.packed, want.packed);
                EXPECT_EQ(got.absmax, want.absmax);
                EXPECT_EQ(got_sum, want_sum);  // bit for bit
            }
        }
    }
    QuantParams p;
    p.format = find_format("nf4");
    std::vector<float> w = wide_weights(int64_t{1} << 16, 64, 2);
    w[40000] = std::numeric_limits<float>::infinity();
    QuantizedTensor q;
    try {
        quantize_plain_error(p, w.data(), static_cast<int64_t>(w.size()), q, "w");
        FAIL() << "a non-finite weight was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("element 40000"), std::string::npos) << e.what();
    }
}

// What makes skipping the settle check safe: every block quantize_as_loaded returns re-quantizes,
// from the values the backbone stores, to exactly its codes and absmax (bitsandbytes at load).
// Checked independently of quantize.cpp with the reference quantizer, on blocks from 1e-37 to
// 1e3 (both sides of settle_proven's threshold, fp16's subnormal range included).
TEST(QuantSimd, EveryBlockLoadsBackAsOptimised) {
    if (forced_level_missing()) GTEST_SKIP() << "LOFTQ_SIMD names a level this CPU lacks";
    for (const char* format : {"nf4", "fp4"}) {
        for (Backbone bb : {Backbone::BF16, Backbone::FP16, Backbone::FP32}) {
            SCOPED_TRACE(std::string(format) + " " + backbone_name(bb));
            QuantParams p;
            p.format = find_format(format);
            p.blocksize = 64;
            const int64_t n = 64 * 4000;
            std::vector<float> w = wide_weights(n, 64, 5);
            if (bb == Backbone::FP16)
                for (auto& v : w) v = std::max(-60000.0f, std::min(60000.0f, v));
            std::vector<float> q_loaded(w.size()), res(w.size());
            QuantizedTensor q;
            quantize_residual_as_loaded(p, bb, w.data(), nullptr, n, q, res.data(), q_loaded.data(), "t");
            std::vector<float> stored(w.size());
            backbone_values(q, stored.data());
            for (auto& v : stored) v = round_to_backbone(bb, v);
            std::vector<uint8_t> again(w.size()), codes(w.size());
            std::vector<float> again_absmax(q.absmax.size());
            quantize_ref(*p.format, 64, stored.data(), n, again.data(), again_absmax.data());
            unpack_codes(*p.format, q.packed.data(), n, codes.data());
            for (size_t b = 0; b < q.absmax.size(); ++b) {
                ASSERT_EQ(bits_of(again_absmax[b]), bits_of(q.absmax[b])) << "block " << b;
                for (size_t i = b * 64; i < (b + 1) * 64; ++i) ASSERT_EQ(again[i], codes[i]) << "element " << i;
            }
        }
    }
}

TEST(QuantSimd, ForcedLevel) {
    const char* forced = std::getenv("LOFTQ_SIMD");
    if (!forced || !*forced) {
        EXPECT_EQ(std::string(quant_kernels().level), available_simd_levels().back());
        return;
    }
    if (!quant_kernels_for(forced)) GTEST_SKIP() << "this CPU has no " << forced;
    EXPECT_EQ(std::string(quant_kernels().level), forced);
}

}  // namespace
}  // namespace loftq
