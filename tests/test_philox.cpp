// Philox4x32-10 against the Random123 known-answer vectors, and the Gaussian stream's contract:
// a pure function of (seed, name, index), independent of how it is split, standard-normal moments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/philox.hpp"
#include "linalg/backend.hpp"

using namespace loftq;

TEST(Philox, KnownAnswerVectors) {
    uint32_t out[4];
    philox::philox4x32_10(philox::Key{0, 0, 0, 0}, 0, out);
    EXPECT_EQ(out[0], 0x6627e8d5u);
    EXPECT_EQ(out[1], 0xe169c58du);
    EXPECT_EQ(out[2], 0xbc57ac4cu);
    EXPECT_EQ(out[3], 0x9b00dbd8u);
    philox::philox4x32_10(philox::Key{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          0xffffffffffffffffULL, out);
    EXPECT_EQ(out[0], 0x408f276du);
    EXPECT_EQ(out[1], 0x41c83b0eu);
    EXPECT_EQ(out[2], 0xa20bc7c6u);
    EXPECT_EQ(out[3], 0x6d5451fdu);
}

TEST(Philox, FnvKnownAnswer) {
    EXPECT_EQ(philox::fnv1a64("", 0), 0xcbf29ce484222325ULL);
    EXPECT_EQ(philox::fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
}

TEST(Philox, StreamIsAFunctionOfSeedNameAndIndex) {
    auto be = make_cpu_backend();
    const std::string name = "model.layers.0.mlp.up_proj.weight";
    const uint64_t h = philox::fnv1a64(name.data(), name.size());
    std::vector<float> whole(1003), tail(500), other(1003), reseeded(1003);
    be->fill_gaussian(7, h, 0, whole.size(), whole.data());
    be->fill_gaussian(7, h, 503, tail.size(), tail.data());
    for (size_t i = 0; i < tail.size(); ++i) ASSERT_EQ(tail[i], whole[503 + i]) << i;
    be->fill_gaussian(7, h + 1, 0, other.size(), other.data());
    be->fill_gaussian(8, h, 0, reseeded.size(), reseeded.data());
    int same_name = 0, same_seed = 0;
    for (size_t i = 0; i < whole.size(); ++i) {
        same_name += whole[i] == other[i];
        same_seed += whole[i] == reseeded[i];
    }
    EXPECT_EQ(same_name, 0);
    EXPECT_EQ(same_seed, 0);
    EXPECT_EQ(whole[5], philox::gaussian(philox::make_key(7, h), 5));
}

TEST(Philox, GaussianMoments) {
    auto be = make_cpu_backend();
    const size_t n = 1 << 20;
    std::vector<float> x(n);
    be->fill_gaussian(123, 456, 0, n, x.data());
    double m1 = 0, m2 = 0, m4 = 0;
    for (float v : x) {
        m1 += v;
        m2 += double(v) * v;
        m4 += double(v) * v * v * v;
    }
    m1 /= n; m2 /= n; m4 /= n;
    // Standard errors at n = 2^20: mean 1e-3, variance 1.4e-3, fourth moment 1e-2.
    EXPECT_NEAR(m1, 0.0, 5e-3);
    EXPECT_NEAR(m2, 1.0, 7e-3);
    EXPECT_NEAR(m4, 3.0, 5e-2);
}
