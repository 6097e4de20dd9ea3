// The contract of device quantization (loftq/device_quant.hpp) that holds without a GPU: it is
// never chosen for the CPU backend, and asking for it there throws. The LoftQ loop on the CUDA
// backend against the CPU backend is in test_loftq_device_cuda.cpp (GPU-only, label gpu).
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "loftq/device_quant.hpp"
#include "loftq/loftq_loop.hpp"
#include "quant/format.hpp"

namespace loftq {
namespace {

LoftqOptions options(int iters, Backbone backbone = Backbone::BF16) {
    LoftqOptions o;
    o.quant.format = &select_format("nf", 4);
    o.quant.blocksize = 64;
    o.backbone = backbone;
    o.iters = iters;
    o.svd = "exact";
    o.svd_options.rank = 16;
    return o;
}

TEST(LoftqDevice, NeverChosenForTheCpuBackend) {
    auto cpu = make_cpu_backend();
    EXPECT_FALSE(device_quant_supported(*cpu, options(1).quant, Backbone::BF16));
    EXPECT_THROW(DeviceQuantSlots(*cpu, options(1).quant, Backbone::BF16, 64, "w"), NotImplemented);
}

}  // namespace
}  // namespace loftq
