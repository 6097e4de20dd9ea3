#include "cli/config.hpp"

#include <initializer_list>

#include "core/error.hpp"
#include "plan/model_config.hpp"

namespace loftq {

void require_one_of(const std::string& option, const std::string& value,
                    std::initializer_list<const char*> allowed) {
    for (const char* a : allowed)
        if (value == a) return;
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : "|") + std::string(a);
    LOFTQ_THROW(ConfigError, "option --", option, ": '", value, "' is not one of ", list);
}

namespace {

void require_path(const std::string& option, const std::string& value) {
    if (value.empty()) LOFTQ_THROW(ConfigError, "option --", option, " is required");
}

}  // namespace

void Config::validate() const {
    const bool loftq_cmd = command == "quantize" || command == "run" || command == "merge";
    if (command == "quantize" || command == "run" || command == "export" || command == "verify")
        require_path("model", model_dir);
    if (command == "quantize" || command == "export") require_path("work", work_path);
    if (command == "export" || command == "run" || command == "verify" || command == "synth")
        require_path("output", exp.output_dir);
    if (command == "inspect" && inspect_path.empty())
        LOFTQ_THROW(ConfigError, "loftq inspect: missing PATH (a .safetensors file or a model folder)");

    if (loftq_cmd) {
        spec.validate();
        require_one_of("device", quantize.device, {"auto", "cpu", "cuda"});
        if (!(quantize.watchdog >= 0 && quantize.watchdog <= 1e7))
            LOFTQ_THROW(ConfigError, "option --watchdog: must be 0 (off) or a number of seconds up to 1e7, got ",
                        quantize.watchdog);
    }
    if (loftq_cmd || command == "export") {
        require_one_of("adapter-dtype", exp.adapter_dtype, {"float32", "bfloat16", "float16"});
        if (exp.max_shard_size < 1024)
            LOFTQ_THROW(ConfigError, "option --max-shard-size: must be at least 1024 bytes");
    }
    if (command == "merge") {
        require_path("base", merge.base_dir);
        require_path("adapter", merge.adapter_dir);
        require_path("output", exp.output_dir);
        require_one_of("to", merge.to, {"bf16", "fp16", "bnb4", "loftq"});
        require_one_of("base-load", merge.base_load, {"auto", "bnb4", "nf4", "fp4", "as-stored"});
        if (merge.base_double_quant && merge.base_load != "nf4" && merge.base_load != "fp4")
            LOFTQ_THROW(ConfigError, "option --base-double-quant: only with --base-load nf4 or fp4");
    }
    if (command == "synth") {
        preset_model_config(synth.preset);  // ConfigError (--preset) naming the presets for any other name
        if (synth.layers < 0) LOFTQ_THROW(ConfigError, "option --layers: must be >= 0");
        if (synth.max_shard_size < 1024)
            LOFTQ_THROW(ConfigError, "option --max-shard-size: must be at least 1024 bytes");
    }
}

std::string error_line(const std::exception& e) {
    const auto* c = dynamic_cast<const ConfigError*>(&e);
    if (c == nullptr || c->setting().empty()) return e.what();
    // Every setting key is the name of the option that carries it.
    return cat("option --", c->setting(), ": ", e.what());
}

}  // namespace loftq
