// The registry of quantization formats: one entry per format, parsed from the CLI and looped
// over by the tests (STYLE.md 5). Tables and per-element rules live in format_tables.hpp.
//
// Formats: bnb "nf4" / "fp4" (bitsandbytes, blocks may be partial, high nibble first) and
// LoftQ "nf2" / "nf8" / "uniform2" / "uniform4" / "uniform8" (peft NFQuantizer: numel must be a
// multiple of the blocksize, low bits first). Blocksizes: powers of two, 32..4096.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loftq {

enum class FormatFamily {
    BnbNF4,        // y = x * (1/absmax), thresholds
    BnbFP4,        // y = x * (1/absmax), dQuantizeFP4 tree
    LoftqNormal,   // y = x / absmax, argmin |y - table|
    LoftqUniform,  // y = x / (mean + 2.5 * std), argmin |y - table|
};

enum class Packing {
    HighFirst,  // bitsandbytes: byte k = code(x[2k]) << 4 | code(x[2k+1])
    LowFirst,   // LoftQ: element j of a byte sits at bits [j*bits, (j+1)*bits)
};

struct QuantFormat;

// Reference kernels of a format (plain loops, quantize_ref.cpp). Codes are unpacked, one byte
// per element; `scales` has ceil(n / blocksize) entries (absmax, or the uniform scale).
using QuantizeRefFn = void (*)(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                               uint8_t* codes, float* scales);
using DequantizeFn = void (*)(const QuantFormat& f, int blocksize, const uint8_t* codes,
                              const float* scales, int64_t n, float* out);

struct QuantFormat {
    const char* name;       // "nf4", "fp4", "nf2", "nf8", "uniform2", "uniform4", "uniform8"
    int bits;               // 2, 4 or 8
    FormatFamily family;
    const float* table;     // value of each code, 1 << bits entries
    Packing packing;
    QuantizeRefFn quantize_ref;
    DequantizeFn dequantize;

    int table_size() const { return 1 << bits; }
    bool is_bnb() const { return family == FormatFamily::BnbNF4 || family == FormatFamily::BnbFP4; }
    // LoftQ's quantize_block rejects a numel that is not a multiple of the blocksize.
    bool needs_full_blocks() const { return !is_bnb(); }
};

// Every registered format, in a fixed order.
const std::vector<QuantFormat>& all_formats();
// By registry name; nullptr if unknown.
const QuantFormat* find_format(const std::string& name);
// CLI mapping: (--quant nf|fp4|uniform, --bits 2|4|8) -> format. nf+4 -> bnb nf4, fp4+4 -> fp4,
// nf+2/8 -> LoftQ nf2/nf8, uniform+2/4/8 -> LoftQ uniform. Throws ConfigError naming the option.
const QuantFormat& select_format(const std::string& quant, int bits);
// 32..4096, power of two; throws ConfigError naming --blocksize otherwise.
void check_blocksize(int blocksize);

inline int64_t block_count(int64_t n, int blocksize) { return (n + blocksize - 1) / blocksize; }
// Bytes of packed codes for n elements.
int64_t packed_bytes(const QuantFormat& f, int64_t n);

}  // namespace loftq
