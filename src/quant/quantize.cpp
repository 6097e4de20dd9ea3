// Quantize / dequantize / quantize-as-loaded (see quantize.hpp).
//
// Why storing table[c] * A' in the backbone dtype D and letting bitsandbytes re-quantize it at
// load gives back the same codes and the same absmax (nf4 / fp4, D = bf16, fp16 normal range,
// fp32), where A = max|x| of a block and A' = the smallest D value >= A:
//  1. The block maximum gets |table| = 1. A' <= A (1 + 2^-7) (bf16 keeps 8 significant bits),
//     so its y = A * (1/A') >= 0.992 > 0.8615 (nf4's top threshold; fp4's is 0.8333): code 0 or
//     15 for nf4, 3 or 11 for fp4. Its stored value is +-A' exactly (A' is a D value).
//  2. Every other stored value has |table[c] * A'| <= A', and rounding to D is monotone with A'
//     representable, so the re-quantized absmax is exactly A', and so is its reciprocal.
//  3. A stored value is table[c] * A' (1 + e), |e| <= 2^-9 (bf16; fp16 2^-11, fp32 2^-24), and
//     y' = stored * (1/A') = table[c] (1 + e') with |e'| < 2^-9 + 2^-22: at most 0.002 from the
//     code point, while every code point is at least 0.0026 (fp4's 0.0052 vs its pivot 0.0026,
//     relative margin 1/2) and otherwise >= 0.0398 from its decision thresholds. Zero stays
//     zero. So y' falls in the same code's interval, also under bitsandbytes' approximate GPU
//     reciprocal. fp4's negative zero (code 8) is stored as -0.0, which re-quantizes to code 0:
//     we emit code 0 for it (same value, +0.0) so the codes agree too.
//  4. With double quantization bitsandbytes quantizes the codes with A' first and then
//     double-quantizes the absmax vector A' with the same rule as ours, so the loaded scale is
//     our decoded A'.
// Where the argument fails (fp16 subnormal range: e is absolute, not relative) the block is
// re-quantized from its stored values exactly as bitsandbytes will, and those codes and that
// absmax are returned (counted in requantized_blocks): q_loaded is then still what loads.
// An absmax above the fp16 range cannot be stored at all: InputError.
#include "quant/quantize.hpp"
#include "core/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "quant/format_tables.hpp"
#include "quant/int8_rowwise.hpp"
#include "quant/quantize_fast.hpp"
#include "quant/simd_kernels.hpp"

namespace loftq {

Backbone parse_backbone(const std::string& s) {
    if (s == "bf16") return Backbone::BF16;
    if (s == "fp16") return Backbone::FP16;
    if (s == "fp32") return Backbone::FP32;
    if (s == "bnb4") return Backbone::BNB4;
    if (s == "int8") return Backbone::INT8;
    LOFTQ_THROW_SETTING("backbone", "unknown backbone '", s, "' (expected bf16, fp16, fp32, bnb4 or int8)");
}

const char* backbone_name(Backbone b) {
    switch (b) {
        case Backbone::BF16: return "bf16";
        case Backbone::FP16: return "fp16";
        case Backbone::FP32: return "fp32";
        case Backbone::BNB4: return "bnb4";
        case Backbone::INT8: return "int8";
    }
    return "?";
}

float round_to_backbone(Backbone b, float v) {
    if (b == Backbone::BF16) return round_to_bf16(v);  // core/half_round.hpp, as the kernels
    if (b == Backbone::FP16) return round_to_f16(v);
    return v;
}

namespace {

constexpr float kFp16Max = 65504.0f;
constexpr float kBf16BelowFp16Max = 65280.0f;

// The smallest value of the backbone dtype that is >= a (a >= 0, finite).
// round_up_to_backbone without the checks: +inf where the dtype cannot hold a.
float rounded_up(Backbone b, float a) {
    if (b == Backbone::FP16 && a > kFp16Max) return INFINITY;
    float r = a;
    if (b == Backbone::BF16) {
        const uint16_t h = float_to_bf16(a);
        r = bf16_to_float(h);
        if (r < a) r = bf16_to_float(static_cast<uint16_t>(h + 1));
    } else if (b == Backbone::FP16) {
        const uint16_t h = float_to_f16(a);
        r = f16_to_float(h);
        if (r < a) r = f16_to_float(static_cast<uint16_t>(h + 1));
    }
    return r;
}

float round_up_to_backbone(Backbone b, float a, const std::string& tensor_name, int64_t block) {
    if (b == Backbone::FP16 && a > kFp16Max)
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": block ", block, " has absmax ", a,
                    ", above the float16 range (65504); use --backbone bf16 or bnb4");
    const float r = rounded_up(b, a);
    if (!std::isfinite(r))
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": block ", block, " has absmax ", a,
                    ", beyond the range of ", backbone_name(b));
    return r;
}

void check_params(const QuantParams& p, const std::string& tensor_name) {
    if (p.format == nullptr) LOFTQ_THROW(ConfigError, "tensor ", tensor_name, ": no quantization format");
    check_format_blocksize(*p.format, p.blocksize);
    if (p.double_quant && !p.format->is_bnb())
        LOFTQ_THROW_SETTING("double-quant", "double quantization needs a bitsandbytes format (nf4/fp4), not ",
                            p.format->name);
}

void start(const QuantParams& p, int64_t n, QuantizedTensor& q) {
    q.format = p.format;
    q.blocksize = p.blocksize;
    q.numel = n;
    q.packed.assign(packed_bytes(*p.format, n), 0);
    q.absmax.assign(block_count(n, p.blocksize), 0.0f);
    q.double_quant = p.double_quant;
    q.nested = DoubleQuant{};
    q.absmax_exact.clear();
    q.requantized_blocks = 0;
}

void apply_double_quant(QuantizedTensor& q) {
    if (!q.double_quant) return;
    const int64_t blocks = static_cast<int64_t>(q.absmax.size());
    q.absmax_exact = q.absmax;
    q.nested = double_quantize_ref(q.absmax.data(), blocks);
    double_dequantize_ref(q.nested, blocks, q.absmax.data());
}

// True when the proof at the top of this file covers a block of (rounded-up) absmax a: every
// nonzero stored value table[c] * a is a normal number of the backbone dtype, so its rounding is
// relative (points 1 to 3) and bitsandbytes' re-quantization gives back the same codes and
// absmax; settle_block would find nothing to replace. The smallest nonzero |table| entries are
// nf4's 0.0796 and fp4's 0.0052; the factor 2 is margin. (fp32 and bf16 share float32's
// exponent range.) tests/test_quant_simd.cpp runs settle_block on blocks on both sides of it.
bool settle_proven(const QuantFormat& f, Backbone bb, float a) {
    const float smallest_entry = f.family == FormatFamily::BnbFP4 ? 0.005f : 0.079f;
    const float smallest_normal = bb == Backbone::FP16 ? 0x1p-14f : 0x1p-126f;
    return a >= 2.0f * smallest_normal / smallest_entry;
}

// Store a block in the backbone dtype, re-quantize it as bitsandbytes does at load, and keep
// that result if it differs from ours. stored / again: scratch of len entries. Returns true if
// the block was replaced.
bool settle_block(const QuantFormat& f, Backbone bb, int64_t begin, int64_t len, uint8_t* codes,
                  float& absmax, float* stored, uint8_t* again) {
    for (int64_t i = 0; i < len; ++i)
        stored[i] = round_to_backbone(bb, f.table[codes[begin + i]] * absmax);
    float again_absmax = 0.0f;
    quantize_ref(f, static_cast<int>(len), stored, len, again, &again_absmax);
    bool same = again_absmax == absmax;
    for (int64_t i = 0; same && i < len; ++i) same = again[i] == codes[begin + i];
    if (same) return false;
    std::copy(again, again + len, codes + begin);
    absmax = again_absmax;
    return true;
}

void quantize_bnb_as_loaded(const QuantParams& p, Backbone bb, const float* x, int64_t n,
                            QuantizedTensor& q, const std::string& tensor_name) {
    const QuantFormat& f = *p.format;
    const int64_t blocks = block_count(n, p.blocksize);
    block_absmax_fast(p.blocksize, x, n, q.absmax.data());
    if (bb != Backbone::BNB4)
        for (int64_t b = 0; b < blocks; ++b) q.absmax[b] = round_up_to_backbone(bb, q.absmax[b], tensor_name, b);
    quantize_fast_with_scales(f, p.blocksize, x, n, q.absmax.data(), q.packed.data(), nullptr);
    if (bb == Backbone::BNB4) return;

    std::vector<uint8_t> codes(n);
    unpack_codes(f, q.packed.data(), n, codes.data());
    if (f.family == FormatFamily::BnbFP4)
        for (auto& c : codes)
            if (c == 8) c = 0;  // -0 is stored as -0.0 and re-quantizes to +0 (code 0)
    int64_t replaced = 0;
#pragma omp parallel reduction(+ : replaced) if (n >= kParallelMinElements)
    {
        std::vector<float> stored(p.blocksize);
        std::vector<uint8_t> again(p.blocksize);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * p.blocksize;
            const int64_t len = std::min<int64_t>(p.blocksize, n - begin);
            if (!settle_proven(f, bb, q.absmax[b]))
                replaced += settle_block(f, bb, begin, len, codes.data(), q.absmax[b], stored.data(), again.data());
        }
    }
    q.requantized_blocks = replaced;
    pack_codes(f, codes.data(), n, bnb_pad_code(f, q.absmax.back()), q.packed.data());
}

// NF2 as loaded through load_in_4bit nf4 (format.hpp loads_through_nf4). bnb4: the plain codes,
// exported as NF4 codes. bf16 / fp16 / fp32: as for nf4, each block's absmax is rounded UP to the
// dtype and the NF2 codes use it; the block maximum (y >= 0.992, nearest 1) stores +-A' exactly,
// every other stored value is within 2^-9 (bf16) of -1, 0, 0.3379 or 1 times A', far inside
// NF4's intervals of codes 0, 7, 11, 15, so bitsandbytes re-quantizes to the same values. Each
// block is checked by that re-quantization; a block that comes back with other values (fp16
// subnormal range) takes them when they are NF2 values, else is refused.
void quantize_nf2_as_loaded(const QuantParams& p, Backbone bb, const float* x, int64_t n, QuantizedTensor& q,
                            const std::string& tensor_name) {
    const QuantFormat& f = *p.format;
    if (bb == Backbone::BNB4) {
        quantize_fast(f, p.blocksize, x, n, q.packed.data(), q.absmax.data(), nullptr);
        return;
    }
    if (p.blocksize != 64)
        LOFTQ_THROW_SETTING("blocksize", "tensor ", tensor_name, ": a ", backbone_name(bb), " backbone of nf2 loads "
                            "through load_in_4bit nf4, which re-quantizes at blocksize 64, not ", p.blocksize,
                            "; use --blocksize 64 or --backbone bnb4");
    const QuantFormat& nf4 = *find_format("nf4");
    const int64_t blocks = block_count(n, p.blocksize);
    block_absmax_fast(p.blocksize, x, n, q.absmax.data());
    for (int64_t b = 0; b < blocks; ++b) q.absmax[b] = round_up_to_backbone(bb, q.absmax[b], tensor_name, b);
    quantize_fast_with_scales(f, p.blocksize, x, n, q.absmax.data(), q.packed.data(), nullptr);
    std::vector<uint8_t> codes(n);
    unpack_codes(f, q.packed.data(), n, codes.data());
    int64_t replaced = 0, foreign = -1;
#pragma omp parallel reduction(+ : replaced) reduction(max : foreign) if (n >= kParallelMinElements)
    {
        std::vector<float> stored(p.blocksize);
        std::vector<uint8_t> again(p.blocksize), back(p.blocksize);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * p.blocksize, len = std::min<int64_t>(p.blocksize, n - begin);
            for (int64_t i = 0; i < len; ++i) stored[i] = round_to_backbone(bb, f.table[codes[begin + i]] * q.absmax[b]);
            float again_absmax = 0.0f;
            quantize_ref(nf4, static_cast<int>(len), stored.data(), len, again.data(), &again_absmax);
            bool same = again_absmax == q.absmax[b], nf2_values = true;
            for (int64_t i = 0; i < len; ++i) {
                same = same && again[i] == tables::kNF4CodeOfNF2[codes[begin + i]];
                const uint8_t* hit = std::find(tables::kNF4CodeOfNF2, tables::kNF4CodeOfNF2 + 4, again[i]);
                nf2_values = nf2_values && hit != tables::kNF4CodeOfNF2 + 4;
                back[i] = static_cast<uint8_t>(hit - tables::kNF4CodeOfNF2);
            }
            if (same) continue;
            if (!nf2_values) {
                foreign = std::max(foreign, b);
                continue;
            }
            std::copy(back.begin(), back.begin() + len, codes.begin() + begin);
            q.absmax[b] = again_absmax;
            ++replaced;
        }
    }
    if (foreign >= 0)
        LOFTQ_THROW(InputError, "tensor ", tensor_name, ": block ", foreign, " does not load back as NF2 values "
                    "through load_in_4bit nf4 in ", backbone_name(bb), " (values too small for the dtype); use "
                    "--backbone bf16 or bnb4");
    q.requantized_blocks = replaced;
    pack_codes(f, codes.data(), n, 0, q.packed.data());
}

float store_bf16(float v) { return round_to_bf16(v); }
float store_f16(float v) { return round_to_f16(v); }
float store_f32(float v) { return v; }

// LLM.int8 as loaded (quantize.hpp). The row maximum gets code +-127 (pinned: with SCB' rounded up
// by up to 2^-7 its own code could be 126) and stores +-SCB' exactly (SCB' is a value of the
// dtype), so the re-quantized SCB is SCB'; every other stored value is
// code * SCB' / 127 within the dtype's relative rounding (bf16 2^-9), at most 127 * 2^-9 = 0.25
// code steps away: it re-quantizes to its code. int8_settle_rows checks this row by row and
// takes bitsandbytes' result where it fails (fp16 subnormal range).
void quantize_int8_as_loaded(const QuantParams& p, Backbone bb, const float* x, int64_t n, QuantizedTensor& q,
                             const std::string& tensor_name) {
    const int row = p.blocksize;
    int8_quantize_fast(row, x, n, q.packed.data(), q.absmax.data(), nullptr);
    if (bb == Backbone::INT8) return;  // stored as is
    if (bb == Backbone::BF16) {
        // Above 65280 (the largest bf16 value float16 can hold) bf16 rounds up to 65536, which the
        // float16 cast at load makes Inf: 65280 then; the row maximum still gets code 127
        // (65504 / 65280 * 127 = 127.44).
        for (size_t r = 0; r < q.absmax.size(); ++r)
            q.absmax[r] = std::min(kBf16BelowFp16Max,
                                   round_up_to_backbone(bb, q.absmax[r], tensor_name, static_cast<int64_t>(r)));
        int8_codes_with_scales(row, x, n, q.absmax.data(), q.packed.data());
        int8_pin_row_maxima(row, x, n, q.packed.data());  // a rounded-up SCB can give them 126
    }
    float (*store)(float) = bb == Backbone::BF16 ? store_bf16 : bb == Backbone::FP16 ? store_f16 : store_f32;
    q.requantized_blocks = int8_settle_rows(row, n, store, q.packed.data(), q.absmax.data(), tensor_name);
}

}  // namespace

void quantize(const QuantParams& p, const float* x, int64_t n, QuantizedTensor& q,
              const std::string& tensor_name) {
    check_params(p, tensor_name);
    check_quant_input(*p.format, p.blocksize, x, n, tensor_name);
    start(p, n, q);
    quantize_fast(*p.format, p.blocksize, x, n, q.packed.data(), q.absmax.data(), nullptr);
    apply_double_quant(q);
}

void dequantize(const QuantizedTensor& q, float* out) {
    LOFTQ_CHECK(q.format != nullptr, "dequantize of an empty QuantizedTensor");
    dequantize_fast(*q.format, q.blocksize, q.packed.data(), q.absmax.data(), q.numel, out);
}

void backbone_values(const QuantizedTensor& q, float* out) {
    LOFTQ_CHECK(q.format != nullptr, "backbone_values of an empty QuantizedTensor");
    const std::vector<float>& scales = q.double_quant ? q.absmax_exact : q.absmax;
    dequantize_fast(*q.format, q.blocksize, q.packed.data(), scales.data(), q.numel, out);
}

void loaded_values(const QuantizedTensor& q, Backbone backbone, float* out) {
    if (q.format != nullptr && (q.format->is_bnb() || q.format->is_row_wise() || q.format->loads_through_nf4())) {
        dequantize(q, out);  // bitsandbytes holds exactly these codes and (decoded) scales
        return;
    }
    backbone_values(q, out);
    for (int64_t i = 0; i < q.numel; ++i) out[i] = round_to_backbone(backbone, out[i]);
}

void quantize_as_loaded(const QuantParams& p, Backbone backbone, const float* x, int64_t n,
                        QuantizedTensor& q, float* q_loaded, const std::string& tensor_name) {
    check_params(p, tensor_name);
    if (backbone == Backbone::BNB4 && !p.format->is_bnb() && !p.format->loads_through_nf4())
        LOFTQ_THROW_SETTING("backbone", "a bnb4 backbone holds only nf4/fp4, not format ", p.format->name,
                            " (tensor ", tensor_name, ", nf2 loads as nf4); use bf16, fp16 or fp32",
                            p.format->is_row_wise() ? " or int8" : "");
    if (backbone == Backbone::INT8 && !p.format->is_row_wise())
        LOFTQ_THROW_SETTING("backbone", "an int8 backbone holds only the int8 format (--quant int8), not ",
                            p.format->name, " (tensor ", tensor_name, ")");
    check_quant_input(*p.format, p.blocksize, x, n, tensor_name);
    start(p, n, q);
    if (p.format->is_row_wise() || p.format->loads_through_nf4()) {
        if (p.format->is_row_wise()) quantize_int8_as_loaded(p, backbone, x, n, q, tensor_name);
        else quantize_nf2_as_loaded(p, backbone, x, n, q, tensor_name);
        dequantize(q, q_loaded);
        return;
    }
    if (!p.format->is_bnb()) {
        quantize_fast(*p.format, p.blocksize, x, n, q.packed.data(), q.absmax.data(), q_loaded);
        for (int64_t i = 0; i < n; ++i) {
            q_loaded[i] = round_to_backbone(backbone, q_loaded[i]);
            if (!std::isfinite(q_loaded[i]))
                LOFTQ_THROW(InputError, "tensor ", tensor_name, ": quantized element ", i,
                            " is beyond the range of ", backbone_name(backbone));
        }
        return;
    }
    quantize_bnb_as_loaded(p, backbone, x, n, q, tensor_name);
    apply_double_quant(q);
    dequantize(q, q_loaded);
}

}  // namespace loftq

namespace loftq {
namespace {

// x = w - low (or w), quantize_as_loaded(x) into q and scratch, res = w - scratch: the steps
// the fused pass replaces, for the formats it does not cover and to raise its errors.
void quantize_residual_composite(const QuantParams& p, Backbone bb, const float* w, const float* low, int64_t n,
                                 QuantizedTensor& q, float* res, float* scratch, const std::string& name) {
    const float* x = w;
    if (low) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
        for (int64_t i = 0; i < n; ++i) res[i] = w[i] - low[i];
        x = res;
    }
    quantize_as_loaded(p, bb, x, n, q, scratch, name);
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) res[i] = w[i] - scratch[i];
}

}  // namespace

void quantize_residual_as_loaded(const QuantParams& p, Backbone bb, const float* w, const float* low, int64_t n,
                                 QuantizedTensor& q, float* res, float* scratch, const std::string& name,
                                 const QuantKernels* kernels) {
    const QuantFormat* f = p.format;
    constexpr int kMaxBlock = 4096;
    if (!f || !f->is_bnb() || p.double_quant || bb == Backbone::INT8 || p.blocksize > kMaxBlock || n <= 0)
        return quantize_residual_composite(p, bb, w, low, n, q, res, scratch, name);
    check_params(p, name);
    start(p, n, q);
    const QuantKernels& k = kernels ? *kernels : quant_kernels();
    const bool nf4 = f->family == FormatFamily::BnbNF4;
    const int bs = p.blocksize;
    const int64_t blocks = block_count(n, bs);
    int64_t replaced = 0, anomaly = -1;
#pragma omp parallel reduction(+ : replaced) reduction(max : anomaly) if (n >= kParallelMinElements)
    {
        alignas(64) float x[kMaxBlock], stored[kMaxBlock];
        alignas(64) uint8_t codes[kMaxBlock], again[kMaxBlock];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t begin = b * bs, len = std::min<int64_t>(bs, n - begin);
            const uint32_t bits = k.diff_absmax_bits(w + begin, low ? low + begin : nullptr, len, x);
            float a;
            std::memcpy(&a, &bits, sizeof a);
            if (bb != Backbone::BNB4 && bits < 0x7f800000u) a = rounded_up(bb, a);
            if (bits >= 0x7f800000u || !std::isfinite(a)) {  // the composite pass names the problem
                anomaly = std::max(anomaly, b);
                continue;
            }
            bnb_block_codes(k, *f, x, len, a, codes);
            if (bb != Backbone::BNB4) {
                if (!nf4)
                    for (int64_t i = 0; i < len; ++i)
                        if (codes[i] == 8) codes[i] = 0;  // -0 is stored as -0.0, re-quantizes to +0
                if (!settle_proven(*f, bb, a)) replaced += settle_block(*f, bb, 0, len, codes, a, stored, again);
            }
            q.absmax[b] = a;
            pack_bnb_block(k, *f, codes, len, a, q.packed.data() + begin / 2);  // blocks start on a byte
            k.residual(w + begin, codes, len, f->table, a, res + begin);
        }
    }
    if (anomaly >= 0) {
        quantize_residual_composite(p, bb, w, low, n, q, res, scratch, name);  // throws for the block
        LOFTQ_THROW(Error, "tensor ", name, ": block ", anomaly, " could not be quantized");  // not reached
    }
    q.requantized_blocks = replaced;
}

}  // namespace loftq

namespace loftq {

double quantize_plain_error(const QuantParams& p, const float* x, int64_t n, QuantizedTensor& q,
                            const std::string& name) {
    const QuantFormat* f = p.format;
    const auto steps = [&] {
        quantize(p, x, n, q, name);
        std::unique_ptr<float[]> deq(new float[static_cast<size_t>(std::max<int64_t>(n, 1))]);
        dequantize(q, deq.get());
        const float* d = deq.get();
        return ordered_sum(n, [x, d](int64_t i) {
            const double e = static_cast<double>(x[i]) - static_cast<double>(d[i]);
            return e * e;
        });
    };
    if (!f || !f->is_bnb() || p.double_quant || n <= 0 || kOrderedSumChunk % p.blocksize != 0) return steps();
    check_params(p, name);
    start(p, n, q);
    quant_kernels();  // chosen here, outside the parallel loop, where a bad LOFTQ_SIMD can throw
    const int64_t chunks = (n + kOrderedSumChunk - 1) / kOrderedSumChunk;
    std::vector<double> part(static_cast<size_t>(chunks));
    int64_t anomaly = -1;
#pragma omp parallel reduction(max : anomaly) if (n >= kParallelMinElements)
    {
        std::unique_ptr<float[]> values(new float[kOrderedSumChunk]);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            // Whole blocks (the blocksize divides the chunk): the chunk's codes, scales and Q.
            const int64_t begin = c * kOrderedSumChunk, end = std::min(n, begin + kOrderedSumChunk);
            float* scales = q.absmax.data() + begin / p.blocksize;
            quantize_fast(*f, p.blocksize, x + begin, end - begin, q.packed.data() + begin / 2, scales, values.get());
            if (!std::all_of(scales, scales + block_count(end - begin, p.blocksize),
                             [](float a) { return std::isfinite(a); })) {
                anomaly = std::max(anomaly, c);  // a non-finite weight
                continue;
            }
            const float* v = values.get() - begin;
            part[static_cast<size_t>(c)] = ordered_chunk_sum(begin, end, [x, v](int64_t i) {
                const double e = static_cast<double>(x[i]) - static_cast<double>(v[i]);
                return e * e;
            });
        }
    }
    if (anomaly >= 0) return steps();  // quantize names the first non-finite element
    double s = 0;
    for (double v : part) s += v;
    return s;
}

}  // namespace loftq
