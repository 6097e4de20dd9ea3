// Fast CPU quantization. Why it is bit-identical to the reference:
// - absmax is a max of |x| taken on the bit patterns (for finite floats with the sign bit
//   cleared, integer order is float order), which vectorises without -ffast-math;
// - the per-element rules are the same format_tables.hpp functions, in branch-free form;
// - for the 256-entry LoftQ tables the argmin is searched in a window of 5 entries around the
//   upper_bound position: the table is sorted and distinct and float rounding is monotone,
//   so no entry outside the window can reach the window's minimum rounded distance (for
//   |y| <= 1024, where a float ulp of the distance is far below the smallest table gap).
#include "quant/quantize_fast.hpp"
#include "core/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/format_tables.hpp"
#include "quant/int8_rowwise.hpp"
#include "quant/quantize_ref.hpp"
#include "quant/simd_kernels.hpp"

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

// upper_bound(table, y) for a sorted 256-entry table, started from a guess per bucket of
// [-1, 1] and corrected by walking, so the result is exact for any y; the guess only saves time.
class SortedTableIndex {
public:
    static constexpr int kBuckets = 2048;
    explicit SortedTableIndex(const float* table) : table_(table) {
        for (int b = 0; b < kBuckets; ++b)
            guess_[b] = static_cast<int>(std::upper_bound(table, table + 256, -1.0f + 2.0f * b / kBuckets) - table);
    }
    int upper_bound(float y) const {
        int b = 0;
        if (y >= 1.0f)
            b = kBuckets - 1;
        else if (y > -1.0f)
            b = std::min(kBuckets - 1, static_cast<int>((y + 1.0f) * (kBuckets / 2)));
        int g = guess_[b];
        while (g < 256 && table_[g] <= y) ++g;
        while (g > 0 && table_[g - 1] > y) --g;
        return g;
    }
    const float* table() const { return table_; }

private:
    const float* table_;
    int guess_[kBuckets];
};

const SortedTableIndex& table_index(const float* table) {
    static const SortedTableIndex nf8(tables::kNF8), uniform8(tables::kUniform8);
    return table == tables::kNF8 ? nf8 : uniform8;
}

uint8_t nearest_code_sorted(const SortedTableIndex& index, float y) {
    // Far outside [-1, 1] the rounded distances to different entries can tie (y = 1e8: all of
    // them), and the first entry wins: only the full scan gets that right.
    if (!(std::fabs(y) <= 1024.0f)) return nearest_code(index.table(), 256, y);
    const int pos = index.upper_bound(y);
    const int lo = std::max(0, pos - 2);
    const int hi = std::min(256, pos + 3);
    return static_cast<uint8_t>(lo + nearest_code(index.table() + lo, hi - lo, y));
}

// LoftQ's formats (nf2, nf8, uniform): nf4 / fp4 take the SIMD kernels (quantize_bnb_blocks).
void block_codes(const QuantFormat& f, const float* x, int64_t len, float scale, uint8_t* codes) {
    if (f.bits == 8 && scale != 0.0f) {  // scale 0: y is NaN or inf, handled by the plain scan
        const SortedTableIndex& index = table_index(f.table);
        for (int64_t i = 0; i < len; ++i) codes[i] = nearest_code_sorted(index, x[i] / scale);
    } else {
        for (int64_t i = 0; i < len; ++i) codes[i] = nearest_code(f.table, f.table_size(), x[i] / scale);
    }
}

// Runs fn(b, begin, len, codes) for every block, OpenMP over blocks; codes is a per-thread
// scratch of blocksize bytes.
template <typename Fn>
void for_each_block(int64_t n, int blocksize, Fn&& fn) {
    const int64_t blocks = block_count(n, blocksize);
#pragma omp parallel if (n >= kParallelMinElements)
    {
        uint8_t codes[4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * blocksize;
            fn(b, begin, std::min<int64_t>(blocksize, n - begin), codes);
        }
    }
}

void write_values(const QuantFormat& f, const uint8_t* codes, int64_t len, float scale, float* out) {
    for (int64_t i = 0; i < len; ++i) out[i] = f.table[codes[i]] * scale;
}

// nf4 / fp4 through the SIMD kernels (quant/simd_kernels.hpp): the same rules, the same bits.
void quantize_bnb_blocks(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                         const float* given_scales, uint8_t* packed, float* scales, float* q) {
    const QuantKernels& k = quant_kernels();
    const int64_t blocks = block_count(n, blocksize);
#pragma omp parallel if (n >= kParallelMinElements)
    {
        alignas(64) float copy[4096];
        alignas(64) uint8_t codes[4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * blocksize, len = std::min<int64_t>(blocksize, n - begin);
            float scale;
            if (given_scales) {
                scale = given_scales[b];
            } else {
                const uint32_t bits = k.diff_absmax_bits(x + begin, nullptr, len, copy);
                std::memcpy(&scale, &bits, sizeof scale);  // non-finite inputs were refused before
                scales[b] = scale;
            }
            bnb_block_codes(k, f, x + begin, len, scale, codes);
            uint8_t* pb = packed + begin / 2;  // blocks start on a byte
            pack_bnb_block(k, f, codes, len, scale, pb);
            if (q) k.dequant_nibbles(pb, len, f.table, scale, q + begin);
        }
    }
}

// given_scales == nullptr: compute each block's scale into scales; else use given_scales.
void quantize_blocks(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                     const float* given_scales, uint8_t* packed, float* scales, float* q) {
    if (f.is_bnb()) return quantize_bnb_blocks(f, blocksize, x, n, given_scales, packed, scales, q);
    const int per_byte = 8 / f.bits;
    for_each_block(n, blocksize, [&](int64_t b, int64_t begin, int64_t len, uint8_t* codes) {
        const float* xb = x + begin;
        float scale;
        if (given_scales)
            scale = given_scales[b];
        else
            scales[b] = scale = f.family == FormatFamily::LoftqUniform ? block_scale_ref(f, xb, len)
                                                                       : absmax_bits(xb, len);
        block_codes(f, xb, len, scale, codes);
        // Blocks start at multiples of blocksize >= 32, so they start on a byte boundary.
        pack_codes(f, codes, len, 0, packed + begin / per_byte);
        if (q) write_values(f, codes, len, scale, q + begin);
    });
}

}  // namespace

void bnb_block_codes(const QuantKernels& k, const QuantFormat& f, const float* x, int64_t len, float scale,
                     uint8_t* codes) {
    (f.family == FormatFamily::BnbNF4 ? k.nf4_codes : k.fp4_codes)(x, len, 1.0f / scale, codes);
}

void pack_bnb_block(const QuantKernels& k, const QuantFormat& f, const uint8_t* codes, int64_t len, float scale,
                    uint8_t* packed) {
    k.pack_pairs(codes, len, packed);
    if (len % 2) packed[len / 2] = static_cast<uint8_t>(codes[len - 1] << 4 | bnb_pad_code(f, scale));
}

void quantize_fast(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
                   float* scales, float* q) {
    if (f.is_row_wise()) return int8_quantize_fast(blocksize, x, n, packed, scales, q);  // one code per byte
    quantize_blocks(f, blocksize, x, n, nullptr, packed, scales, q);
}

void quantize_fast_with_scales(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                               const float* scales, uint8_t* packed, float* q) {
    quantize_blocks(f, blocksize, x, n, scales, packed, nullptr, q);
}

void block_absmax_fast(int blocksize, const float* x, int64_t n, float* absmax) {
    const int64_t blocks = block_count(n, blocksize);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t b = 0; b < blocks; ++b)
        absmax[b] = absmax_bits(x + b * blocksize, std::min<int64_t>(blocksize, n - b * blocksize));
}

void dequantize_fast(const QuantFormat& f, int blocksize, const uint8_t* packed, const float* scales,
                     int64_t n, float* out) {
    if (f.is_row_wise()) return int8_dequantize_fast(blocksize, packed, scales, n, out);
    if (f.is_bnb()) {  // nf4 / fp4: the SIMD kernel, one block at a time
        const QuantKernels& k = quant_kernels();
        const int64_t blocks = block_count(n, blocksize);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * blocksize;
            k.dequant_nibbles(packed + begin / 2, std::min<int64_t>(blocksize, n - begin), f.table, scales[b], out + begin);
        }
        return;
    }
    const int per_byte = 8 / f.bits;
    for_each_block(n, blocksize, [&](int64_t b, int64_t begin, int64_t len, uint8_t* codes) {
        unpack_codes(f, packed + begin / per_byte, len, codes);
        write_values(f, codes, len, scales[b], out + begin);
    });
}

}  // namespace loftq
