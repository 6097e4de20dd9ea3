// What the LoftQ loop calls: quantize a float32 tensor in a registered format, dequantize it,
// and "quantize as loaded": the codes/scales to export AND the float32 Q that transformers +
// bitsandbytes will hold after loading the exported backbone, so the SVD corrects that Q.
//
// All buffers are the row-major flattened tensor of n elements. Errors name `tensor_name`:
// ConfigError for a format/backbone/blocksize combination, InputError for NaN/Inf, a numel a
// LoftQ format cannot block, or a block the backbone dtype cannot hold (fp16 absmax > 65504).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/format.hpp"
#include "quant/quantize_ref.hpp"

namespace loftq {

struct QuantKernels;  // quant/simd_kernels.hpp

struct QuantParams {
    const QuantFormat* format = nullptr;
    int blocksize = 64;
    bool double_quant = false;  // bnb_4bit_use_double_quant (nf4 / fp4 only)
};

// How the exported backbone stores the quantized matrices (--backbone): a 16/32-bit tensor that
// bitsandbytes quantizes at load, or pre-quantized as bitsandbytes saves it (bnb4: 4-bit codes,
// int8: LLM.int8 codes + SCB), loaded as is.
enum class Backbone { BF16, FP16, FP32, BNB4, INT8 };
Backbone parse_backbone(const std::string& s);  // "bf16" | "fp16" | "fp32" | "bnb4" | "int8"; ConfigError
const char* backbone_name(Backbone b);

struct QuantizedTensor {
    const QuantFormat* format = nullptr;
    int blocksize = 0;
    int64_t numel = 0;
    std::vector<uint8_t> packed;  // packed_bytes(format, numel), the format's packing order
    std::vector<float> absmax;    // per block, the scale dequantization multiplies by (the
                                  // double-quant decoded value when double_quant)
    bool double_quant = false;
    std::vector<float> absmax_exact;  // double_quant only: per block, before double quantization
    DoubleQuant nested;           // double_quant only: absmax codes (U8), nested_absmax, offset
    // quantize_as_loaded with a bf16/fp16 backbone: blocks whose stored values the dtype cannot
    // reproduce exactly (fp16 subnormal range) and that were replaced by bitsandbytes'
    // re-quantization of the stored values. 0 for every block of normal magnitude. (int8: rows.)
    int64_t requantized_blocks = 0;

    const char* name() const { return format ? format->name : ""; }
    int bits() const { return format ? format->bits : 0; }
};

// Validate (check_quant_input) and quantize with the fast path. With double_quant the absmax is
// double-quantized and `q.absmax` holds the decoded values.
void quantize(const QuantParams& p, const float* x, int64_t n, QuantizedTensor& q,
              const std::string& tensor_name);
// out[i] = table[code i] * q.absmax[block of i] (n = q.numel floats).
void dequantize(const QuantizedTensor& q, float* out);

// Quantize x so that loading the exported backbone reproduces q_loaded (n floats) bit for bit:
// - bnb4: the packed codes are exported; q_loaded = table[c] * absmax (decoded when nested).
// - bf16 / fp16 / fp32 with nf4 / fp4: each block's absmax is rounded UP to the dtype, codes
//   use that absmax; the stored values table[c] * absmax re-quantize (bitsandbytes at load) to
//   the same codes and absmax; q_loaded = table[c] * absmax (decoded when double_quant, which
//   then describes the load-time double quantization). See quantize.cpp for the proof.
// - nf2 loads through load_in_4bit nf4 (format.hpp loads_through_nf4): bnb4 exports its codes as
//   NF4 codes (q_loaded = Q); bf16 / fp16 / fp32 (blocksize 64) round each block's absmax UP to
//   the dtype as for nf4, so that NF4's re-quantization at load gives back the NF2 values.
// - bf16 / fp16 / fp32 with another LoftQ format (nf8, uniform): q_loaded = the dtype's rounding
//   of Q (they load as stored, with no quantization_config).
// - int8 (LLM.int8, int8_rowwise.hpp): with the int8 backbone q_loaded = the plain quantization;
//   with bf16 / fp16 / fp32 (load_in_8bit re-quantizes the stored values) each row's SCB is rounded
//   UP to the dtype, codes use it, and rows whose stored values would re-quantize differently are
//   replaced by that re-quantization (requantized_blocks counts them): q_loaded is what loads.
// Throws ConfigError for bnb4 with a format other than nf4/fp4/nf2, int8 with another format, or
// double_quant with a format other than nf4/fp4.
void quantize_as_loaded(const QuantParams& p, Backbone backbone, const float* x, int64_t n,
                        QuantizedTensor& q, float* q_loaded, const std::string& tensor_name);

// One LoftQ quantization step: q = quantize_as_loaded(x) for x = w - low (low == nullptr: x = w)
// and res = w - Q as loaded, element by element: the same bits as computing x, calling
// quantize_as_loaded into `scratch` and subtracting. For nf4 / fp4 without double quantization
// (any backbone but int8) it is one pass over memory (read w and low, write res; `scratch` is
// not touched), with the SIMD kernels of quant/simd_kernels.hpp; the other formats take the
// three steps. `scratch` (n floats) may be `low` itself; res may be `low` (each block is read
// before it is written) but not w or scratch. Throws
// what quantize_as_loaded throws, naming the first bad element or block as it does.
// `kernels`: the SIMD level (nullptr: the process's, quant_kernels(); benchmarks pass each).
void quantize_residual_as_loaded(const QuantParams& p, Backbone backbone, const float* w, const float* low,
                                 int64_t n, QuantizedTensor& q, float* res, float* scratch,
                                 const std::string& tensor_name, const QuantKernels* kernels = nullptr);

// QLoRA's squared error of x: q = quantize(p, x) (the plain quantization, as QLoRA loads the
// original weights) and sum_i (x_i - Q_i)^2 of the exact differences in double, summed in
// ordered_sum's order (core/parallel.hpp): the same bits as quantize, dequantize and
// ordered_sum, in one pass over x for nf4 / fp4 without double quantization (blocksize
// dividing ordered_sum's chunk), in those three steps otherwise. Throws what quantize throws.
double quantize_plain_error(const QuantParams& p, const float* x, int64_t n, QuantizedTensor& q,
                            const std::string& tensor_name);

// The float32 values a bf16/fp16/fp32 backbone stores for q (the exporter narrows them to the
// dtype): table[c] * absmax before double quantization (bnb formats; bitsandbytes double-
// quantizes again at load), or the dequantized Q (LoftQ formats). n = q.numel floats.
void backbone_values(const QuantizedTensor& q, float* out);

// The float32 Q transformers holds after loading a backbone exported from q in form `backbone`:
// what quantize_as_loaded wrote to q_loaded (nf4/fp4: the codes and decoded scales; LoftQ formats:
// the dequantized values rounded to the backbone dtype). n = q.numel floats.
void loaded_values(const QuantizedTensor& q, Backbone backbone, float* out);

// The value the backbone dtype stores for v (bf16/fp16: round to nearest even; else v).
float round_to_backbone(Backbone b, float v);

}  // namespace loftq
