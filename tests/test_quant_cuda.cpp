// The fused CUDA quantization kernel against the CPU reference, bit for bit: packed codes,
// scales, Q and the residual x - Q, for every format x blocksize on stories260K and on seeded
// random inputs (incl. odd n and zero blocks). Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cstring>

#include "quant/quantize_ref.hpp"
#include "support/weights.hpp"
#ifdef LOFTQ_HAVE_CUDA
#include "quant/quantize_cuda.hpp"
#endif

namespace loftq {
namespace {

#ifdef LOFTQ_HAVE_CUDA
void expect_gpu_matches_ref(const QuantFormat& f, int bs, const std::vector<float>& x, const std::string& what) {
    const int64_t n = x.size();
    std::vector<uint8_t> c(n);
    std::vector<float> s_ref(block_count(n, bs)), q_ref(n);
    quantize_ref(f, bs, x.data(), n, c.data(), s_ref.data());
    std::vector<uint8_t> p_ref(packed_bytes(f, n));
    pack_codes(f, c.data(), n, f.is_bnb() ? bnb_pad_code(f, s_ref.back()) : 0, p_ref.data());
    dequantize_ref(f, bs, c.data(), s_ref.data(), n, q_ref.data());

    for (QuantOutput mode : {QuantOutput::Dequantized, QuantOutput::Residual}) {
        std::vector<uint8_t> p(p_ref.size(), 0xAA);  // poisoned
        std::vector<float> s(s_ref.size(), -7.0f), out(n, -7.0f);
        quantize_cuda(f, bs, x.data(), n, p.data(), s.data(), out.data(), mode);
        ASSERT_EQ(p, p_ref) << what;
        for (size_t b = 0; b < s.size(); ++b) ASSERT_EQ(testing::float_bits(s[b]), testing::float_bits(s_ref[b])) << what << " block " << b;
        for (int64_t i = 0; i < n; ++i) {
            const float want = mode == QuantOutput::Dequantized ? q_ref[i] : x[i] - q_ref[i];
            ASSERT_EQ(testing::float_bits(out[i]), testing::float_bits(want)) << what << " element " << i;
        }
    }
}
#endif

bool have_device() {
#ifdef LOFTQ_HAVE_CUDA
    return cuda_device_count() > 0;
#else
    return false;
#endif
}

TEST(QuantCuda, MatchesReferenceOnStories) {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
#ifdef LOFTQ_HAVE_CUDA
    const auto weights = testing::stories_target_weights();
    for (const auto& f : all_formats())
        for (int bs = 32; bs <= 4096; bs *= 2)
            for (const auto& w : weights) {
                if (f.needs_full_blocks() && w.data.size() % bs) continue;
                expect_gpu_matches_ref(f, bs, w.data, std::string(f.name) + " bs " + std::to_string(bs) + " " + w.name);
            }
#endif
}

TEST(QuantCuda, MatchesReferenceOnRandomInputs) {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
#ifdef LOFTQ_HAVE_CUDA
    for (uint64_t seed = 1; seed <= 4; ++seed) {
        auto x = testing::heavy_tailed(16384, seed, seed % 2 ? 0.5f : 1e-3f);
        std::fill(x.begin() + 4096, x.begin() + 4096 + 64, 0.0f);
        for (const auto& f : all_formats())
            for (int bs = 32; bs <= 4096; bs *= 2) {
                expect_gpu_matches_ref(f, bs, x, std::string(f.name) + " seed " + std::to_string(seed));
                if (f.is_bnb()) {
                    std::vector<float> odd(x.begin(), x.begin() + 5001);
                    expect_gpu_matches_ref(f, bs, odd, std::string(f.name) + " odd, seed " + std::to_string(seed));
                }
            }
    }
#endif
}

}  // namespace
}  // namespace loftq
