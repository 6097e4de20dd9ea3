// Reference rules at their boundaries, packing order, double quantization, bad input, and the
// fast path against the reference bit for bit for every format x blocksize on stories260K and
// on seeded random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "quant/format_tables.hpp"
#include "quant/quantize.hpp"
#include "quant/quantize_fast.hpp"
#include "quant/quantize_ref.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

std::vector<uint8_t> codes_of(const QuantFormat& f, int bs, const std::vector<float>& x,
                              std::vector<float>* scales = nullptr) {
    std::vector<uint8_t> c(x.size());
    std::vector<float> s(block_count(x.size(), bs));
    quantize_ref(f, bs, x.data(), x.size(), c.data(), s.data());
    if (scales) *scales = s;
    return c;
}

TEST(QuantRef, Nf4ExactThresholdGoesToLowerCode) {
    const QuantFormat& f = *find_format("nf4");
    for (int k = 0; k < 15; ++k) {
        const float t = tables::kNF4Thresholds[k];
        std::vector<float> x(32, 0.0f);
        x[0] = 1.0f;  // absmax 1: y == x exactly
        x[1] = t;
        x[2] = std::nextafter(t, 2.0f);
        x[3] = std::nextafter(t, -2.0f);
        const auto c = codes_of(f, 32, x);
        EXPECT_EQ(c[0], 15);
        EXPECT_EQ(c[1], k) << "threshold " << k;
        EXPECT_EQ(c[2], k + 1);
        EXPECT_EQ(c[3], k);
        EXPECT_EQ(c[4], 7) << "zero";
    }
}

TEST(QuantRef, ZerosSignsAndExtremeMagnitudes) {
    const QuantFormat& nf4 = *find_format("nf4");
    std::vector<float> x(64, 0.0f);
    x[1] = -0.0f;
    for (int i = 32; i < 64; ++i) x[i] = 0.0f;  // an all-zero block
    x[2] = -3e38f;
    x[3] = 3e38f;
    std::vector<float> s;
    auto c = codes_of(nf4, 32, x, &s);
    EXPECT_EQ(c[0], 7);
    EXPECT_EQ(c[1], 7);
    EXPECT_EQ(c[2], 0);
    EXPECT_EQ(c[3], 15);
    EXPECT_EQ(s[1], 0.0f);
    for (int i = 32; i < 64; ++i) EXPECT_EQ(c[i], 0) << "all-zero block -> code 0";
    std::vector<float> q(64);
    dequantize_ref(nf4, 32, c.data(), s.data(), 64, q.data());
    for (int i = 32; i < 64; ++i) EXPECT_EQ(q[i], 0.0f);
    EXPECT_EQ(q[3], 3e38f);
    EXPECT_EQ(q[2], -3e38f);

    // A denormal absmax: 1.0f / absmax overflows to inf (exact IEEE rule), so the maximum maps
    // to +-1 and exact zeros (0 * inf = NaN) to code 0, as bitsandbytes' formula gives.
    std::vector<float> d(32, 1e-40f);
    d[1] = -1e-40f;
    d[2] = 0.0f;
    c = codes_of(nf4, 32, d, &s);
    EXPECT_EQ(c[0], 15);
    EXPECT_EQ(c[1], 0);
    EXPECT_EQ(c[2], 0);
    EXPECT_EQ(s[0], 1e-40f);

    const QuantFormat& fp4 = *find_format("fp4");
    std::vector<float> y(32, 0.0f);
    y[0] = 1.0f;
    y[1] = -0.001f;  // below the first pivot: negative zero
    y[2] = -1.0f;
    y[3] = 0.001f;
    c = codes_of(fp4, 32, y);
    EXPECT_EQ(c[0], 3);
    EXPECT_EQ(c[1], 8);
    EXPECT_EQ(c[2], 11);
    EXPECT_EQ(c[3], 0);
}

TEST(QuantRef, LoftqArgminTiesToLowerIndex) {
    const QuantFormat& u2 = *find_format("uniform2");  // {-1, -1/3, 1/3, 1}
    const float mid = 0.0f;                            // equidistant from -1/3 and 1/3
    EXPECT_EQ(nearest_code(u2.table, 4, mid), 1);
    const QuantFormat& nf2 = *find_format("nf2");
    std::vector<float> x(32, 0.0f);
    x[0] = -4.0f;  // absmax 4
    x[1] = 4.0f * 0.33791524171829224f;
    x[2] = 2.0f;
    const auto c = codes_of(nf2, 32, x);
    EXPECT_EQ(c[0], 0);
    EXPECT_EQ(c[1], 2);
    EXPECT_EQ(c[2], 2);  // 0.5: nearer 0.338 than 1
    EXPECT_EQ(c[3], 1);
}

TEST(QuantFast, UniformScaleNearZeroFarOutsideTheTable) {
    // mean + 2.5 * std cancels to a tiny scale: y = x / scale is huge and every rounded distance
    // ties, so argmin picks code 0; the fast path's windowed search must agree.
    // 63 values of -1 and one v: bisect v (scale < 0 at 0, > 0 at 40) down to adjacent floats.
    std::vector<float> x(64, -1.0f);
    const QuantFormat& u8 = *find_format("uniform8");
    auto scale_at = [&](float v) {
        x[0] = v;
        return block_scale_ref(u8, x.data(), 64);
    };
    float lo = 0.0f, hi = 40.0f;
    while (std::nextafter(lo, hi) < hi) {
        const float mid = lo + (hi - lo) / 2;
        if (mid <= lo || mid >= hi) break;
        (scale_at(mid) < 0.0f ? lo : hi) = mid;
    }
    const float s_lo = scale_at(lo), s_hi = scale_at(hi);
    x[0] = (s_lo != 0.0f && (s_hi == 0.0f || std::fabs(s_lo) < std::fabs(s_hi))) ? lo : hi;
    const float tiny = block_scale_ref(u8, x.data(), 64);
    ASSERT_NE(tiny, 0.0f);
    ASSERT_LT(std::fabs(tiny), 1e-5f) << "|y| must exceed 1e5 for the distances to tie";
    for (const char* name : {"uniform2", "uniform4", "uniform8"}) {
        const QuantFormat& f = *find_format(name);
        std::vector<float> s;
        const auto c = codes_of(f, 64, x, &s);
        std::vector<uint8_t> p(packed_bytes(f, 64));
        std::vector<float> fs(1);
        quantize_fast(f, 64, x.data(), 64, p.data(), fs.data(), nullptr);
        std::vector<uint8_t> back(64);
        unpack_codes(f, p.data(), 64, back.data());
        EXPECT_EQ(testing::float_bits(fs[0]), testing::float_bits(s[0])) << name;
        EXPECT_EQ(back, c) << name << " scale " << s[0];
    }
}

TEST(QuantRef, PackingOrder) {
    const QuantFormat& nf4 = *find_format("nf4");
    const uint8_t c4[3] = {0x1, 0x2, 0x3};
    uint8_t p[2];
    pack_codes(nf4, c4, 3, 7, p);
    EXPECT_EQ(p[0], 0x12) << "bnb: first element in the high nibble";
    EXPECT_EQ(p[1], 0x37) << "odd n: padding code in the low nibble";
    EXPECT_EQ(bnb_pad_code(nf4, 2.0f), 7);
    EXPECT_EQ(bnb_pad_code(nf4, 0.0f), 0);
    const QuantFormat& u4 = *find_format("uniform4");
    pack_codes(u4, c4, 2, 0, p);
    EXPECT_EQ(p[0], 0x21) << "LoftQ: first element in the low bits";
    const QuantFormat& nf2 = *find_format("nf2");
    const uint8_t c2[4] = {1, 0, 3, 2};
    pack_codes(nf2, c2, 4, 0, p);
    EXPECT_EQ(p[0], 0b10110001);  // peft's own example
    uint8_t back[4];
    unpack_codes(nf2, p, 4, back);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], c2[i]);
}

TEST(QuantRef, DoubleQuantization) {
    const float a[2] = {1.0f, 3.0f};  // offset 2, centered -1, +1, nested absmax 1
    DoubleQuant dq = double_quantize_ref(a, 2);
    EXPECT_EQ(dq.offset, 2.0f);
    EXPECT_EQ(dq.nested_absmax.size(), 1u);
    EXPECT_EQ(dq.nested_absmax[0], 1.0f);
    EXPECT_EQ(dq.codes[0], 0);
    EXPECT_EQ(dq.codes[1], 255);
    float back[2];
    double_dequantize_ref(dq, 2, back);
    EXPECT_EQ(back[0], 2.0f + tables::kDynamicSigned8[0]);
    EXPECT_EQ(back[1], 3.0f);

    for (uint64_t seed = 1; seed <= 5; ++seed) {
        auto v = testing::heavy_tailed(1000, seed, 0.1f);
        for (auto& x : v) x = std::fabs(x) + 0.01f;
        dq = double_quantize_ref(v.data(), 1000);
        EXPECT_EQ(dq.nested_absmax.size(), 4u);
        std::vector<float> r(1000);
        double_dequantize_ref(dq, 1000, r.data());
        for (int i = 0; i < 1000; ++i) {
            // the dynamic map's largest gap is 0.0141 of the nested absmax
            EXPECT_LE(std::fabs(r[i] - v[i]), 0.0071f * dq.nested_absmax[i / 256] + 1e-6f) << i;
        }
    }
}

TEST(QuantRef, BadInputNamesTheTensor) {
    const QuantFormat& nf4 = *find_format("nf4");
    const QuantFormat& nf2 = *find_format("nf2");
    QuantizedTensor q;
    std::vector<float> x(96, 0.5f);
    auto expect_error = [&](auto&& fn, const char* what) {
        try {
            fn();
            ADD_FAILURE() << "no error for " << what;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("layers.3.q_proj"), std::string::npos) << e.what();
        }
    };
    x[5] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(quantize({&nf4, 64, false}, x.data(), 96, q, "layers.3.q_proj"), InputError);
    expect_error([&] { quantize({&nf4, 64, false}, x.data(), 96, q, "layers.3.q_proj"); }, "NaN");
    x[5] = std::numeric_limits<float>::infinity();
    EXPECT_THROW(quantize({&nf4, 64, false}, x.data(), 96, q, "t"), InputError);
    x[5] = 0.25f;
    EXPECT_NO_THROW(quantize({&nf4, 64, false}, x.data(), 96, q, "t")) << "bnb allows a partial block";
    EXPECT_THROW(quantize({&nf2, 64, false}, x.data(), 96, q, "t"), InputError);
    expect_error([&] { quantize({&nf2, 64, false}, x.data(), 96, q, "layers.3.q_proj"); }, "partial");
    EXPECT_THROW(quantize({&nf4, 48, false}, x.data(), 96, q, "t"), ConfigError);
    EXPECT_THROW(quantize({&nf2, 32, true}, x.data(), 96, q, "t"), ConfigError);
    EXPECT_THROW(quantize({nullptr, 64, false}, x.data(), 96, q, "t"), ConfigError);
}

// Fast path == reference: codes (packed), scales and Q, bit for bit.
void expect_fast_matches_ref(const QuantFormat& f, int bs, const std::vector<float>& x, const std::string& what) {
    const int64_t n = x.size();
    std::vector<float> s_ref;
    const auto c = codes_of(f, bs, x, &s_ref);
    std::vector<uint8_t> p_ref(packed_bytes(f, n));
    pack_codes(f, c.data(), n, f.is_bnb() ? bnb_pad_code(f, s_ref.back()) : 0, p_ref.data());
    std::vector<float> q_ref(n);
    dequantize_ref(f, bs, c.data(), s_ref.data(), n, q_ref.data());

    std::vector<uint8_t> p(packed_bytes(f, n), 0xAA);
    std::vector<float> s(s_ref.size(), -7.0f), q(n, -7.0f), q2(n, -7.0f);
    quantize_fast(f, bs, x.data(), n, p.data(), s.data(), q.data());
    dequantize_fast(f, bs, p.data(), s.data(), n, q2.data());
    ASSERT_EQ(p, p_ref) << what;
    for (size_t b = 0; b < s.size(); ++b) ASSERT_EQ(testing::float_bits(s[b]), testing::float_bits(s_ref[b])) << what << " block " << b;
    for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(testing::float_bits(q[i]), testing::float_bits(q_ref[i])) << what << " element " << i;
        ASSERT_EQ(testing::float_bits(q2[i]), testing::float_bits(q_ref[i])) << what << " element " << i;
    }
    // uniform clips outliers beyond its scale; int8 has no table (test_quant_int8.cpp: bnb itself)
    if (f.family != FormatFamily::LoftqUniform && !f.is_row_wise()) {
        float max_gap = 0;
        for (int k = 1; k < f.table_size(); ++k) max_gap = std::max(max_gap, std::fabs(f.table[k] - f.table[k - 1]));
        for (int64_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(x[i] - q_ref[i]), (0.5f * max_gap + 1e-6f) * s_ref[i / bs] * 1.0001f) << what << " " << i;
    }
}

TEST(QuantFast, EveryFormatAndBlocksizeOnStories) {
    const auto weights = testing::stories_target_weights();
    ASSERT_EQ(weights.size(), 35u);
    for (const auto& f : all_formats())
        for (int bs = 32; bs <= 4096; bs *= 2)
            for (const auto& w : weights) {
                if (f.needs_full_blocks() && w.data.size() % bs != 0) continue;
                expect_fast_matches_ref(f, bs, w.data, std::string(f.name) + " bs " + std::to_string(bs) + " " + w.name);
            }
}

TEST(QuantFast, EveryFormatAndBlocksizeOnRandomInputs) {
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        const int64_t n = 8192 + (seed % 2 ? 0 : 4096 * 3);
        auto x = testing::heavy_tailed(n, seed, seed % 3 == 0 ? 1e-3f : 0.5f);
        if (seed == 4) std::fill(x.begin() + 64, x.begin() + 128, 0.0f);  // zero blocks
        for (const auto& f : all_formats())
            for (int bs = 32; bs <= 4096; bs *= 2) {
                expect_fast_matches_ref(f, bs, x, std::string(f.name) + " seed " + std::to_string(seed));
                if (f.is_bnb()) {  // partial last block, odd n
                    std::vector<float> odd(x.begin(), x.begin() + 4097);
                    expect_fast_matches_ref(f, bs, odd, std::string(f.name) + " odd seed " + std::to_string(seed));
                }
            }
    }
}

}  // namespace
}  // namespace loftq
