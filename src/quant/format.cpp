// The format registry and the CLI mapping onto it.
#include "quant/format.hpp"

#include "core/error.hpp"
#include "quant/format_tables.hpp"
#include "quant/int8_rowwise.hpp"
#include "quant/quantize_ref.hpp"

namespace loftq {

const std::vector<QuantFormat>& all_formats() {
    using namespace tables;
    static const std::vector<QuantFormat> formats = {
        {"nf4", 4, FormatFamily::BnbNF4, kNF4, Packing::HighFirst, quantize_ref, dequantize_ref},
        {"fp4", 4, FormatFamily::BnbFP4, kFP4, Packing::HighFirst, quantize_ref, dequantize_ref},
        {"nf2", 2, FormatFamily::LoftqNormal, kNF2, Packing::LowFirst, quantize_ref, dequantize_ref},
        {"nf8", 8, FormatFamily::LoftqNormal, kNF8, Packing::LowFirst, quantize_ref, dequantize_ref},
        {"uniform2", 2, FormatFamily::LoftqUniform, kUniform2, Packing::LowFirst, quantize_ref,
         dequantize_ref},
        {"uniform4", 4, FormatFamily::LoftqUniform, kUniform4, Packing::LowFirst, quantize_ref,
         dequantize_ref},
        {"uniform8", 8, FormatFamily::LoftqUniform, kUniform8, Packing::LowFirst, quantize_ref,
         dequantize_ref},
        {"int8", 8, FormatFamily::BnbInt8Row, nullptr, Packing::LowFirst, int8_quantize_ref,
         int8_dequantize_ref},
    };
    return formats;
}

const QuantFormat* find_format(const std::string& name) {
    for (const auto& f : all_formats())
        if (name == f.name) return &f;
    return nullptr;
}

const QuantFormat& select_format(const std::string& quant, int bits) {
    if (bits != 2 && bits != 4 && bits != 8)
        LOFTQ_THROW_SETTING("bits", bits, " bits: a format needs 2, 4 or 8 bits");
    std::string name;
    if (quant == "nf")
        name = "nf" + std::to_string(bits);
    else if (quant == "uniform")
        name = "uniform" + std::to_string(bits);
    else if (quant == "fp4") {
        if (bits != 4) LOFTQ_THROW_SETTING("bits", "the fp4 quantizer needs 4 bits, got ", bits);
        name = "fp4";
    } else if (quant == "int8") {
        if (bits != 8) LOFTQ_THROW_SETTING("bits", "the int8 quantizer needs 8 bits, got ", bits);
        name = "int8";
    } else {
        LOFTQ_THROW_SETTING("quant", "unknown quantizer '", quant, "' (expected nf, fp4, uniform or int8)");
    }
    const QuantFormat* f = find_format(name);
    LOFTQ_CHECK(f != nullptr, "registry lacks ", name);
    return *f;
}

void check_blocksize(int blocksize) {
    if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
        LOFTQ_THROW_SETTING("blocksize", "block size ", blocksize, " is not a power of two in 32..4096");
}

void check_format_blocksize(const QuantFormat& f, int blocksize) {
    if (!f.is_row_wise()) return check_blocksize(blocksize);
    if (blocksize < 1 || blocksize > kMaxInt8RowLength)
        LOFTQ_THROW(InputError, "format ", f.name, ": row length ", blocksize, " is not in 1..", kMaxInt8RowLength);
}

int matrix_blocksize(const QuantFormat& f, int blocksize, int64_t cols) {
    return f.is_row_wise() ? static_cast<int>(cols) : blocksize;
}

int64_t packed_bytes(const QuantFormat& f, int64_t n) {
    const int per_byte = 8 / f.bits;
    return (n + per_byte - 1) / per_byte;
}

}  // namespace loftq
