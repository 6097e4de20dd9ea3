// The element loops of the fused quantize-residual pass (quantize.hpp
// quantize_residual_as_loaded), compiled three times from one source (simd_kernels.inc): for the
// baseline x86-64 ISA, for AVX2 and for AVX-512, and chosen once per process by what the CPU
// supports (LOFTQ_SIMD=scalar|avx2|avx512 forces one, for tests and benchmarks).
//
// Why every level gives the same bits: each loop is element-wise IEEE float32 arithmetic
// (subtract, multiply, compare) or an integer maximum, with no reassociation (no -ffast-math)
// and no contraction into FMA (-ffp-contract=off): the compiler only changes how many elements
// one instruction handles. tests/test_quant_simd.cpp checks every level this CPU has against the
// scalar reference (quant/quantize_ref.cpp) bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loftq {

struct QuantKernels {
    const char* level;  // "scalar" | "avx2" | "avx512"
    // x[i] = w[i] - low[i] (low == nullptr: w[i]) for i < len; returns max_i of the bit pattern
    // of |x[i]|: the absmax's bits when every x[i] is finite, >= 0x7f800000 when one is not.
    uint32_t (*diff_absmax_bits)(const float* w, const float* low, int64_t len, float* x);
    // codes[i] = bitsandbytes' nf4 / fp4 code of x[i] * recip (format_tables.hpp nf4_code, fp4_code).
    void (*nf4_codes)(const float* x, int64_t len, float recip, uint8_t* codes);
    void (*fp4_codes)(const float* x, int64_t len, float recip, uint8_t* codes);
    // res[i] = w[i] - table[codes[i]] * scale.
    void (*residual)(const float* w, const uint8_t* codes, int64_t len, const float* table, float scale,
                     float* res);
    // out[k] = codes[2k] << 4 | codes[2k + 1], k < len / 2 (bitsandbytes' order).
    void (*pack_pairs)(const uint8_t* codes, int64_t len, uint8_t* out);
    // out[i] = table[code i] * scale, the 4-bit codes packed high nibble first (len elements).
    void (*dequant_nibbles)(const uint8_t* packed, int64_t len, const float* table, float scale, float* out);
};

// The kernels of this process: the widest level the CPU supports, or LOFTQ_SIMD's (a ConfigError
// naming LOFTQ_SIMD for an unknown level or one this CPU lacks). Chosen on the first call.
const QuantKernels& quant_kernels();
// The kernels of one level, or nullptr when this CPU (or this build) lacks it.
const QuantKernels* quant_kernels_for(const std::string& level);
// Every level this CPU runs, narrowest first ("scalar" always).
std::vector<std::string> available_simd_levels();

}  // namespace loftq
