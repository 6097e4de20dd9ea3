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
