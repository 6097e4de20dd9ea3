// The CUDA entry points reject, before any device call, what they do not support: so these run
// on a machine without a GPU (CI), in a build with CUDA. In a CPU-only build (-DLOFTQ_CUDA=OFF)
// there is nothing to check and the binary reports Skipped. Split from test_quant_cuda.cpp and
// test_widen_cuda.cpp, which are GPU-only (ctest label gpu) and Skipped without a device.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "linalg/backend.hpp"
#include "quant/format.hpp"
#include "quant/quantize.hpp"
#ifdef LOFTQ_HAVE_CUDA
#include "linalg/device_widen.hpp"
#include "linalg/cuda_quant.hpp"
#endif

namespace loftq {
namespace {

TEST(QuantCuda, AsLoadedRejectsWhatOnlyTheCpuDoes) {
#ifdef LOFTQ_HAVE_CUDA
    // Checked before the backend is touched, so this runs without a GPU too (the CUDA backend's
    // slots stage these combinations through the host; the kernel itself rejects them).
    auto cpu = make_cpu_backend();
    std::vector<float> x(64, 1.0f), out(64);
    std::vector<uint8_t> packed(32);
    float absmax = 0;
    EXPECT_THROW(quantize_cuda_as_loaded(*cpu, {find_format("nf4"), 64, false}, Backbone::FP16, x.data(), 64,
                                         packed.data(), &absmax, out.data()),
                 NotImplemented);
    EXPECT_THROW(quantize_cuda_as_loaded(*cpu, {find_format("nf4"), 64, true}, Backbone::BF16, x.data(), 64,
                                         packed.data(), &absmax, out.data()),
                 NotImplemented);
    EXPECT_THROW(quantize_cuda_as_loaded(*cpu, {find_format("nf8"), 64, false}, Backbone::BNB4, x.data(), 64,
                                         packed.data(), &absmax, out.data()),
                 ConfigError);
    // nf2 (through NF4) and int8 have no as-loaded kernel: the slots stage them.
    for (const char* name : {"nf2", "int8"})
        EXPECT_THROW(quantize_cuda_as_loaded(*cpu, {find_format(name), 64, false}, Backbone::BF16, x.data(), 64,
                                             packed.data(), &absmax, out.data()),
                     NotImplemented)
            << name;
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

TEST(WidenCuda, RejectsTheCpuBackend) {
#ifdef LOFTQ_HAVE_CUDA
    auto be = make_cpu_backend();
    std::vector<uint16_t> in(4, 0);
    std::vector<float> out(4);
    EXPECT_THROW(upload_widened(*be, DType::BF16, in.data(), in.size(), out.data()), BackendError);
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

}  // namespace
}  // namespace loftq
