#include "core/dtype.hpp"

#include <array>
#include <cmath>

#include "core/error.hpp"

namespace loftq {
namespace {
struct DTypeInfo {
    DType type;
    const char* name;
    size_t size;
};
constexpr std::array<DTypeInfo, 15> kTypes{{
    {DType::BOOL, "BOOL", 1},      {DType::U8, "U8", 1},    {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I16, "I16", 2},        {DType::U16, "U16", 2},  {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},      {DType::I32, "I32", 4},  {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},        {DType::F64, "F64", 8},  {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
}};
const DTypeInfo& info(DType t) {
    for (const auto& i : kTypes)
        if (i.type == t) return i;
    throw Error("unknown dtype enum value");
}
}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
const char* dtype_name(DType t) { return info(t).name; }

std::optional<DType> parse_dtype(const std::string& s) {
    for (const auto& i : kTypes)
        if (s == i.name) return i.type;
    return std::nullopt;
}

bool is_float_weight_dtype(DType t) { return t == DType::F16 || t == DType::BF16 || t == DType::F32; }

float f16_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: value = man * 2^-24, exact in float32
            const float v = std::ldexp(static_cast<float>(man), -24);
            std::memcpy(&bits, &v, sizeof bits);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t float_to_f16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
    const uint32_t absbits = bits & 0x7fffffffu;
    if (absbits > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
    if (absbits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
    if (absbits < 0x38800000u) {  // result is subnormal or zero: round |f| / 2^-24 to nearest even
        float a;
        std::memcpy(&a, &absbits, sizeof a);
        const float scaled = a * 16777216.0f;  // exact (power of two)
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
    }
    const uint32_t rounding = 0xfffu + ((absbits >> 13) & 1u);
    const uint32_t r = (absbits + rounding) >> 13;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r - (112u << 10)));
}

void widen_to_f32(DType t, const void* src, size_t n, float* dst) {
    const auto* p = static_cast<const unsigned char*>(src);
    switch (t) {
        case DType::F32:
            std::memcpy(dst, p, n * 4);
            return;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                dst[i] = bf16_to_float(h);
            }
            return;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                dst[i] = f16_to_float(h);
            }
            return;
        default:
            LOFTQ_THROW(InputError, "cannot widen dtype ", dtype_name(t), " to float32");
    }
}

void narrow_from_f32(DType t, const float* src, size_t n, void* dst) {
    auto* p = static_cast<unsigned char*>(dst);
    switch (t) {
        case DType::F32:
            std::memcpy(p, src, n * 4);
            return;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) {
                const uint16_t h = float_to_bf16(src[i]);
                std::memcpy(p + 2 * i, &h, 2);
            }
            return;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) {
                const uint16_t h = float_to_f16(src[i]);
                std::memcpy(p + 2 * i, &h, 2);
            }
            return;
        default:
            LOFTQ_THROW(Error, "cannot narrow float32 to dtype ", dtype_name(t));
    }
}

}  // namespace loftq
