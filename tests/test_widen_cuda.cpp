// Widening bf16 / fp16 to float32 on the device (upload_widened) against the host conversions,
// bit for bit: every one of the 65536 bit patterns (subnormals, infinities; NaN as any NaN), odd counts and
// an output that is not 8-byte aligned (the one-element kernel). GPU-only (ctest label gpu):
// Skipped without a CUDA device; the device-free argument check is in test_cuda_entry_checks.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "linalg/backend.hpp"
#ifdef LOFTQ_HAVE_CUDA
#include "linalg/device_widen.hpp"
#endif

namespace loftq {
namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

#ifdef LOFTQ_HAVE_CUDA
void expect_widened(LinalgBackend& be, DType t, const std::vector<uint16_t>& in, size_t out_offset) {
    const size_t n = in.size();
    DeviceBuffer dev(be, n + out_offset);
    std::vector<float> poison(n + out_offset, -7.0f), out(n + out_offset);
    be.upload(dev.get(), poison.data(), poison.size());
    upload_widened(be, t, in.data(), n, dev.get() + out_offset);
    be.download(out.data(), dev.get(), out.size());
    for (size_t i = 0; i < n; ++i) {
        const float want = t == DType::BF16 ? bf16_to_float(in[i]) : f16_to_float(in[i]);
        if (std::isnan(want)) {  // NaN payloads may be canonicalised by the hardware conversion
            ASSERT_TRUE(std::isnan(out[out_offset + i])) << dtype_name(t) << " element " << i;
            continue;
        }
        ASSERT_EQ(bits(out[out_offset + i]), bits(want)) << dtype_name(t) << " element " << i << " bits " << in[i];
    }
    for (size_t i = 0; i < out_offset; ++i) ASSERT_EQ(out[i], -7.0f) << "wrote before the output";
}
#endif

TEST(WidenCuda, EveryBitPatternOddCountsAndUnalignedOutput) {
    if (!cuda_device_present()) GTEST_SKIP() << "no CUDA device";
#ifdef LOFTQ_HAVE_CUDA
    auto be = make_cuda_backend(0);
    std::vector<uint16_t> all(65536);
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
    for (DType t : {DType::BF16, DType::F16}) {
        expect_widened(*be, t, all, 0);
        expect_widened(*be, t, std::vector<uint16_t>(all.begin() + 5, all.begin() + 1000), 0);  // odd n
        expect_widened(*be, t, std::vector<uint16_t>(all.begin(), all.begin() + 777), 1);       // unaligned out
        expect_widened(*be, t, {0x3f80}, 0);                                                    // n = 1
    }
    EXPECT_THROW(upload_widened(*be, DType::I32, all.data(), 4, nullptr), NotImplemented);
#endif
}

}  // namespace
}  // namespace loftq
