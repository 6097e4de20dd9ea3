// Reading the PEFT adapter of an exported folder (loftq_init/adapter_config.json and
// loftq_init/adapter_model.safetensors), as `loftq verify` checks it: every field it uses
// checked for type and range (r and every rank_pattern entry a positive integer, lora_alpha and
// every alpha_pattern entry a finite number, init_lora_weights true), every tensor a PEFT
// lora_A / lora_B key, every module with both. Anything else is one InputError naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"

namespace loftq {

class AdapterReader {
public:
    // Opens `<dir>/adapter_config.json` and `<dir>/adapter_model.safetensors`.
    explicit AdapterReader(const std::string& dir);

    const std::string& config_path() const { return config_path_; }
    const std::string& tensors_path() const { return tensors_path_; }
    const SafetensorsFile& tensors() const { return tensors_; }
    // The model tensors ("model.layers.0.self_attn.q_proj.weight") the adapter has a module
    // for, in name order; each has both lora_A and lora_B.
    const std::map<std::string, int>& modules() const { return modules_; }
    bool use_rslora() const { return rslora_; }
    // PEFT's per-module values: a rank_pattern / alpha_pattern key that equals the module path
    // or ends in ".<key>" overrides r / lora_alpha.
    int64_t rank_of(const std::string& tensor) const;
    double alpha_of(const std::string& tensor) const;
    // alpha / r, or alpha / sqrt(r) with use_rslora.
    double scaling_of(const std::string& tensor) const;

private:
    std::string config_path_, tensors_path_;
    nlohmann::json rank_pattern_, alpha_pattern_;
    int64_t r_ = 0;
    double alpha_ = 0;
    bool rslora_ = false;
    SafetensorsFile tensors_;
    std::map<std::string, int> modules_;
};

}  // namespace loftq
