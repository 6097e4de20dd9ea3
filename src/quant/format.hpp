// The registry of quantization formats: one entry per format, parsed from the CLI and looped
// over by the tests (STYLE.md 5). Tables and per-element rules live in format_tables.hpp.
//
// Formats: bnb "nf4" / "fp4" (bitsandbytes, blocks may be partial, high nibble first),
// LoftQ "nf2" / "nf8" / "uniform2" / "uniform4" / "uniform8" (peft NFQuantizer: numel must be a
// multiple of the blocksize, low bits first), and bnb "int8" (LLM.int8, int8_rowwise.hpp: one
// block per row, one int8 code per byte). Blocksizes: powers of two, 32..4096; int8's is the row
// length (the matrix's column count), 1..2^20.
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
    BnbInt8Row,    // LLM.int8: per row, round(fp16(x) * (127 / absmax)); no table
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
    const float* table;     // value of each code, 1 << bits entries (nullptr for int8)
    Packing packing;
    QuantizeRefFn quantize_ref;
    DequantizeFn dequantize;

    int table_size() const { return 1 << bits; }
    // bitsandbytes' 4-bit formats (load_in_4bit, the bnb4 backbone).
    bool is_bnb() const { return family == FormatFamily::BnbNF4 || family == FormatFamily::BnbFP4; }
    // LoftQ's NF2: its table is a subset of NF4's and its scale the absmax, so bitsandbytes'
    // load_in_4bit nf4 holds it exactly (format_tables.hpp kNF4CodeOfNF2): a float backbone is
    // re-quantized at load like nf4's, and a bnb4 backbone stores its codes as NF4 codes.
    bool loads_through_nf4() const { return family == FormatFamily::LoftqNormal && bits == 2; }
    // One block per row: the blocksize is the matrix's row length, not --blocksize.
    bool is_row_wise() const { return family == FormatFamily::BnbInt8Row; }
    // LoftQ's quantize_block rejects a numel that is not a multiple of the blocksize; int8's
    // blocks are whole rows.
    bool needs_full_blocks() const { return !is_bnb(); }
};

// Every registered format, in a fixed order.
const std::vector<QuantFormat>& all_formats();
// By registry name; nullptr if unknown.
const QuantFormat* find_format(const std::string& name);
// CLI mapping: (--quant nf|fp4|uniform|int8, --bits 2|4|8) -> format. nf+4 -> bnb nf4, fp4+4 ->
// fp4, nf+2/8 -> LoftQ nf2/nf8, uniform+2/4/8 -> LoftQ uniform, int8+8 -> bnb int8. Throws
// ConfigError naming the option.
const QuantFormat& select_format(const std::string& quant, int bits);
// 32..4096, power of two; throws ConfigError naming --blocksize otherwise.
void check_blocksize(int blocksize);
// check_blocksize, or for a row-wise format a row length in 1..2^20 (InputError naming it).
void check_format_blocksize(const QuantFormat& f, int blocksize);
// The blocksize of a matrix with `cols` columns in format f: cols for a row-wise format, else
// the run's --blocksize.
int matrix_blocksize(const QuantFormat& f, int blocksize, int64_t cols);

inline int64_t block_count(int64_t n, int blocksize) { return (n + blocksize - 1) / blocksize; }
// Bytes of packed codes for n elements.
int64_t packed_bytes(const QuantFormat& f, int64_t n);

}  // namespace loftq
