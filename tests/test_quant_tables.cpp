// Pins the format constants and the registry: hex bit patterns of bitsandbytes' NF4 values and
// thresholds, the LoftQ tables' defining properties, FP4, the dynamic map, the CLI mapping.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.hpp"
#include "quant/format.hpp"
#include "quant/format_tables.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

TEST(QuantTables, Nf4ValuesAndThresholdsBitPatterns) {
    const uint32_t values[16] = {0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu,
                                 0xbdba7871u, 0x00000000u, 0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au,
                                 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u};
    const uint32_t thresholds[15] = {0xbf591cd9u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu,
                                     0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu, 0x3df64863u, 0x3e5067e0u,
                                     0x3e9582d4u, 0x3ec753f9u, 0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u};
    for (int i = 0; i < 16; ++i) EXPECT_EQ(testing::float_bits(tables::kNF4[i]), values[i]) << i;
    for (int i = 0; i < 15; ++i) EXPECT_EQ(testing::float_bits(tables::kNF4Thresholds[i]), thresholds[i]) << i;
}

TEST(QuantTables, FourThresholdsDifferWhenRoundedThroughDouble) {
    // FORMATS.md 2: np.float32(0.8614784181118011) etc. is 1 ulp off the C float literal.
    const double as_double[15] = {-0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
                                  -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
                                  -0.045525018125772476, 0.03979014977812767, 0.1202552504837513,
                                  0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                                  0.5016634166240692, 0.6427869200706482, 0.8614784181118011};
    int differing = 0;
    for (int i = 0; i < 15; ++i) {
        const float via_double = static_cast<float>(as_double[i]);
        const int64_t ulps = static_cast<int64_t>(testing::float_bits(via_double)) - testing::float_bits(tables::kNF4Thresholds[i]);
        EXPECT_LE(std::abs(ulps), 1) << i;
        if (ulps != 0) {
            ++differing;
            EXPECT_TRUE(i == 0 || i == 8 || i == 12 || i == 14) << i;
        }
    }
    EXPECT_EQ(differing, 4);
}

TEST(QuantTables, Nf4ThresholdsSitBetweenValues) {
    for (int i = 0; i < 15; ++i) {
        EXPECT_LT(tables::kNF4[i], tables::kNF4Thresholds[i]);
        EXPECT_GT(tables::kNF4[i + 1], tables::kNF4Thresholds[i]);
        EXPECT_EQ(nf4_code(tables::kNF4[i]), i);
        EXPECT_EQ(nf4_code(tables::kNF4Thresholds[i]), i) << "a tie goes to the lower code";
    }
}

TEST(QuantTables, LoftqTables) {
    const float nf2[4] = {-1.0f, 0.0f, 0.33791524171829224f, 1.0f};
    for (int i = 0; i < 4; ++i) EXPECT_EQ(testing::float_bits(tables::kNF2[i]), testing::float_bits(nf2[i]));
    auto check_sorted = [](const float* t, int n) {
        EXPECT_EQ(t[0], -1.0f);
        EXPECT_EQ(t[n - 1], 1.0f);
        for (int i = 1; i < n; ++i) EXPECT_LT(t[i - 1], t[i]) << i;
    };
    check_sorted(tables::kNF8, 256);
    check_sorted(tables::kUniform2, 4);
    check_sorted(tables::kUniform4, 16);
    check_sorted(tables::kUniform8, 256);
    // NF8: one zero, one more positive than negative value (asymmetric normal map).
    int zeros = 0, negative = 0;
    for (float v : tables::kNF8) zeros += v == 0.0f, negative += v < 0.0f;
    EXPECT_EQ(zeros, 1);
    EXPECT_EQ(negative, 127);
    EXPECT_FLOAT_EQ(tables::kUniform2[1], -1.0f / 3.0f);
}

TEST(QuantTables, Fp4TableIsTheBnbMapOverTwelve) {
    const float raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
    for (int i = 0; i < 16; ++i) EXPECT_EQ(testing::float_bits(tables::kFP4[i]), testing::float_bits(raw[i] / 12.0f)) << i;
    // Every value quantizes to its own code.
    for (int i = 0; i < 16; ++i) EXPECT_EQ(fp4_code(tables::kFP4[i]), i == 8 ? 0 : i) << i;
    for (int r = 0; r < 7; ++r) {
        EXPECT_EQ(fp4_code(tables::kFP4Pivots[r]), tables::kFP4CodeOfRank[r]) << "tie -> lower";
        EXPECT_EQ(fp4_code(std::nextafter(tables::kFP4Pivots[r], 2.0f)), tables::kFP4CodeOfRank[r + 1]);
        EXPECT_EQ(fp4_code(-tables::kFP4Pivots[r]), tables::kFP4CodeOfRank[r] | 8);
    }
}

TEST(QuantTables, DynamicMap) {
    const float* m = tables::kDynamicSigned8;
    for (int i = 1; i < 256; ++i) EXPECT_LE(m[i - 1], m[i]);
    EXPECT_EQ(m[255], 1.0f);
    EXPECT_EQ(testing::float_bits(m[0]), testing::float_bits(-0.992968738079071f));
    int zeros = 0;
    for (int i = 0; i < 256; ++i) zeros += m[i] == 0.0f;
    EXPECT_EQ(zeros, 1);
    for (int i = 0; i < 256; ++i) EXPECT_EQ(dynamic_map_code(m, m[i]), i) << i;
    EXPECT_EQ(dynamic_map_code(m, 0.0f), 127);
    EXPECT_EQ(m[127], 0.0f);
}

TEST(QuantRegistry, CliMapping) {
    EXPECT_STREQ(select_format("nf", 4).name, "nf4");
    EXPECT_EQ(select_format("nf", 4).family, FormatFamily::BnbNF4);
    EXPECT_STREQ(select_format("fp4", 4).name, "fp4");
    EXPECT_STREQ(select_format("nf", 2).name, "nf2");
    EXPECT_STREQ(select_format("nf", 8).name, "nf8");
    for (int b : {2, 4, 8}) EXPECT_EQ(select_format("uniform", b).family, FormatFamily::LoftqUniform);
    EXPECT_THROW(select_format("int", 4), ConfigError);
    EXPECT_THROW(select_format("fp4", 2), ConfigError);
    EXPECT_THROW(select_format("nf", 3), ConfigError);
    EXPECT_EQ(find_format("nf16"), nullptr);
    EXPECT_STREQ(select_format("int8", 8).name, "int8");
    EXPECT_THROW(select_format("int8", 4), ConfigError);
    EXPECT_EQ(all_formats().size(), 8u);
    for (int bs = 32; bs <= 4096; bs *= 2) EXPECT_NO_THROW(check_blocksize(bs));
    for (int bs : {0, 16, 48, 8192}) EXPECT_THROW(check_blocksize(bs), ConfigError);
}

}  // namespace
}  // namespace loftq
