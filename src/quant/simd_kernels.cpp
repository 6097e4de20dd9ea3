// Choosing the quantize kernels (simd_kernels.hpp).
#include "quant/simd_kernels.hpp"

#include <cstdint>
#include <cstdlib>

#include "core/error.hpp"

namespace loftq {

#define LOFTQ_DECLARE_LEVEL(ns)                                                                          \
    namespace ns {                                                                                       \
    struct Table {                                                                                       \
        const char* level;                                                                               \
        uint32_t (*diff_absmax_bits)(const float*, const float*, int64_t, float*);                       \
        void (*nf4_codes)(const float*, int64_t, float, uint8_t*);                                       \
        void (*fp4_codes)(const float*, int64_t, float, uint8_t*);                                       \
        void (*residual)(const float*, const uint8_t*, int64_t, const float*, float, float*);            \
        void (*pack_pairs)(const uint8_t*, int64_t, uint8_t*);                                           \
        void (*dequant_nibbles)(const uint8_t*, int64_t, const float*, float, float*);                   \
    };                                                                                                   \
    Table table();                                                                                       \
    }
LOFTQ_DECLARE_LEVEL(simd_scalar)
#if defined(__x86_64__)
LOFTQ_DECLARE_LEVEL(simd_avx2)
LOFTQ_DECLARE_LEVEL(simd_avx512)
#endif
#undef LOFTQ_DECLARE_LEVEL

namespace {

template <typename T>
QuantKernels from(const T& t) {
    return {t.level, t.diff_absmax_bits, t.nf4_codes, t.fp4_codes, t.residual, t.pack_pairs, t.dequant_nibbles};
}

bool cpu_has(const std::string& level) {
    if (level == "scalar") return true;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (level == "avx2") return __builtin_cpu_supports("avx2");
    if (level == "avx512") return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#endif
    return false;
}

}  // namespace

// A level's table is built only after the CPU check: its table() is itself compiled for that
// instruction set.
const QuantKernels* quant_kernels_for(const std::string& level) {
    if (!cpu_has(level)) return nullptr;
    if (level == "scalar") {
        static const QuantKernels k = from(simd_scalar::table());
        return &k;
    }
#if defined(__x86_64__)
    if (level == "avx2") {
        static const QuantKernels k = from(simd_avx2::table());
        return &k;
    }
    if (level == "avx512") {
        static const QuantKernels k = from(simd_avx512::table());
        return &k;
    }
#endif
    return nullptr;
}

std::vector<std::string> available_simd_levels() {
    std::vector<std::string> out;
    for (const char* l : {"scalar", "avx2", "avx512"})
        if (cpu_has(l)) out.push_back(l);
    return out;
}

const QuantKernels& quant_kernels() {
    static const QuantKernels* chosen = [] {
        const char* forced = std::getenv("LOFTQ_SIMD");
        if (forced && *forced) {
            const std::string level = forced;
            if (level != "scalar" && level != "avx2" && level != "avx512")
                LOFTQ_THROW(ConfigError, "LOFTQ_SIMD='", level, "' is not a level (expected scalar, avx2 or avx512)");
            const QuantKernels* k = quant_kernels_for(level);
            if (!k) LOFTQ_THROW(ConfigError, "LOFTQ_SIMD=", level, ": this CPU (or build) does not have ", level);
            return k;
        }
        return quant_kernels_for(available_simd_levels().back());
    }();
    return *chosen;
}

}  // namespace loftq
