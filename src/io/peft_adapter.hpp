// A trained PEFT LoRA adapter as PEFT saves it (save_pretrained): adapter_config.json +
// adapter_model.safetensors with keys "base_model.model.<module path>.lora_A.weight" [r, in]
// and "...lora_B.weight" [out, r] (spec/FORMATS.md 4). Read as untrusted input: every problem is
// one InputError naming the file and the module.
//
// Supported: plain LoRA on Linear weights with any r, lora_alpha, use_rslora, rank_pattern and
// alpha_pattern (PEFT's get_pattern_key: the first key K with re.match("(.*\.)?(K)$", path)),
// target_modules as a list, a regex string or "all-linear". Refused with one line naming the
// field: another peft_type, use_dora, use_qalora, lora_bias, bias other than "none",
// fan_in_fan_out, modules_to_save, layer_replication, trainable_token_indices,
// target_parameters, and any adapter tensor that is not a lora_A / lora_B weight.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loftq {

struct LoraModule {
    std::string tensor;  // the base weight it adapts, "model.layers.0.self_attn.q_proj.weight"
    int64_t r = 0;
    double alpha = 0;
    double scaling = 0;  // alpha / r, or alpha / sqrt(r) with use_rslora
};

struct PeftAdapter {
    std::string folder;
    std::string config_path;   // folder/adapter_config.json
    std::string weights_path;  // folder/adapter_model.safetensors
    nlohmann::json target_modules;  // as adapter_config.json says (list, string or null)
    std::vector<LoraModule> modules;  // sorted by tensor name

    // Whether PEFT's target_modules selects the module at `module_path` (a list entry equal to
    // its last component or to a dotted suffix of it; a string: "all-linear" selects any linear
    // the caller passes, another string is a regex that must match the whole path).
    bool targets(const std::string& module_path) const;
};

// Reads and checks adapter_config.json and the tensor index of adapter_model.safetensors (shapes
// against r, pairs complete, float dtypes); the tensors themselves are read by read_lora_factors.
PeftAdapter read_peft_adapter(const std::string& folder);

// PEFT's get_pattern_key over the keys of a rank_pattern / alpha_pattern object: the value of
// the first key matching `module_path`, or nullptr.
const nlohmann::json* peft_pattern_for(const nlohmann::json& pattern, const std::string& module_path);

// A [m.r, cols] and B [rows, m.r] as float32 (row-major). InputError naming the file and module
// when the shapes do not fit a base weight of rows x cols, or a value is not finite.
void read_lora_factors(const PeftAdapter& adapter, const LoraModule& m, int64_t rows, int64_t cols,
                       std::vector<float>& A, std::vector<float>& B);

}  // namespace loftq
