// Reference quantization: the rules of format_tables.hpp applied one element at a time.
#include "quant/quantize_ref.hpp"
#include "core/parallel.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "quant/format_tables.hpp"
#include "quant/int8_rowwise.hpp"

namespace loftq {
namespace {

}  // namespace

float block_scale_ref(const QuantFormat& f, const float* x, int64_t len) {
    if (f.family == FormatFamily::LoftqUniform) {
        double sum = 0;
        for (int64_t i = 0; i < len; ++i) sum += x[i];
        const double mean = sum / static_cast<double>(len);
        double sq = 0;
        for (int64_t i = 0; i < len; ++i) sq += (x[i] - mean) * (x[i] - mean);
        const float std_unbiased = static_cast<float>(std::sqrt(sq / static_cast<double>(len - 1)));
        return static_cast<float>(mean) + 2.5f * std_unbiased;
    }
    float absmax = 0.0f;
    for (int64_t i = 0; i < len; ++i) absmax = std::max(absmax, std::fabs(x[i]));
    return absmax;
}

namespace {

uint8_t element_code(const QuantFormat& f, float x, float scale, float recip) {
    switch (f.family) {
        case FormatFamily::BnbNF4: return nf4_code(x * recip);
        case FormatFamily::BnbFP4: return fp4_code(x * recip);
        default: return nearest_code(f.table, f.table_size(), x / scale);
    }
}

}  // namespace

void quantize_ref(const QuantFormat& f, int blocksize, const float* x, int64_t n, uint8_t* codes,
                  float* scales) {
    if (f.is_row_wise()) return int8_quantize_ref(f, blocksize, x, n, codes, scales);
    for (int64_t b = 0; b * blocksize < n; ++b) {
        const int64_t begin = b * blocksize;
        const int64_t len = std::min<int64_t>(blocksize, n - begin);
        const float scale = block_scale_ref(f, x + begin, len);
        const float recip = 1.0f / scale;  // bnb multiplies by the float32 reciprocal
        scales[b] = scale;
        for (int64_t i = begin; i < begin + len; ++i) codes[i] = element_code(f, x[i], scale, recip);
    }
}

void dequantize_ref(const QuantFormat& f, int blocksize, const uint8_t* codes, const float* scales,
                    int64_t n, float* out) {
    if (f.is_row_wise()) return int8_dequantize_ref(f, blocksize, codes, scales, n, out);
    for (int64_t i = 0; i < n; ++i) out[i] = f.table[codes[i]] * scales[i / blocksize];
}

uint8_t bnb_pad_code(const QuantFormat& f, float last_absmax) {
    return element_code(f, 0.0f, last_absmax, 1.0f / last_absmax);
}

void pack_codes(const QuantFormat& f, const uint8_t* codes, int64_t n, uint8_t pad_code,
                uint8_t* packed) {
    if (f.packing == Packing::HighFirst) {
        for (int64_t k = 0; 2 * k < n; ++k) {
            const uint8_t second = 2 * k + 1 < n ? codes[2 * k + 1] : pad_code;
            packed[k] = static_cast<uint8_t>(codes[2 * k] << 4 | second);
        }
        return;
    }
    const int per_byte = 8 / f.bits;
    for (int64_t k = 0; k * per_byte < n; ++k) {
        unsigned byte = 0;
        for (int j = 0; j < per_byte && k * per_byte + j < n; ++j)
            byte |= static_cast<unsigned>(codes[k * per_byte + j]) << (j * f.bits);
        packed[k] = static_cast<uint8_t>(byte);
    }
}

void unpack_codes(const QuantFormat& f, const uint8_t* packed, int64_t n, uint8_t* codes) {
    if (f.packing == Packing::HighFirst) {
        for (int64_t i = 0; i < n; ++i)
            codes[i] = (i % 2 == 0) ? packed[i / 2] >> 4 : packed[i / 2] & 0xF;
        return;
    }
    const int per_byte = 8 / f.bits;
    const unsigned mask = (1u << f.bits) - 1;
    for (int64_t i = 0; i < n; ++i)
        codes[i] = static_cast<uint8_t>((packed[i / per_byte] >> ((i % per_byte) * f.bits)) & mask);
}

DoubleQuant double_quantize_ref(const float* absmax, int64_t count) {
    DoubleQuant dq;
    double sum = 0;
    for (int64_t i = 0; i < count; ++i) sum += absmax[i];
    dq.offset = static_cast<float>(sum / static_cast<double>(count));
    dq.codes.resize(count);
    dq.nested_absmax.resize(block_count(count, DoubleQuant::kBlocksize));
    std::vector<float> centered(count);
    for (int64_t i = 0; i < count; ++i) centered[i] = absmax[i] - dq.offset;
    for (size_t b = 0; b < dq.nested_absmax.size(); ++b) {
        const int64_t begin = static_cast<int64_t>(b) * DoubleQuant::kBlocksize;
        const int64_t end = std::min<int64_t>(count, begin + DoubleQuant::kBlocksize);
        float m = 0.0f;
        for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(centered[i]));
        dq.nested_absmax[b] = m;
        const float recip = 1.0f / m;
        for (int64_t i = begin; i < end; ++i)
            dq.codes[i] = dynamic_map_code(tables::kDynamicSigned8, centered[i] * recip);
    }
    return dq;
}

void double_dequantize_ref(const DoubleQuant& dq, int64_t count, float* absmax) {
    for (int64_t i = 0; i < count; ++i)
        absmax[i] = tables::kDynamicSigned8[dq.codes[i]] * dq.nested_absmax[i / DoubleQuant::kBlocksize] +
                    dq.offset;
}

void check_quant_input(const QuantFormat& f, int blocksize, const float* x, int64_t n,
                       const std::string& tensor_name) {
    check_format_blocksize(f, blocksize);
    if (n <= 0) LOFTQ_THROW(InputError, "tensor ", tensor_name, ": nothing to quantize (", n, " elements)");
    if (f.needs_full_blocks() && n % blocksize != 0)
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": ", n, " elements is not a multiple of blocksize ",
                    blocksize, " required by format ", f.name);
    int64_t bad = -1;  // first non-finite element; OpenMP finds any, the serial rescan the first
#pragma omp parallel for schedule(static) reduction(max : bad) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) bad = std::max(bad, i);
    if (bad >= 0)
        for (int64_t i = 0; i < n; ++i)
            if (!std::isfinite(x[i]))
                LOFTQ_THROW(InputError, "tensor ", tensor_name, ": element ", i, " is ", x[i],
                        "; weights must be finite to quantize");
    if (f.is_row_wise()) check_int8_input(x, n, blocksize, tensor_name);
}

}  // namespace loftq
