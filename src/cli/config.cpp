#include "cli/config.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "core/error.hpp"

namespace loftq {
namespace {

void require_one_of(const std::string& option, const std::string& value,
                    std::initializer_list<const char*> allowed) {
    for (const char* a : allowed)
        if (value == a) return;
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : "|") + std::string(a);
    LOFTQ_THROW(ConfigError, "option --", option, ": '", value, "' is not one of ", list);
}

void require_path(const std::string& option, const std::string& value) {
    if (value.empty()) LOFTQ_THROW(ConfigError, "option --", option, " is required");
}

bool is_power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

}  // namespace

void Config::validate() const {
    const bool loftq_cmd = command == "quantize" || command == "run";
    if (command == "quantize" || command == "run" || command == "export" || command == "verify")
        require_path("model", model_dir);
    if (command == "quantize" || command == "export") require_path("work", work_path);
    if (command == "export" || command == "run" || command == "verify" || command == "synth")
        require_path("output", output_dir);
    if (command == "inspect" && inspect_path.empty())
        LOFTQ_THROW(ConfigError, "loftq inspect: missing PATH (a .safetensors file or a model folder)");

    if (loftq_cmd) {
        require_one_of("quant", quant, {"nf", "fp4", "uniform"});
        const bool mixed_ok = bits == 2.25 || bits == 2.5 || bits == 3;
        if (!(bits == 2 || bits == 4 || bits == 8 || mixed_ok))
            LOFTQ_THROW(ConfigError, "option --bits: ", bits, " is not one of 2, 4, 8, 2.25, 2.5, 3");
        if (quant == "fp4" && bits != 4)
            LOFTQ_THROW(ConfigError, "option --bits: --quant fp4 needs --bits 4, got ", bits);
        if (mixed_ok && quant != "nf")
            LOFTQ_THROW(ConfigError, "option --bits: mixed precision ", bits, " needs --quant nf");
        if (!is_power_of_two(blocksize) || blocksize < 32 || blocksize > 4096)
            LOFTQ_THROW(ConfigError, "option --blocksize: ", blocksize,
                        " is not a power of two in 32..4096");
        if (rank < 1) LOFTQ_THROW(ConfigError, "option --rank: must be >= 1, got ", rank);
        if (iters < 1) LOFTQ_THROW(ConfigError, "option --iters: must be >= 1, got ", iters);
        require_one_of("svd", svd, {"auto", "exact", "randomized"});
        if (oversample < 0) LOFTQ_THROW(ConfigError, "option --oversample: must be >= 0");
        if (power_iters < 0) LOFTQ_THROW(ConfigError, "option --power-iters: must be >= 0");
        if (!(lora_alpha > 0) || !std::isfinite(lora_alpha))
            LOFTQ_THROW(ConfigError, "option --lora-alpha: must be a positive number");
        require_one_of("io", io, {"direct", "scatter"});
        require_one_of("device", device, {"auto", "cpu", "cuda"});
        for (const auto& t : targets)
            if (t.empty() || t.find_first_of(" \t/") != std::string::npos)
                LOFTQ_THROW(ConfigError, "option --targets: bad module name '", t, "'");
    }
    if (loftq_cmd || command == "export") {
        if (!(command == "export" && backbone.empty()))  // export: empty = the run file's own
            require_one_of("backbone", backbone, {"bf16", "fp16", "fp32", "bnb4"});
        require_one_of("adapter-dtype", adapter_dtype, {"float32", "bfloat16", "float16"});
        if (max_shard_size < 1024)
            LOFTQ_THROW(ConfigError, "option --max-shard-size: must be at least 1024 bytes");
    }
    if (command == "synth") {
        require_one_of("preset", preset, {"tiny", "llama2-7b", "llama2-13b", "llama2-70b", "codellama-70b"});
        require_one_of("dtype", synth_dtype, {"bf16", "fp16", "fp32"});
        if (layers < 0) LOFTQ_THROW(ConfigError, "option --layers: must be >= 0");
        if (max_shard_size < 1024)
            LOFTQ_THROW(ConfigError, "option --max-shard-size: must be at least 1024 bytes");
    }
}

}  // namespace loftq
