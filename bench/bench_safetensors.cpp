// Throughput of reading tensors from a safetensors file (mmap, page cache warm) and widening
// them to float32, against memcpy of the same bytes (the ceiling of any reader), and of
// streaming a file out with SafetensorsWriter.
//
// GB/s = bytes of checkpoint data read (or written) per second: numel * itemsize / time.
// Tensor: LOFTQ_BENCH_MB megabytes of BF16 or F32 (default 128), data deterministic.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"

using namespace loftq;

namespace {

uint64_t bench_bytes() {
    const char* mb = std::getenv("LOFTQ_BENCH_MB");
    return (mb ? std::strtoull(mb, nullptr, 10) : 128) << 20;
}

std::string scratch(const std::string& name) {
    const char* t = std::getenv("TMPDIR");
    return std::string(t && *t ? t : "/tmp") + "/loftq-bench-" + std::to_string(::getpid()) + "-" + name;
}

// One file per dtype, written once and reused by every repeat.
const std::string& bench_file(DType dtype) {
    static std::string paths[2];
    std::string& p = paths[dtype == DType::BF16 ? 0 : 1];
    if (!p.empty()) return p;
    p = scratch(dtype_name(dtype));
    const uint64_t n = bench_bytes() / dtype_size(dtype);
    std::vector<unsigned char> bytes(n * dtype_size(dtype));
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>((i * 2654435761u) >> 13 & 0x3f);
    SafetensorsWriter w(p, {{"w", dtype, {static_cast<int64_t>(n)}}});
    w.write("w", bytes.data(), bytes.size());
    w.finish();
    return p;
}

void BM_ReadF32(benchmark::State& state, DType dtype) {
    SafetensorsFile f(bench_file(dtype));
    const TensorInfo& t = f.info("w");
    std::vector<float> out(t.numel());
    f.read_f32_into("w", 0, out.size(), out.data());  // warm the page cache and the output
    for (auto _ : state) {
        f.read_f32_into("w", 0, out.size(), out.data(), FiniteCheck::reject);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * t.nbytes()));
}

void BM_MemcpyPeer(benchmark::State& state, DType dtype) {
    SafetensorsFile f(bench_file(dtype));
    const TensorInfo& t = f.info("w");
    std::vector<unsigned char> out(t.nbytes());
    std::memcpy(out.data(), f.raw("w"), out.size());
    for (auto _ : state) {
        std::memcpy(out.data(), f.raw("w"), out.size());
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * t.nbytes()));
}

void BM_Write(benchmark::State& state) {
    const uint64_t n = bench_bytes() / 2;
    std::vector<uint16_t> data(n, 0x3f80);
    const std::string path = scratch("write");
    for (auto _ : state) {
        SafetensorsWriter w(path, {{"w", DType::BF16, {static_cast<int64_t>(n)}}});
        w.write("w", data.data(), n * 2);
        w.finish();  // includes fsync
    }
    std::remove(path.c_str());
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * 2));
}

BENCHMARK_CAPTURE(BM_ReadF32, bf16, DType::BF16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_MemcpyPeer, bf16, DType::BF16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_ReadF32, f32, DType::F32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_MemcpyPeer, f32, DType::F32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Write)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    for (DType d : {DType::BF16, DType::F32}) std::remove(bench_file(d).c_str());
    return 0;
}
