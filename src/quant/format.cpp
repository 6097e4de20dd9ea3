// The format registry and the CLI mapping onto it.
#include "quant/format.hpp"

#include "core/error.hpp"
#include "quant/format_tables.hpp"
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
    } else {
        LOFTQ_THROW_SETTING("quant", "unknown quantizer '", quant, "' (expected nf, fp4 or uniform)");
    }
    const QuantFormat* f = find_format(name);
    LOFTQ_CHECK(f != nullptr, "registry lacks ", name);
    return *f;
}

void check_blocksize(int blocksize) {
    if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
        LOFTQ_THROW_SETTING("blocksize", "block size ", blocksize, " is not a power of two in 32..4096");
}

int64_t packed_bytes(const QuantFormat& f, int64_t n) {
    const int per_byte = 8 / f.bits;
    return (n + per_byte - 1) / per_byte;
}

}  // namespace loftq
