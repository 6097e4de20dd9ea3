// The GPU run file of stories260K against the CPU one (issue #7, point 4): `loftq quantize
// --device cuda` and `--device cpu`, one process each (MPI singleton, no mpirun), compared
// matrix by matrix in C++ (the GPU machine has no h5py).
//
// - T = 1: the codes are a quantization of W alone, which the CUDA kernel computes bit for bit
//   like the CPU: codes and absmax must be identical, errors within 1e-4.
// - T = 3: from t = 2 the quantizer's input W - L Rt carries cuBLAS-vs-OpenBLAS rounding, so an
//   element within an ulp of a code threshold may land on the other side. The test requires the
//   same chosen iteration, errors within 1e-4, at most 1e-4 of the codes different, and reports
//   the count (the issue asks for bit-exact codes: the printed count says whether they are).
// - --backbone fp16 (quantization staged through the host on CUDA): codes bit-exact at T = 1.
// Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "io/runfile.hpp"
#include "linalg/backend.hpp"
#include "support/paths.hpp"

namespace loftq {
namespace {

using testing::TempDir;

std::string quantize(const TempDir& dir, const std::string& device, int iters, const std::string& extra = "") {
    const std::string work = dir / (device + "_" + std::to_string(iters) + ".h5");
    const std::string cmd = testing::loftq_binary() + " quantize --model " + testing::stories_dir() +
                            " --work " + work + " --rank 8 --iters " + std::to_string(iters) +
                            " --device " + device + extra;
    const auto r = testing::run_command(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    return work;
}

struct Diff {
    int64_t codes_bytes = 0, codes_differ = 0, absmax_differ = 0;
    double max_error_diff = 0;
};

Diff compare(const std::string& cpu_path, const std::string& gpu_path) {
    const RunFile cpu = RunFile::open_read(cpu_path), gpu = RunFile::open_read(gpu_path);
    EXPECT_EQ(cpu.layout().size(), gpu.layout().size());
    Diff d;
    for (size_t i = 0; i < cpu.layout().size(); ++i) {
        const MatrixRecord a = cpu.read_matrix(i), b = gpu.read_matrix(i);
        SCOPED_TRACE(a.layout.name);
        EXPECT_EQ(a.layout.name, b.layout.name);
        EXPECT_EQ(a.chosen_iteration, b.chosen_iteration);
        EXPECT_EQ(a.codes.size(), b.codes.size());
        EXPECT_EQ(a.absmax.size(), b.absmax.size());
        for (size_t k = 0; k < std::min(a.codes.size(), b.codes.size()); ++k)
            d.codes_differ += a.codes[k] != b.codes[k];
        for (size_t k = 0; k < std::min(a.absmax.size(), b.absmax.size()); ++k)
            d.absmax_differ += a.absmax[k] != b.absmax[k];
        d.codes_bytes += static_cast<int64_t>(a.codes.size());
        auto err = [&](double x, double y) { d.max_error_diff = std::max(d.max_error_diff, std::fabs(x - y)); };
        err(a.qlora_error, b.qlora_error);
        err(a.loaded_error, b.loaded_error);
        EXPECT_EQ(a.iteration_error.size(), b.iteration_error.size());
        for (size_t t = 0; t < std::min(a.iteration_error.size(), b.iteration_error.size()); ++t)
            err(a.iteration_error[t], b.iteration_error[t]);
    }
    std::printf("run file %s vs %s: %lld of %lld code bytes differ, %lld absmax differ, max |error diff| %.3g\n",
                cpu_path.c_str(), gpu_path.c_str(), static_cast<long long>(d.codes_differ),
                static_cast<long long>(d.codes_bytes), static_cast<long long>(d.absmax_differ), d.max_error_diff);
    return d;
}

TEST(RunFileGpu, OneIterationCodesBitExact) {
    if (!cuda_device_present()) GTEST_SKIP() << "no CUDA device";
    TempDir dir;
    const Diff d = compare(quantize(dir, "cpu", 1), quantize(dir, "cuda", 1));
    EXPECT_GT(d.codes_bytes, 0);
    EXPECT_EQ(d.codes_differ, 0);
    EXPECT_EQ(d.absmax_differ, 0);
    EXPECT_LE(d.max_error_diff, 1e-4);
}

TEST(RunFileGpu, ThreeIterationsMatchCpu) {
    if (!cuda_device_present()) GTEST_SKIP() << "no CUDA device";
    TempDir dir;
    const Diff d = compare(quantize(dir, "cpu", 3), quantize(dir, "cuda", 3));
    EXPECT_GT(d.codes_bytes, 0);
    EXPECT_LE(static_cast<double>(d.codes_differ), 1e-4 * static_cast<double>(d.codes_bytes));
    EXPECT_LE(d.max_error_diff, 1e-4);
}

// --backbone fp16 is not on the device yet: the loop stages quantization through the host there.
// The staged path must give the CPU's codes too.
TEST(RunFileGpu, HostStagedFp16BackboneCodesBitExact) {
    if (!cuda_device_present()) GTEST_SKIP() << "no CUDA device";
    TempDir dir;
    const Diff d = compare(quantize(dir, "cpu", 1, " --backbone fp16"), quantize(dir, "cuda", 1, " --backbone fp16"));
    EXPECT_GT(d.codes_bytes, 0);
    EXPECT_EQ(d.codes_differ, 0);
    EXPECT_EQ(d.absmax_differ, 0);
    EXPECT_LE(d.max_error_diff, 1e-4);
}

}  // namespace
}  // namespace loftq
