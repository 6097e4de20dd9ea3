// float32 <-> bfloat16 / IEEE float16 conversions, written once for the host (g++) and the device
// (nvcc), so that the CPU reference and the kernels round a backbone value the same way by
// construction, not by two copies kept in step (STYLE.md 5).
//
// Widening is exact. Narrowing rounds to nearest even, as PyTorch's `tensor.to(torch.bfloat16)`
// does; NaN stays NaN (a quiet NaN), fp16 overflow gives +-inf.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/host_device.hpp"

namespace loftq {

LOFTQ_HD uint32_t float_as_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
#endif
}

LOFTQ_HD float bits_as_float(uint32_t b) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(b);
#else
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
#endif
}

LOFTQ_HD float bf16_to_float(uint16_t h) { return bits_as_float(static_cast<uint32_t>(h) << 16); }

LOFTQ_HD uint16_t float_to_bf16(float f) {
    const uint32_t bits = float_as_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
    const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>((bits + rounding) >> 16);
}

LOFTQ_HD float f16_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return bits_as_float(sign);
        // Subnormal: man * 2^-24, exact in float32 (man < 2^10, the factor a power of two).
        return bits_as_float(float_as_bits(static_cast<float>(man) * 5.9604644775390625e-8f) | sign);
    }
    if (exp == 31) return bits_as_float(sign | 0x7f800000u | (man << 13));
    return bits_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}

LOFTQ_HD uint16_t float_to_f16(float f) {
    const uint32_t bits = float_as_bits(f);
    const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t absbits = bits & 0x7fffffffu;
    if (absbits > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
    if (absbits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
    if (absbits < 0x38800000u) {  // result is subnormal or zero: round |f| / 2^-24 to nearest even
        const float scaled = bits_as_float(absbits) * 16777216.0f;  // exact (power of two)
#ifdef __CUDA_ARCH__
        const float r = rintf(scaled);
#else
        const float r = std::nearbyint(scaled);  // the default rounding mode: nearest even
#endif
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
    }
    const uint32_t rounding = 0xfffu + ((absbits >> 13) & 1u);
    const uint32_t r = (absbits + rounding) >> 13;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r - (112u << 10)));
}

// The value a bf16 (resp. fp16) tensor stores for v.
LOFTQ_HD float round_to_bf16(float v) { return bf16_to_float(float_to_bf16(v)); }
LOFTQ_HD float round_to_f16(float v) { return f16_to_float(float_to_f16(v)); }

}  // namespace loftq
