#include "io/peft_adapter.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/export_format.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"

namespace loftq {
namespace {

// Settings of a LoRA variant this merge does not implement: key -> when its value is refused.
bool refused_setting(const nlohmann::json& v, const std::string& key) {
    if (v.is_null()) return false;
    if (key == "bias") return !(v.is_string() && v.get<std::string>() == "none");
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_array() || v.is_object()) return !v.empty();
    return true;
}

constexpr const char* kRefused[] = {"use_dora", "use_qalora", "lora_bias", "bias", "fan_in_fan_out",
                                    "modules_to_save", "layer_replication", "trainable_token_indices",
                                    "target_parameters", "alora_invocation_tokens", "megatron_config"};

std::regex compile_pattern(const std::string& text, const std::string& where) {
    try {
        return std::regex(text, std::regex::ECMAScript);
    } catch (const std::regex_error&) {
        LOFTQ_THROW(InputError, where, ": '", text, "' is not a regular expression this tool can read");
    }
}

}  // namespace

const nlohmann::json* peft_pattern_for(const nlohmann::json& pattern, const std::string& module_path) {
    if (!pattern.is_object()) return nullptr;
    for (auto it = pattern.begin(); it != pattern.end(); ++it)
        if (std::regex_match(module_path, compile_pattern("(.*\\.)?(" + it.key() + ")", "pattern key")))
            return &it.value();
    return nullptr;
}

bool PeftAdapter::targets(const std::string& module_path) const {
    if (target_modules.is_string()) {
        const std::string t = target_modules.get<std::string>();
        return t == "all-linear" || std::regex_match(module_path, compile_pattern(t, config_path + " target_modules"));
    }
    if (!target_modules.is_array()) return false;
    for (const auto& e : target_modules) {
        const std::string k = e.get<std::string>();
        if (module_path == k || (module_path.size() > k.size() && module_path.compare(module_path.size() - k.size(), k.size(), k) == 0 &&
                                 module_path[module_path.size() - k.size() - 1] == '.'))
            return true;
    }
    return false;
}

PeftAdapter read_peft_adapter(const std::string& folder) {
    PeftAdapter a;
    a.folder = folder;
    a.config_path = folder + "/adapter_config.json";
    a.weights_path = folder + "/adapter_model.safetensors";
    const std::string& cp = a.config_path;
    const nlohmann::json cfg = read_json_file(cp, "file");
    if (!cfg.is_object()) LOFTQ_THROW(InputError, cp, ": not a JSON object");
    const auto get_string = [&](const char* key, const char* fallback) {
        if (!cfg.contains(key)) return std::string(fallback);
        if (!cfg[key].is_string()) LOFTQ_THROW(InputError, cp, ": \"", key, "\" is not a string");
        return cfg[key].get<std::string>();
    };
    const std::string type = get_string("peft_type", "");
    if (type != "LORA") LOFTQ_THROW(InputError, cp, ": peft_type is \"", type, "\"; only LORA adapters can be merged");
    for (const char* key : kRefused)
        if (cfg.contains(key) && refused_setting(cfg[key], key))
            LOFTQ_THROW(InputError, cp, ": ", key, " = ", cfg[key].dump(),
                        " is a LoRA variant loftq merge does not implement (plain LoRA only)");
    if (!cfg.contains("r") || !cfg["r"].is_number_integer() || cfg["r"].get<int64_t>() < 1)
        LOFTQ_THROW(InputError, cp, ": \"r\" is missing or not a positive integer");
    if (!cfg.contains("lora_alpha") || !cfg["lora_alpha"].is_number())
        LOFTQ_THROW(InputError, cp, ": \"lora_alpha\" is missing or not a number");
    const int64_t r_default = cfg["r"].get<int64_t>();
    const double alpha_default = cfg["lora_alpha"].get<double>();
    const nlohmann::json rslora = cfg.value("use_rslora", nlohmann::json(false));
    if (!rslora.is_boolean()) LOFTQ_THROW(InputError, cp, ": \"use_rslora\" is not true or false");
    nlohmann::json patterns[2];
    const char* pattern_keys[2] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; ++i) {
        patterns[i] = cfg.value(pattern_keys[i], nlohmann::json::object());
        if (patterns[i].is_null()) patterns[i] = nlohmann::json::object();
        if (!patterns[i].is_object()) LOFTQ_THROW(InputError, cp, ": \"", pattern_keys[i], "\" is not an object");
        for (auto it = patterns[i].begin(); it != patterns[i].end(); ++it) {
            compile_pattern("(.*\\.)?(" + it.key() + ")", cat(cp, " ", pattern_keys[i]));
            if (!it.value().is_number() || (i == 0 && !(it.value().is_number_integer() && it.value().get<int64_t>() >= 1)))
                LOFTQ_THROW(InputError, cp, ": ", pattern_keys[i], "[\"", it.key(), "\"] = ", it.value().dump(),
                            i == 0 ? " is not a positive integer rank" : " is not a number");
        }
    }
    a.target_modules = cfg.value("target_modules", nlohmann::json());
    if (a.target_modules.is_array()) {
        for (const auto& e : a.target_modules)
            if (!e.is_string()) LOFTQ_THROW(InputError, cp, ": target_modules holds a non-string ", e.dump());
    } else if (a.target_modules.is_string()) {
        a.targets("");  // a bad regex is refused now
    } else if (!a.target_modules.is_null()) {
        LOFTQ_THROW(InputError, cp, ": target_modules is neither a list nor a string");
    }

    const SafetensorsFile file(a.weights_path);
    std::map<std::string, int> seen;  // tensor -> lora_A (1) | lora_B (2)
    for (const auto& t : file.tensors()) {
        char which = 0;
        const std::string tensor = tensor_of_lora_key(t.name, which);
        if (tensor.empty())
            LOFTQ_THROW(InputError, a.weights_path, ": tensor ", t.name,
                        " is not a LoRA lora_A / lora_B weight (DoRA magnitudes, embeddings and saved modules "
                        "are not merged)");
        if (!is_float_weight_dtype(t.dtype))
            LOFTQ_THROW(InputError, a.weights_path, ": tensor ", t.name, " has dtype ", dtype_name(t.dtype));
        seen[tensor] |= which == 'A' ? 1 : 2;
    }
    if (seen.empty()) LOFTQ_THROW(InputError, a.weights_path, ": no LoRA modules");
    for (const auto& [tensor, bits] : seen) {
        if (bits != 3)
            LOFTQ_THROW(InputError, a.weights_path, ": module ", module_path(tensor), " has lora_",
                        bits == 1 ? "A" : "B", " but no lora_", bits == 1 ? "B" : "A");
        LoraModule m;
        m.tensor = tensor;
        const std::string path = module_path(tensor);
        const nlohmann::json* rp = peft_pattern_for(patterns[0], path);
        const nlohmann::json* ap = peft_pattern_for(patterns[1], path);
        m.r = rp ? rp->get<int64_t>() : r_default;
        m.alpha = ap ? ap->get<double>() : alpha_default;
        m.scaling = rslora.get<bool>() ? m.alpha / std::sqrt(static_cast<double>(m.r)) : m.alpha / static_cast<double>(m.r);
        if (!std::isfinite(m.scaling))
            LOFTQ_THROW(InputError, cp, ": module ", path, " has scaling ", m.scaling);
        const TensorInfo& ai = file.info(lora_a_key(tensor));
        const TensorInfo& bi = file.info(lora_b_key(tensor));
        if (ai.shape.size() != 2 || bi.shape.size() != 2 || ai.shape[0] != m.r || bi.shape[1] != m.r)
            LOFTQ_THROW(InputError, a.weights_path, ": module ", path, " lora_A is ", shape_string(ai.shape),
                        ", lora_B is ", shape_string(bi.shape), "; adapter_config.json gives it r = ", m.r);
        a.modules.push_back(std::move(m));
    }
    return a;
}

void read_lora_factors(const PeftAdapter& adapter, const LoraModule& m, int64_t rows, int64_t cols,
                       std::vector<float>& A, std::vector<float>& B) {
    const SafetensorsFile file(adapter.weights_path);
    const TensorInfo& ai = file.info(lora_a_key(m.tensor));
    const TensorInfo& bi = file.info(lora_b_key(m.tensor));
    if (ai.shape != std::vector<int64_t>{m.r, cols} || bi.shape != std::vector<int64_t>{rows, m.r})
        LOFTQ_THROW(InputError, adapter.weights_path, ": module ", module_path(m.tensor), " lora_A is ",
                    shape_string(ai.shape), ", lora_B is ", shape_string(bi.shape), "; the base weight is ", rows,
                    "x", cols, " so r = ", m.r, " needs [", m.r, ", ", cols, "] and [", rows, ", ", m.r, "]");
    A = file.read_f32(lora_a_key(m.tensor), FiniteCheck::reject);
    B = file.read_f32(lora_b_key(m.tensor), FiniteCheck::reject);
}

}  // namespace loftq
