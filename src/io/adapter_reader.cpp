#include "io/adapter_reader.hpp"

#include <cmath>

#include "core/error.hpp"
#include "io/export_format.hpp"
#include "io/json_strict.hpp"

namespace loftq {
namespace {

const nlohmann::json& member(const nlohmann::json& obj, const char* key, const std::string& file) {
    if (!obj.contains(key)) LOFTQ_THROW(InputError, file, ": missing field \"", key, "\"");
    return obj.at(key);
}

int64_t positive_rank(const nlohmann::json& v, const std::string& what, const std::string& file) {
    if (!v.is_number_integer() || v.get<int64_t>() < 1)
        LOFTQ_THROW(InputError, file, ": ", what, " is not a positive integer (", v.dump(), ")");
    return v.get<int64_t>();
}

double finite_alpha(const nlohmann::json& v, const std::string& what, const std::string& file) {
    if (!v.is_number() || !std::isfinite(v.get<double>()))
        LOFTQ_THROW(InputError, file, ": ", what, " is not a finite number (", v.dump(), ")");
    return v.get<double>();
}

// An object of module path (suffix) -> value, each value checked by `check`; {} when absent.
template <typename Check>
nlohmann::json pattern(const nlohmann::json& cfg, const char* key, const std::string& file, Check check) {
    if (!cfg.contains(key) || cfg.at(key).is_null()) return nlohmann::json::object();
    const nlohmann::json& p = cfg.at(key);
    if (!p.is_object()) LOFTQ_THROW(InputError, file, ": \"", key, "\" is not an object");
    for (auto it = p.begin(); it != p.end(); ++it) check(it.value(), cat(key, " '", it.key(), "'"), file);
    return p;
}

// PEFT's pattern lookup: a key matches a module path equal to it or ending in ".<key>".
const nlohmann::json* pattern_for(const nlohmann::json& pattern, const std::string& path) {
    for (auto it = pattern.begin(); it != pattern.end(); ++it) {
        const std::string& k = it.key();
        if (path == k || (path.size() > k.size() && path.compare(path.size() - k.size(), k.size(), k) == 0 &&
                          path[path.size() - k.size() - 1] == '.'))
            return &it.value();
    }
    return nullptr;
}

}  // namespace

AdapterReader::AdapterReader(const std::string& dir)
    : config_path_(dir + "/adapter_config.json"),
      tensors_path_(dir + "/adapter_model.safetensors"),
      tensors_(tensors_path_) {
    const nlohmann::json cfg = read_json_file(config_path_, "file");
    if (!cfg.is_object()) LOFTQ_THROW(InputError, config_path_, ": not a JSON object");
    const nlohmann::json& init = member(cfg, "init_lora_weights", config_path_);
    if (init != true)
        LOFTQ_THROW(InputError, config_path_, ": init_lora_weights is not true: PEFT would re-initialise the adapter at load");
    r_ = positive_rank(member(cfg, "r", config_path_), "r", config_path_);
    alpha_ = finite_alpha(member(cfg, "lora_alpha", config_path_), "lora_alpha", config_path_);
    if (cfg.contains("use_rslora") && !cfg.at("use_rslora").is_null()) {
        if (!cfg.at("use_rslora").is_boolean()) LOFTQ_THROW(InputError, config_path_, ": use_rslora is not a boolean");
        rslora_ = cfg.at("use_rslora").get<bool>();
    }
    rank_pattern_ = pattern(cfg, "rank_pattern", config_path_, positive_rank);
    alpha_pattern_ = pattern(cfg, "alpha_pattern", config_path_, finite_alpha);

    for (const auto& t : tensors_.tensors()) {
        char which = 0;
        const std::string name = tensor_of_lora_key(t.name, which);
        if (name.empty()) LOFTQ_THROW(InputError, tensors_path_, ": tensor ", t.name, " is not a PEFT lora_A/lora_B key");
        modules_[name] |= which == 'A' ? 1 : 2;
    }
    if (modules_.empty()) LOFTQ_THROW(InputError, tensors_path_, ": no LoRA modules");
    for (const auto& [name, seen] : modules_)
        if (seen != 3) LOFTQ_THROW(InputError, tensors_path_, ": module of ", name, " lacks lora_A or lora_B");
}

int64_t AdapterReader::rank_of(const std::string& tensor) const {
    const nlohmann::json* p = pattern_for(rank_pattern_, module_path(tensor));
    return p ? p->get<int64_t>() : r_;
}

double AdapterReader::alpha_of(const std::string& tensor) const {
    const nlohmann::json* p = pattern_for(alpha_pattern_, module_path(tensor));
    return p ? p->get<double>() : alpha_;
}

double AdapterReader::scaling_of(const std::string& tensor) const {
    const double r = static_cast<double>(rank_of(tensor));
    return rslora_ ? alpha_of(tensor) / std::sqrt(r) : alpha_of(tensor) / r;
}

}  // namespace loftq
