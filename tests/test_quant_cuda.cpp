// The fused CUDA quantization kernel against the CPU reference, bit for bit: packed codes,
// scales, Q and the residual x - Q, for every format x blocksize on stories260K and on seeded
// random inputs (incl. odd n and zero blocks). GPU-only (ctest label gpu): Skipped without a CUDA
// device; the device-free argument checks are in test_cuda_entry_checks.cpp.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.hpp"
#include "quant/quantize.hpp"
#include "quant/quantize_ref.hpp"
#include "support/weights.hpp"
#ifdef LOFTQ_HAVE_CUDA
#include "linalg/cuda_quant.hpp"
#endif

namespace loftq {
namespace {

#ifdef LOFTQ_HAVE_CUDA
// One CUDA backend for the whole test program (made on first use, with a device present).
LinalgBackend* gpu_backend() {
    static std::unique_ptr<LinalgBackend> be = make_cuda_backend(0);
    return be.get();
}

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
        quantize_cuda(*gpu_backend(), f, bs, x.data(), n, p.data(), s.data(), out.data(), mode);
        ASSERT_EQ(p, p_ref) << what;
        for (size_t b = 0; b < s.size(); ++b) ASSERT_EQ(testing::float_bits(s[b]), testing::float_bits(s_ref[b])) << what << " block " << b;
        for (int64_t i = 0; i < n; ++i) {
            const float want = mode == QuantOutput::Dequantized ? q_ref[i] : x[i] - q_ref[i];
            ASSERT_EQ(testing::float_bits(out[i]), testing::float_bits(want)) << what << " element " << i;
        }
    }
}

void expect_gpu_as_loaded_matches_cpu(const QuantParams& p, Backbone bb, const std::vector<float>& x,
                                      const std::string& what) {
    const int64_t n = x.size();
    QuantizedTensor q;
    std::vector<float> q_cpu(n);
    quantize_as_loaded(p, bb, x.data(), n, q, q_cpu.data(), what);
    std::vector<uint8_t> packed(q.packed.size(), 0xAA);
    std::vector<float> absmax(q.absmax.size(), -7.0f), q_gpu(n, -7.0f);
    quantize_cuda_as_loaded(*gpu_backend(), p, bb, x.data(), n, packed.data(), absmax.data(), q_gpu.data());
    const std::string label = what + " " + p.format->name + " " + backbone_name(bb);
    ASSERT_EQ(packed, q.packed) << label;
    for (size_t b = 0; b < absmax.size(); ++b)
        ASSERT_EQ(testing::float_bits(absmax[b]), testing::float_bits(q.absmax[b])) << label << " block " << b;
    for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(testing::float_bits(q_gpu[i]), testing::float_bits(q_cpu[i])) << label << " element " << i;
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
                if (f.is_row_wise()) continue;  // int8 has no kernel: the backend stages it (test_loftq_device)
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
                if (f.is_row_wise()) continue;  // no kernel (staged through the host)
                expect_gpu_matches_ref(f, bs, x, std::string(f.name) + " seed " + std::to_string(seed));
                if (f.is_bnb()) {
                    std::vector<float> odd(x.begin(), x.begin() + 5001);
                    expect_gpu_matches_ref(f, bs, odd, std::string(f.name) + " odd, seed " + std::to_string(seed));
                }
            }
    }
#endif
}

TEST(QuantCuda, AsLoadedMatchesCpu) {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
#ifdef LOFTQ_HAVE_CUDA
    std::vector<std::pair<std::string, std::vector<float>>> inputs;
    for (auto& w : testing::stories_target_weights()) inputs.emplace_back(w.name, std::move(w.data));
    inputs.emplace_back("random", testing::heavy_tailed(64 * 1024, 3, 0.02f, 3.0));
    for (const char* name : {"nf4", "fp4", "nf2", "nf8", "uniform4"})
        for (Backbone bb : {Backbone::BF16, Backbone::FP32, Backbone::BNB4})
            for (int bs : {64, 256}) {
                const QuantFormat& f = *find_format(name);
                if (!cuda_quant_kernel_supports({&f, bs, false}, bb)) continue;  // staged (nf2 through NF4)
                for (const auto& [label, x] : inputs)
                    if (f.is_bnb() || x.size() % bs == 0) expect_gpu_as_loaded_matches_cpu({&f, bs, false}, bb, x, label);
            }
#endif
}

}  // namespace
}  // namespace loftq
