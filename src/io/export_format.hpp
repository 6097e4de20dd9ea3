// What an exported folder holds, as pure functions of the run's layout and options
// (spec/FORMATS.md sections 2 and 4): PEFT's adapter key names and adapter_config.json,
// bitsandbytes' serialized 4-bit Linear (tensor names, shapes, the quant_state JSON bytes),
// config.json's quantization_config, and which backbone forms a run can be exported in exactly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/runfile.hpp"
#include "io/safetensors_writer.hpp"
#include "quant/quantize.hpp"

namespace loftq {

// "model.layers.0.self_attn.q_proj.weight" -> "model.layers.0.self_attn.q_proj".
// InputError if the name does not end in ".weight" or has nothing before it.
std::string module_path(const std::string& tensor);
// The last component of the module path: "q_proj".
std::string module_name(const std::string& tensor);
// PEFT's adapter keys: "base_model.model.<module path>.lora_A.weight" (and lora_B).
std::string lora_a_key(const std::string& tensor);
std::string lora_b_key(const std::string& tensor);
// The tensor name of an adapter key (inverse of lora_a_key / lora_b_key); empty if `key` is
// not one. `which` receives 'A' or 'B'.
std::string tensor_of_lora_key(const std::string& key, char& which);

// The torch dtype names bitsandbytes and transformers write ("bfloat16", "float16",
// "float32"), and the safetensors dtype of each. InputError/ConfigError naming `what` otherwise.
DType torch_dtype_to_dtype(const std::string& torch_name, const std::string& what);
std::string dtype_to_torch_name(DType t);
DType backbone_dtype(Backbone b);  // BF16 / F16 / F32; BNB4 and INT8 are not a float dtype (Error)

// Everything adapter_config.json says (FORMATS.md 4).
struct AdapterSettings {
    std::string base_model;     // base_model_name_or_path
    double lora_alpha = 16;
    bool rslora = false;
    double bits = 4;            // loftq_config.loftq_bits
    int iters = 1;              // loftq_config.loftq_iter
    // Every target: module path -> LoRA rank. The most frequent rank becomes `r` (the smallest
    // on a tie); modules with another rank go into rank_pattern under their module path.
    std::vector<std::pair<std::string, int64_t>> module_ranks;
};
// The adapter_config.json object: peft_type LORA, task_type CAUSAL_LM, r, lora_alpha (an
// integer when integral), lora_dropout 0.0, target_modules (sorted unique module names),
// init_lora_weights true (LoftQ must not run again at load), bias "none", fan_in_fan_out false,
// inference_mode true (as PEFT saves adapters; train with is_trainable=True), modules_to_save
// null, use_rslora, rank_pattern, alpha_pattern {}, loftq_config {loftq_bits, loftq_iter}.
nlohmann::json adapter_config_json(const AdapterSettings& s);

// The non-tensor part of a bitsandbytes QuantState, serialized as the
// P.weight.quant_state.bitsandbytes__<type> U8 tensor.
struct Bnb4State {
    std::string quant_type;  // "nf4" | "fp4"
    int64_t blocksize = 64;
    std::string dtype;       // torch name of the dequantized dtype, e.g. "bfloat16"
    int64_t rows = 0, cols = 0;
    bool nested = false;
    float nested_offset = 0.0f;
};
// Python json.dumps text of {"quant_type", "blocksize", "dtype", "shape"[, "nested_blocksize":
// 256, "nested_dtype": "float32", "nested_offset"]} in bitsandbytes' key order. The offset is
// written with 9 significant digits ("%.8e"), which round-trips float32 and keeps the length
// independent of the value (the writer needs every tensor size before the data).
std::string bnb4_quant_state_json(const Bnb4State& s);
// The tensor names and specs of one serialized 4-bit Linear weight `tensor` (= "P.weight"), in
// the order the exporter writes them: P.weight U8 [(n+1)/2, 1], P.weight.absmax (F32, or U8
// with double quant) [nblocks], P.weight.quant_map F32 [16], with double quant
// P.weight.nested_absmax F32 [ceil(nblocks/256)] and P.weight.nested_quant_map F32 [256],
// then P.weight.quant_state.bitsandbytes__<type> U8 [json bytes].
std::vector<TensorSpec> bnb4_tensor_specs(const MatrixLayout& m, size_t state_json_bytes);
// config.json's "quantization_config" for a bnb4 backbone (FORMATS.md 2, every field).
nlohmann::json bnb4_quantization_config(const std::string& quant_type, bool double_quant,
                                        const std::string& compute_dtype);

// The bnb_4bit_quant_type a bnb4 backbone stores format f as: its name, or "nf4" for nf2 (NF2
// codes are written as the NF4 codes of the same values: 2-bit information in 4-bit storage, as
// LoftQ's released 2-bit models hold it).
std::string bnb4_quant_type(const QuantFormat& f);
// n NF2 codes (LoftQ packing, low bits first) -> the same values' NF4 codes (bitsandbytes packing,
// (n + 1) / 2 bytes, high nibble first; n is a multiple of the blocksize, so even).
void nf2_codes_as_nf4(const uint8_t* nf2_packed, int64_t n, uint8_t* nf4_packed);

// One serialized LLM.int8 Linear weight `tensor` (= "P.weight", module path M), as bitsandbytes'
// Linear8bitLt saves it and transformers loads it pre-quantized: M.weight I8 [rows, cols] (the
// codes), M.SCB F32 [rows], M.weight_format U8 [] (0 = row-major). In this order.
std::vector<TensorSpec> int8_tensor_specs(const MatrixLayout& m);
std::string int8_scb_key(const std::string& tensor);            // "M.SCB"
std::string int8_weight_format_key(const std::string& tensor);  // "M.weight_format"
// config.json's "quantization_config" for load_in_8bit (BitsAndBytesConfig(load_in_8bit=True)).
nlohmann::json int8_quantization_config();

// The backbone form an export writes, checked against what the run optimised. Exact combinations
// only:
// - the run's own backbone, or bnb4 for a bf16/fp16/fp32 run of nf4/fp4 (the run's absmax was
//   rounded to the dtype, so storing the codes loads the same Q);
// - bf16/fp16/fp32 with nf4/fp4 needs blocksize 64 (transformers re-quantizes at 64 and has no
//   blocksize option) and no double quantization (the run file keeps only the double-quantized
//   absmax, not the values a float backbone must store);
// - bnb4 needs nf4/fp4/nf2 (nf2 as NF4 codes; bitsandbytes cannot hold nf8/uniform pre-quantized);
// - a float backbone of nf2 also needs blocksize 64 (it loads through load_in_4bit nf4);
// - int8 needs the int8 format, and is exact for an int8 run of any backbone (the run's codes and
//   SCB are those its backbone loads as).
// Anything else is one ConfigError (setting "backbone") saying what to do. `requested`: the
// export's own choice, or none for the run's `run_backbone`.
Backbone resolve_export_backbone(std::optional<Backbone> requested, Backbone run_backbone,
                                 const RunLayout& layout, const std::string& work_path);

}  // namespace loftq
