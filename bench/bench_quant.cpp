// Quantize + dequantize throughput: the reference (plain loops, 1 thread) vs the fast path
// (OpenMP over blocks, 1 and 2 threads), against a plain memory copy of the same bytes in the
// same process; plus the fused CUDA kernel when a device is present (skipped otherwise).
//
// GB/s = bytes / seconds / 1e9 with bytes = n * 4 (float32 input read) + n * 4 (float32 Q
// written) per iteration; codes and scales (<= 1/8 + 4/blocksize of that) are not counted.
// The memcpy peer moves the same bytes: it reads n floats and writes n floats.
// Tensor: 4096 x 4096 float32 heavy-tailed weights (64 MiB in, 64 MiB out), blocksize 64.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include "quant/quantize.hpp"
#include "quant/quantize_fast.hpp"
#include "quant/quantize_ref.hpp"
#include "quant/simd_kernels.hpp"
#include "linalg/backend.hpp"  // cuda_device_count (0 in a CPU build)
#ifdef LOFTQ_HAVE_CUDA
#include "linalg/cuda_quant.hpp"
#include <cuda_runtime.h>
#endif

namespace {

constexpr int64_t kN = 4096LL * 4096;
constexpr int kBlock = 64;
const char* const kFormats[] = {"nf4", "fp4", "nf2", "nf8", "uniform4"};

const std::vector<float>& weights() {
    static const std::vector<float> w = [] {
        std::mt19937_64 rng(42);
        std::student_t_distribution<float> t(4.0f);
        std::vector<float> v(kN);
        for (auto& x : v) x = 0.02f * t(rng);
        return v;
    }();
    return w;
}

void set_bytes(benchmark::State& state) {
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kN * 8);
}

void BM_Memcpy(benchmark::State& state) {
    omp_set_num_threads(static_cast<int>(state.range(0)));
    const auto& x = weights();
    std::vector<float> y(kN);
    for (auto _ : state) {
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < kN; c += 1 << 16) std::memcpy(&y[c], &x[c], sizeof(float) * std::min<int64_t>(1 << 16, kN - c));
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    set_bytes(state);
}

void BM_Reference(benchmark::State& state) {
    const loftq::QuantFormat& f = loftq::all_formats()[state.range(0)];
    const auto& x = weights();
    std::vector<uint8_t> codes(kN);
    std::vector<float> scales(loftq::block_count(kN, kBlock)), q(kN);
    for (auto _ : state) {
        loftq::quantize_ref(f, kBlock, x.data(), kN, codes.data(), scales.data());
        loftq::dequantize_ref(f, kBlock, codes.data(), scales.data(), kN, q.data());
        benchmark::DoNotOptimize(q.data());
    }
    state.SetLabel(f.name);
    set_bytes(state);
}

void BM_Fast(benchmark::State& state) {
    const loftq::QuantFormat& f = loftq::all_formats()[state.range(0)];
    omp_set_num_threads(static_cast<int>(state.range(1)));
    const auto& x = weights();
    std::vector<uint8_t> packed(loftq::packed_bytes(f, kN));
    std::vector<float> scales(loftq::block_count(kN, kBlock)), q(kN);
    for (auto _ : state) {
        loftq::quantize_fast(f, kBlock, x.data(), kN, packed.data(), scales.data(), q.data());
        benchmark::DoNotOptimize(q.data());
    }
    state.SetLabel(f.name);
    set_bytes(state);
}

// quantize_as_loaded (validation, codes, the backbone re-quantization check, Q): what the LoftQ
// loop pays per iteration. Same byte count as above.
void BM_AsLoaded(benchmark::State& state) {
    const loftq::QuantFormat& f = loftq::all_formats()[state.range(0)];
    const auto backbone = static_cast<loftq::Backbone>(state.range(1));
    omp_set_num_threads(static_cast<int>(state.range(2)));
    const auto& x = weights();
    loftq::QuantizedTensor q;
    std::vector<float> loaded(kN);
    for (auto _ : state) {
        loftq::quantize_as_loaded({&f, kBlock, false}, backbone, x.data(), kN, q, loaded.data(), "bench");
        benchmark::DoNotOptimize(loaded.data());
    }
    state.SetLabel(std::string(f.name) + " " + loftq::backbone_name(backbone));
    set_bytes(state);
}

// The LoftQ loop's per-iteration pass on the CPU (quantize_residual_as_loaded): x = W - L R,
// NF4 as loaded with a bf16 backbone, res = W - Q, at one SIMD level. Bytes: W and L R read, res
// written (12 n; codes and scales not counted), the traffic a memory-speed pass cannot avoid.
void BM_FusedResidual(benchmark::State& state) {
    const char* levels[] = {"scalar", "avx2", "avx512"};
    const loftq::QuantKernels* k = loftq::quant_kernels_for(levels[state.range(0)]);
    if (!k) {
        state.SkipWithError("this CPU lacks the level");
        for (auto _ : state) {
        }
        return;
    }
    omp_set_num_threads(static_cast<int>(state.range(1)));
    const auto& x = weights();
    std::vector<float> low(kN), res(kN);
    for (int64_t i = 0; i < kN; ++i) low[i] = 0.25f * x[(i * 7) % kN];
    loftq::QuantizedTensor q;
    for (auto _ : state) {
        loftq::quantize_residual_as_loaded({loftq::find_format("nf4"), kBlock, false}, loftq::Backbone::BF16,
                                           x.data(), low.data(), kN, q, res.data(), low.data(), "bench", k);
        benchmark::DoNotOptimize(res.data());
    }
    state.SetLabel(std::string(k->level) + " nf4 bf16");
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kN * 12);
}

void BM_Cuda(benchmark::State& state) {
    if (loftq::cuda_device_count() == 0) {
        state.SkipWithError("no CUDA device");
        for (auto _ : state) {
        }
        return;
    }
#ifdef LOFTQ_HAVE_CUDA
    const loftq::QuantFormat& f = loftq::all_formats()[state.range(0)];
    const auto& x = weights();
    float *dx, *dq, *ds;
    uint8_t* dp;
    cudaMalloc(&dx, kN * 4);
    cudaMalloc(&dq, kN * 4);
    cudaMalloc(&ds, loftq::block_count(kN, kBlock) * 4);
    cudaMalloc(&dp, loftq::packed_bytes(f, kN));
    cudaMemcpy(dx, x.data(), kN * 4, cudaMemcpyHostToDevice);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    for (auto _ : state) {
        cudaEventRecord(start);
        loftq::quantize_cuda_device(f, kBlock, dx, kN, dp, ds, dq, loftq::QuantOutput::Dequantized, nullptr);
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        state.SetIterationTime(ms / 1e3);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaFree(dx);
    cudaFree(dq);
    cudaFree(ds);
    cudaFree(dp);
    state.SetLabel(f.name);
    set_bytes(state);
#endif
}

int format_index(const char* name) {
    for (size_t i = 0; i < loftq::all_formats().size(); ++i)
        if (std::strcmp(loftq::all_formats()[i].name, name) == 0) return static_cast<int>(i);
    return 0;
}

void register_all() {
    for (int t : {1, 2})
        benchmark::RegisterBenchmark("memcpy", BM_Memcpy)->Arg(t)->ArgName("threads")->Iterations(5)->Repetitions(3)->UseRealTime();
    for (const char* name : kFormats) {
        const int i = format_index(name);
        benchmark::RegisterBenchmark((std::string("reference/") + name).c_str(), BM_Reference)->Arg(i)->Iterations(1)->Repetitions(3)->UseRealTime();
        for (int t : {1, 2})
            benchmark::RegisterBenchmark((std::string("fast/") + name).c_str(), BM_Fast)->Args({i, t})->ArgNames({"format", "threads"})->Iterations(3)->Repetitions(3)->UseRealTime();
        if (std::strcmp(name, "nf4") == 0)
            for (auto bb : {loftq::Backbone::BF16, loftq::Backbone::BNB4})
                for (int t : {1, 2})
                    benchmark::RegisterBenchmark((std::string("as_loaded/") + name + "/" + loftq::backbone_name(bb)).c_str(), BM_AsLoaded)
                        ->Args({i, static_cast<int>(bb), t})->ArgNames({"format", "backbone", "threads"})->Iterations(2)->Repetitions(3)->UseRealTime();
        benchmark::RegisterBenchmark((std::string("cuda/") + name).c_str(), BM_Cuda)->Arg(i)->Iterations(20)->Repetitions(3)->UseManualTime();
    }
    for (int level : {0, 1, 2})
        for (int t : {1, 2})
            benchmark::RegisterBenchmark("fused_residual/nf4/bf16", BM_FusedResidual)->Args({level, t})
                ->ArgNames({"level", "threads"})->Iterations(5)->Repetitions(3)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
