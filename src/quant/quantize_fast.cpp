// Fast CPU quantization. Why it is bit-identical to the reference:
// - absmax is a max of |x| taken on the bit patterns (for finite floats with the sign bit
//   cleared, integer order is float order), which vectorises without -ffast-math;
// - the per-element rules are the same format_tables.hpp functions, in branch-free form;
// - for the 256-entry LoftQ tables the argmin is searched in a window of 5 entries around the
//   binary-search position: the table is sorted and distinct and float rounding is monotone,
//   so no entry outside the window can reach the window's minimum rounded distance.
#include "quant/quantize_fast.hpp"

#include <algorithm>
#include <cstring>

#include "quant/format_tables.hpp"
#include "quant/quantize_ref.hpp"

namespace loftq {
namespace {

float absmax_bits(const float* x, int64_t len) {
    uint32_t m = 0;
    for (int64_t i = 0; i < len; ++i) {
        uint32_t b;
        std::memcpy(&b, &x[i], sizeof b);
        b &= 0x7fffffffu;
        m = b > m ? b : m;
    }
    float r;
    std::memcpy(&r, &m, sizeof r);
    return r;
}

uint8_t nearest_code_sorted(const float* table, int size, float y) {
    const int pos = static_cast<int>(std::upper_bound(table, table + size, y) - table);
    const int lo = std::max(0, pos - 2);
    const int hi = std::min(size, pos + 3);
    return static_cast<uint8_t>(lo + nearest_code(table + lo, hi - lo, y));
}

void block_codes(const QuantFormat& f, const float* x, int64_t len, float scale, uint8_t* codes) {
    const float recip = 1.0f / scale;
    switch (f.family) {
        case FormatFamily::BnbNF4:
            for (int64_t i = 0; i < len; ++i) codes[i] = nf4_code(x[i] * recip);
            return;
        case FormatFamily::BnbFP4:
            for (int64_t i = 0; i < len; ++i) codes[i] = fp4_code(x[i] * recip);
            return;
        default:
            break;
    }
    if (f.bits == 8 && !(scale != scale) && scale != 0.0f) {
        for (int64_t i = 0; i < len; ++i) codes[i] = nearest_code_sorted(f.table, 256, x[i] / scale);
    } else {
        for (int64_t i = 0; i < len; ++i) codes[i] = nearest_code(f.table, f.table_size(), x[i] / scale);
    }
}

// given_scales == nullptr: compute each block's scale into scales; else use given_scales.
void quantize_blocks(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                     const float* given_scales, uint8_t* packed, float* scales, float* q) {
    const int64_t blocks = block_count(n, blocksize);
    const int per_byte = 8 / f.bits;
#pragma omp parallel
    {
        uint8_t codes[4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * blocksize;
            const int64_t len = std::min<int64_t>(blocksize, n - begin);
            const float* xb = x + begin;
            float scale;
            if (given_scales)
                scale = given_scales[b];
            else
                scales[b] = scale = f.family == FormatFamily::LoftqUniform ? block_scale_ref(f, xb, len)
                                                                           : absmax_bits(xb, len);
            block_codes(f, xb, len, scale, codes);
            // Blocks start at multiples of blocksize >= 32, so they start on a byte boundary.
            const uint8_t pad = f.is_bnb() && len % 2 ? bnb_pad_code(f, scale) : 0;
            pack_codes(f, codes, len, pad, packed + begin / per_byte);
            if (q) {
                float* qb = q + begin;
                for (int64_t i = 0; i < len; ++i) qb[i] = f.table[codes[i]] * scale;
            }
        }
    }
}

}  // namespace

void quantize_fast(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
                   float* scales, float* q) {
    quantize_blocks(f, blocksize, x, n, nullptr, packed, scales, q);
}

void quantize_fast_with_scales(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                               const float* scales, uint8_t* packed, float* q) {
    quantize_blocks(f, blocksize, x, n, scales, packed, nullptr, q);
}

void dequantize_fast(const QuantFormat& f, int blocksize, const uint8_t* packed, const float* scales,
                     int64_t n, float* out) {
    const int64_t blocks = block_count(n, blocksize);
    const int per_byte = 8 / f.bits;
#pragma omp parallel
    {
        uint8_t codes[4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * blocksize;
            const int64_t len = std::min<int64_t>(blocksize, n - begin);
            unpack_codes(f, packed + begin / per_byte, len, codes);
            const float scale = scales[b];
            float* ob = out + begin;
            for (int64_t i = 0; i < len; ++i) ob[i] = f.table[codes[i]] * scale;
        }
    }
}

}  // namespace loftq
