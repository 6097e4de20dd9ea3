// The whole LoftQ loop on one matrix per Llama-2-70B shape (issue #7): NF4, r = 64, T = 1 and 5,
// --svd auto, on the CPU or the CUDA backend. A plain timed main (not Google Benchmark): every
// (shape, T) gets one warm-up run and --repeats timed runs; the median is reported.
//
// Per (shape, T) it reports:
//   median_ms          run_loftq with W already in the backend's memory (on CUDA: on the device;
//                      includes the one download of codes, absmax, A and B at the end)
//   median_upload_ms   CUDA only: run_loftq from host (pageable) float32 W, as the driver calls it
//   bytes_min          bytes that must move: W read once (float32) + codes + absmax + A + B
//   achieved_gbs       bytes_min / median_ms
//   floor_ms           bytes_min / copy_gbs (copy_gbs: measured here, read + write bytes of a
//                      large device-to-device copy on CUDA, memcpy on the CPU)
//   the errors (QLoRA's, per iteration, the stored result's) and the phase times of the last run.
//
// Test matrix (the same distribution as bench/peer_peft.py, not the same numbers):
//   W = 0.02 N + G1 diag(0.01 exp(-j / 8)) G2,  N (m x n), G1 (m x 32), G2 (32 x n) standard normal.
//
//   bench_loftq --device cpu|cuda [--scale S] [--repeats R] [--iters 1,5] [--shapes MxN,...]
//               [--svd auto|exact|randomized] [--backbone bf16|fp32|bnb4] [--out FILE.json]
// --backbone fp32 quantizes exactly like PEFT (absmax not rounded up to bf16): the like-for-like
// error comparison with the peer.
// --scale divides every dimension (CPU dry runs). Output: JSON to --out (or stdout), a line of
// text per measurement on stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "linalg/backend.hpp"
#include "loftq/loftq_loop.hpp"
#include "quant/format.hpp"

using namespace loftq;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    std::string device = "cpu", out, shapes = "1024x8192,8192x8192,28672x8192,8192x28672";
    std::string iters = "1,5", svd = "auto", backbone = "bf16";
    int scale = 1, repeats = 5, rank = 64;
};

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) LOFTQ_THROW(ConfigError, k, " needs a value");
            return argv[++i];
        };
        if (k == "--device") a.device = value();
        else if (k == "--out") a.out = value();
        else if (k == "--shapes") a.shapes = value();
        else if (k == "--iters") a.iters = value();
        else if (k == "--svd") a.svd = value();
        else if (k == "--backbone") a.backbone = value();
        else if (k == "--scale") a.scale = std::stoi(value());
        else if (k == "--repeats") a.repeats = std::stoi(value());
        else if (k == "--rank") a.rank = std::stoi(value());
        else LOFTQ_THROW(ConfigError, "unknown option ", k);
    }
    if (a.scale < 1 || a.repeats < 1) LOFTQ_THROW(ConfigError, "--scale and --repeats must be >= 1");
    return a;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string t; std::getline(ss, t, sep);)
        if (!t.empty()) out.push_back(t);
    return out;
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t h = v.size() / 2;
    return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// Read + write bytes per second of a large copy in the backend's memory, median of 10.
double copy_gbs(LinalgBackend& be, size_t count) {
    DeviceBuffer a(be, count), b(be, count);
    be.fill_gaussian(7, 7, 0, count, a.get());
    be.copy(b.get(), a.get(), count);
    be.synchronize();
    std::vector<double> t;
    for (int i = 0; i < 10; ++i) {
        const auto t0 = Clock::now();
        be.copy(i % 2 ? a.get() : b.get(), i % 2 ? b.get() : a.get(), count);
        be.synchronize();
        t.push_back(ms_since(t0));
    }
    return 2.0 * count * sizeof(float) / (median(t) * 1e6);
}

// W = 0.02 N + G1 diag(0.01 exp(-j / 8)) G2 in backend memory.
void test_matrix(LinalgBackend& be, int64_t m, int64_t n, float* w) {
    constexpr int kHead = 32;
    DeviceBuffer g1(be, static_cast<size_t>(m) * kHead), g2(be, static_cast<size_t>(kHead) * n);
    be.fill_gaussian(1234, 1, 0, static_cast<size_t>(m * n), w);
    be.fill_gaussian(1234, 2, 0, g1.size(), g1.get());
    be.fill_gaussian(1234, 3, 0, g2.size(), g2.get());
    std::vector<float> d(kHead);
    for (int j = 0; j < kHead; ++j) d[j] = static_cast<float>(0.01 * std::exp(-j / 8.0));
    be.scale_columns(m, kHead, g1.get(), kHead, d.data());
    be.gemm(Trans::no, Trans::no, m, n, kHead, 1.0f, g1.get(), kHead, g2.get(), n, 0.02f, w, n);
    be.synchronize();
}

nlohmann::json run_shape(LinalgBackend& be, const Args& a, int64_t m, int64_t n, int iters, double gbs) {
    LoftqOptions opt;
    opt.quant.format = &select_format("nf", 4);
    opt.quant.blocksize = 64;
    opt.backbone = parse_backbone(a.backbone);
    opt.iters = iters;
    opt.svd_options.rank = a.rank;
    opt.svd = parse_svd_choice(a.svd);
    const std::string name = "bench." + std::to_string(m) + "x" + std::to_string(n);
    const size_t count = static_cast<size_t>(m * n);
    DeviceBuffer w(be, count);
    test_matrix(be, m, n, w.get());
    const ShardLayout layout = ShardLayout::single(m);
    auto once = [&](const float* src, bool in_backend) {
        ShardInput in{0, m, src};
        in.in_backend_memory = in_backend && be.kind() != BackendKind::cpu;
        be.synchronize();
        const auto t0 = Clock::now();
        LoftqResult r = run_loftq_sharded(be, nullptr, layout, name, {in}, m, n, opt);
        be.synchronize();
        return std::make_pair(ms_since(t0), std::move(r));
    };

    nlohmann::json j{{"shape", {m, n}}, {"iters", iters}, {"rank", a.rank}, {"svd_requested", a.svd}, {"format", "nf4"},
                     {"blocksize", 64}, {"backbone", a.backbone}, {"repeats", a.repeats}};
    std::vector<double> t;
    LoftqResult last;
    // W in backend memory works for every format and backbone (the backend stages through the
    // host what it cannot quantize in place).
    once(w.get(), true);  // warm-up
    for (int i = 0; i < a.repeats; ++i) {
        auto [ms, r] = once(w.get(), true);
        t.push_back(ms);
        last = std::move(r);
    }
    j["median_ms"] = median(t);
    if (be.kind() != BackendKind::cpu) {
        std::vector<float> host(count);
        be.download(host.data(), w.get(), count);
        std::vector<double> tu;
        once(host.data(), false);
        for (int i = 0; i < a.repeats; ++i) {
            tu.push_back(once(host.data(), false).first);
        }
        j["median_upload_ms"] = median(tu);
    }
    const double med = j["median_ms"].get<double>();
    const QuantFormat& f = *opt.quant.format;
    const double out_bytes = static_cast<double>(packed_bytes(f, static_cast<int64_t>(count))) +
                             4.0 * block_count(static_cast<int64_t>(count), 64) + 4.0 * a.rank * (m + n);
    const double bytes_min = 4.0 * count + out_bytes;
    j["bytes_min"] = bytes_min;
    j["bytes_min_bf16_input"] = 2.0 * count + out_bytes;
    j["achieved_gbs"] = bytes_min / (med * 1e6);
    j["floor_ms"] = bytes_min / (gbs * 1e6);
    j["floor_over_median"] = (bytes_min / (gbs * 1e6)) / med;
    j["svd"] = last.svd_method;
    j["qlora_error"] = last.qlora_error;
    j["iteration_error"] = last.iteration_error;
    j["chosen_iteration"] = last.chosen_iteration;
    j["loaded_error"] = last.loaded_error;
    j["last_run_phase_s"] = {{"quantize", last.times.quantize}, {"svd", last.times.svd}, {"comm", last.times.comm}};
    j["device_resident"] = true;  // every format runs from W in backend memory now
    return j;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args a = parse(argc, argv);
        auto be = make_backend(a.device, 0);
        const size_t copy_count = (be->kind() == BackendKind::cuda ? size_t{256} : size_t{16}) << 20;
        const double gbs = copy_gbs(*be, copy_count);
        std::fprintf(stderr, "backend %s: copy %.1f GB/s (read + write, %zu MiB buffers)\n", be->name().c_str(),
                     gbs, copy_count * sizeof(float) >> 20);
        nlohmann::json out{{"backend", be->name()}, {"copy_gbs", gbs}, {"scale", a.scale},
                           {"copy_buffer_mib", copy_count * sizeof(float) >> 20}, {"runs", nlohmann::json::array()}};
        for (const auto& spec : split(a.shapes, ',')) {
            const auto d = split(spec, 'x');
            if (d.size() != 2) LOFTQ_THROW(ConfigError, "--shapes: '", spec, "' is not MxN");
            const int64_t m = std::stoll(d[0]) / a.scale, n = std::stoll(d[1]) / a.scale;
            for (const auto& it : split(a.iters, ',')) {
                auto j = run_shape(*be, a, m, n, std::stoi(it), gbs);
                std::fprintf(stderr, "%6lld x %-6lld T=%s  median %9.2f ms  %8.3f GB/s  floor %8.4f ms  err %.6f (qlora %.6f)\n",
                             static_cast<long long>(m), static_cast<long long>(n), it.c_str(),
                             j["median_ms"].get<double>(), j["achieved_gbs"].get<double>(),
                             j["floor_ms"].get<double>(), j["loaded_error"].get<double>(),
                             j["qlora_error"].get<double>());
                out["runs"].push_back(std::move(j));
            }
        }
        if (a.out.empty()) {
            std::cout << out.dump(2) << "\n";
        } else {
            std::ofstream f(a.out + ".tmp");
            f << out.dump(2) << "\n";
            f.close();
            if (!f || std::rename((a.out + ".tmp").c_str(), a.out.c_str()) != 0)
                LOFTQ_THROW(Error, "cannot write ", a.out);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_loftq: %s\n", e.what());
        return 1;
    }
}
