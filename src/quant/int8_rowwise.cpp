// bitsandbytes LLM.int8 row-wise quantization (see int8_rowwise.hpp).
#include "quant/int8_rowwise.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/half_round.hpp"
#include "core/parallel.hpp"

namespace loftq {
namespace {

// torch: A.to(float16), then float32 arithmetic on it.
float as_fp16(float x) { return round_to_f16(x); }

// round(v) half to even, then .to(int8); NaN (a zero row's 0 * Inf) converts to 0.
uint8_t code_of(float v) {
    if (std::isnan(v)) return 0;
    const float r = std::nearbyint(v);  // default rounding mode: nearest, ties to even
    return static_cast<uint8_t>(static_cast<int8_t>(r));
}

float row_absmax(const float* x, int64_t len) {
    float m = 0.0f;
    for (int64_t i = 0; i < len; ++i) m = std::max(m, std::fabs(as_fp16(x[i])));
    return m;
}

void row_codes(const float* x, int64_t len, float scb, uint8_t* codes) {
    // torch evaluates `127.0 / row_stats` as row_stats.reciprocal() * 127: two float32 roundings,
    // not one division (a product near k + 0.5 rounds differently). Inf for a zero row.
    const float scale = (1.0f / scb) * 127.0f;
    for (int64_t i = 0; i < len; ++i) codes[i] = code_of(as_fp16(x[i]) * scale);
}

void row_dequant(const uint8_t* codes, int64_t len, float scb, float* out) {
    for (int64_t i = 0; i < len; ++i)
        out[i] = static_cast<float>(static_cast<int8_t>(codes[i])) * scb * kInt8DequantFactor;
}

int64_t rows_of(int64_t n, int row_length) { return (n + row_length - 1) / row_length; }

}  // namespace

void int8_quantize_ref(const QuantFormat&, int row_length, const float* x, int64_t n, uint8_t* codes,
                       float* scb) {
    for (int64_t r = 0; r * row_length < n; ++r) {
        const int64_t begin = r * row_length;
        const int64_t len = std::min<int64_t>(row_length, n - begin);
        scb[r] = row_absmax(x + begin, len);
        row_codes(x + begin, len, scb[r], codes + begin);
    }
}

void int8_dequantize_ref(const QuantFormat&, int row_length, const uint8_t* codes, const float* scb, int64_t n,
                         float* out) {
    for (int64_t i = 0; i < n; ++i)
        out[i] = static_cast<float>(static_cast<int8_t>(codes[i])) * scb[i / row_length] * kInt8DequantFactor;
}

void int8_quantize_fast(int row_length, const float* x, int64_t n, uint8_t* codes, float* scb, float* q) {
    const int64_t rows = rows_of(n, row_length);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t begin = r * row_length;
        const int64_t len = std::min<int64_t>(row_length, n - begin);
        scb[r] = row_absmax(x + begin, len);
        row_codes(x + begin, len, scb[r], codes + begin);
        if (q) row_dequant(codes + begin, len, scb[r], q + begin);
    }
}

void int8_dequantize_fast(int row_length, const uint8_t* codes, const float* scb, int64_t n, float* out) {
    const int64_t rows = rows_of(n, row_length);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t begin = r * row_length;
        row_dequant(codes + begin, std::min<int64_t>(row_length, n - begin), scb[r], out + begin);
    }
}

void int8_codes_with_scales(int row_length, const float* x, int64_t n, const float* scb, uint8_t* codes) {
    const int64_t rows = rows_of(n, row_length);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t begin = r * row_length;
        row_codes(x + begin, std::min<int64_t>(row_length, n - begin), scb[r], codes + begin);
    }
}

void int8_pin_row_maxima(int row_length, const float* x, int64_t n, uint8_t* codes) {
    const int64_t rows = rows_of(n, row_length);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t begin = r * row_length;
        const int64_t len = std::min<int64_t>(row_length, n - begin);
        const float m = row_absmax(x + begin, len);
        if (m == 0.0f) continue;
        for (int64_t i = begin; i < begin + len; ++i)
            if (std::fabs(as_fp16(x[i])) == m) codes[i] = static_cast<uint8_t>(static_cast<int8_t>(x[i] < 0 ? -127 : 127));
    }
}

void check_int8_input(const float* x, int64_t n, int row_length, const std::string& tensor_name) {
    int64_t bad = -1;  // OpenMP finds any; the serial rescan names the first
#pragma omp parallel for schedule(static) reduction(max : bad) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i)
        if (std::fabs(x[i]) >= kFp16Overflow) bad = std::max(bad, i);
    if (bad < 0) return;
    for (int64_t i = 0; i < n; ++i)
        if (std::fabs(x[i]) >= kFp16Overflow)
            LOFTQ_THROW(InputError, "tensor ", tensor_name, ": element (row ", i / row_length, ", column ",
                        i % row_length, ") is ", x[i], ", beyond the float16 range (65504) that int8 "
                        "quantization casts to (bitsandbytes would store NaN codes for its row)");
}

int64_t int8_settle_rows(int row_length, int64_t n, float (*store)(float), uint8_t* codes, float* scb,
                         const std::string& tensor_name) {
    const int64_t rows = rows_of(n, row_length);
    int64_t replaced = 0, unsettled = -1, overflow = -1;
#pragma omp parallel reduction(+ : replaced) reduction(max : unsettled, overflow) if (n >= kParallelMinElements)
    {
        std::vector<float> stored(row_length);
        std::vector<uint8_t> again(row_length);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t begin = r * row_length;
            const int64_t len = std::min<int64_t>(row_length, n - begin);
            for (int pass = 0; pass < 2; ++pass) {
                row_dequant(codes + begin, len, scb[r], stored.data());
                for (int64_t i = 0; i < len; ++i) stored[i] = store(stored[i]);
                const float again_scb = row_absmax(stored.data(), len);
                if (!std::isfinite(again_scb)) {
                    overflow = std::max(overflow, r);
                    break;
                }
                row_codes(stored.data(), len, again_scb, again.data());
                const bool same = again_scb == scb[r] && std::equal(again.begin(), again.begin() + len, codes + begin);
                if (same) break;
                if (pass == 1) {
                    unsettled = std::max(unsettled, r);
                    break;
                }
                std::copy(again.begin(), again.begin() + len, codes + begin);
                scb[r] = again_scb;
                ++replaced;
            }
        }
    }
    if (overflow >= 0)
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": row ", overflow, " stores a value beyond the float16 "
                    "range (65504) that load_in_8bit casts to; use --backbone fp16 or int8");
    if (unsettled >= 0)
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": row ", unsettled, " does not re-quantize to itself "
                    "under load_in_8bit; use --backbone int8");
    return replaced;
}

}  // namespace loftq
