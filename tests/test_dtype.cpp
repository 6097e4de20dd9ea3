// bf16 / f16 conversions: exact widening, round-to-nearest-even narrowing, specials.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.hpp"

using namespace loftq;

TEST(DType, NamesAndSizesRoundTrip) {
    for (const char* n : {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32",
                          "U32", "F32", "F64", "I64", "U64"}) {
        auto t = parse_dtype(n);
        ASSERT_TRUE(t.has_value()) << n;
        EXPECT_STREQ(dtype_name(*t), n);
    }
    EXPECT_FALSE(parse_dtype("F12").has_value());
    EXPECT_EQ(dtype_size(DType::BF16), 2u);
    EXPECT_EQ(dtype_size(DType::F64), 8u);
}

TEST(DType, Bf16RoundsToNearestEven) {
    // 1 + 2^-8 is exactly half-way between bf16 1.0 and 1.0078125: ties to even (1.0).
    EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
    // 1 + 3*2^-8 is half-way between 1.0078125 (odd mantissa) and 1.015625: up to even.
    EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
    EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
    EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_TRUE(std::isinf(bf16_to_float(float_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST(DType, F16ExhaustiveRoundTrip) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = f16_to_float(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        EXPECT_EQ(float_to_f16(f), h) << std::hex << h;
    }
    EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
    EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);  // rounds to inf
    EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
}

TEST(DType, WidenNarrowBuffers) {
    const float src[4] = {1.5f, -0.25f, 3.0e-3f, 1024.0f};
    for (DType t : {DType::F32, DType::BF16, DType::F16}) {
        std::vector<unsigned char> bytes(4 * dtype_size(t));
        narrow_from_f32(t, src, 4, bytes.data());
        float back[4];
        widen_to_f32(t, bytes.data(), 4, back);
        for (int i = 0; i < 4; ++i) EXPECT_NEAR(back[i], src[i], std::fabs(src[i]) * 1e-2) << dtype_name(t);
    }
}
