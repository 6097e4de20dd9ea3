// The fast CPU path: the reference's results bit for bit (tests/test_quant_fast.cpp compares),
// with vectorisable inner loops and OpenMP over blocks. One read of x produces the packed codes,
// the per-block scales and, optionally, the dequantized Q.
#pragma once

#include <cstdint>

#include "quant/format.hpp"

namespace loftq {

struct QuantKernels;  // quant/simd_kernels.hpp

// One nf4 / fp4 block (len <= blocksize, starting on a byte) with the SIMD kernels k: codes of
// x * (1.0f / scale) by the format's rule; and the codes packed two per byte, first in the high
// nibble, an odd last one beside the pad code bitsandbytes writes (bnb_pad_code).
void bnb_block_codes(const QuantKernels& k, const QuantFormat& f, const float* x, int64_t len, float scale,
                     uint8_t* codes);
void pack_bnb_block(const QuantKernels& k, const QuantFormat& f, const uint8_t* codes, int64_t len, float scale,
                    uint8_t* packed);

// packed: packed_bytes(f, n) bytes; scales: block_count(n, blocksize) floats; q: n floats or
// nullptr. Same contract and validation assumptions as quantize_ref + pack_codes.
void quantize_fast(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* packed,
                   float* scales, float* q);
// The same with the block scales given (bnb formats: codes use 1.0f / scales[b]; LoftQ's: x /
// scales[b]; not int8); used to
// quantize against an absmax that the backbone dtype can represent (quantize.hpp).
void quantize_fast_with_scales(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                               const float* scales, uint8_t* packed, float* q);
// absmax[b] = max |x| over block b (ceil(n / blocksize) entries).
void block_absmax_fast(int blocksize, const float* x, int64_t n, float* absmax);
// out[i] = table[code i] * scales[block of i] from packed codes.
void dequantize_fast(const QuantFormat& f, int blocksize, const uint8_t* packed, const float* scales,
                     int64_t n, float* out);

}  // namespace loftq
