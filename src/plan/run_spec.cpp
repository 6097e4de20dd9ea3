#include "plan/run_spec.hpp"

#include <cmath>
#include <initializer_list>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/json_strict.hpp"
#include "quant/format.hpp"

namespace loftq {
namespace {

using json = nlohmann::json;

void require_one_of(const char* setting, const std::string& value, std::initializer_list<const char*> allowed) {
    for (const char* a : allowed)
        if (value == a) return;
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : "|") + std::string(a);
    LOFTQ_THROW_SETTING(setting, "'", value, "' is not one of ", list);
}

// The keys of to_json, in one place: from_json refuses any other key and requires each.
const std::set<std::string>& spec_keys() {
    static const std::set<std::string> keys = {
        "bits", "quant", "blocksize", "rank", "iters", "targets", "svd", "oversample", "power-iters",
        "warm-power-iters", "power-scheme", "seed",
        "lora-alpha", "rslora", "double-quant", "keep-best", "scale-compensation", "backbone",
        "split-threshold"};
    return keys;
}

}  // namespace

void RunSpec::validate() const {
    require_one_of("quant", quant, {"nf", "fp4", "uniform", "int8"});
    const bool mixed_ok = bits == 2.25 || bits == 2.5 || bits == 3;
    if (!(bits == 2 || bits == 4 || bits == 8 || mixed_ok))
        LOFTQ_THROW_SETTING("bits", bits, " is not one of 2, 4, 8, 2.25, 2.5, 3");
    if (quant == "fp4" && bits != 4) LOFTQ_THROW_SETTING("bits", "the fp4 quantizer needs 4 bits, got ", bits);
    if (quant == "int8" && bits != 8) LOFTQ_THROW_SETTING("bits", "the int8 quantizer needs 8 bits, got ", bits);
    if (loftq.backbone == Backbone::INT8 && quant != "int8")
        LOFTQ_THROW_SETTING("backbone", "an int8 backbone holds LLM.int8 matrices only; use it with --quant int8");
    if (loftq.backbone == Backbone::BNB4 && quant == "int8")
        LOFTQ_THROW_SETTING("backbone", "a bnb4 backbone holds 4-bit matrices; with --quant int8 use int8, bf16, "
                            "fp16 or fp32");
    if (quant == "int8" && loftq.quant.double_quant)
        LOFTQ_THROW_SETTING("double-quant", "double quantization is a 4-bit option; --quant int8 has none");
    if (mixed_ok && quant != "nf") LOFTQ_THROW_SETTING("bits", "mixed precision ", bits, " needs the nf quantizer");
    check_blocksize(loftq.quant.blocksize);
    const SvdOptions& s = loftq.svd_options;
    // Upper bounds: far above any useful value, low enough that sizes computed from them
    // (rank + oversample, sketch widths, loop counts) neither overflow nor run for ever.
    if (s.rank < 1 || s.rank > kMaxRank) LOFTQ_THROW_SETTING("rank", "must be in 1..", kMaxRank, ", got ", s.rank);
    if (loftq.iters < 1 || loftq.iters > kMaxIters)
        LOFTQ_THROW_SETTING("iters", "must be in 1..", kMaxIters, ", got ", loftq.iters);
    if (s.oversample < 0 || s.oversample > kMaxOversample)
        LOFTQ_THROW_SETTING("oversample", "must be in 0..", kMaxOversample, ", got ", s.oversample);
    if (s.power_iters < 0 || s.power_iters > kMaxPowerIters)
        LOFTQ_THROW_SETTING("power-iters", "must be in 0..", kMaxPowerIters, ", got ", s.power_iters);
    if (s.warm_power_iters < 0 || s.warm_power_iters > kMaxPowerIters)
        LOFTQ_THROW_SETTING("warm-power-iters", "must be in 0..", kMaxPowerIters, ", got ", s.warm_power_iters);
    if (!(loftq.lora_alpha > 0) || !std::isfinite(loftq.lora_alpha))
        LOFTQ_THROW_SETTING("lora-alpha", "must be a positive number");
    // The stored factors are scaled by 1/sqrt(scaling) and the loaded error multiplies by the
    // scaling: outside this range float32 factors overflow or underflow to Inf / 0.
    const double scaling = loftq.lora_scaling();
    if (!(scaling >= kMinLoraScaling && scaling <= kMaxLoraScaling))
        LOFTQ_THROW_SETTING("lora-alpha", loftq.lora_alpha, " gives the LoRA scaling ", scaling,
                            loftq.rslora ? " (alpha/sqrt(r))" : " (alpha/r)", ", outside ", kMinLoraScaling,
                            "..", kMaxLoraScaling);
    for (const auto& t : targets)
        if (t.empty() || t.find_first_of(" \t/") != std::string::npos)
            LOFTQ_THROW_SETTING("targets", "bad module name '", t, "'");
}

int RunSpec::blocksize_for(int matrix_bits, int64_t cols) const {
    return matrix_blocksize(select_format(quant, matrix_bits), loftq.quant.blocksize, cols);
}

LoftqOptions RunSpec::for_matrix(const std::string& tensor, int matrix_bits, int64_t cols) const {
    LoftqOptions o = loftq;
    o.quant.format = &select_format(quant, matrix_bits);
    o.quant.blocksize = blocksize_for(matrix_bits, cols);
    o.svd_options.name = tensor;
    return o;
}

std::string RunSpec::to_json() const {
    const SvdOptions& s = loftq.svd_options;
    json j;
    j["bits"] = bits;
    j["quant"] = quant;
    j["blocksize"] = loftq.quant.blocksize;
    j["rank"] = s.rank;
    j["iters"] = loftq.iters;
    j["targets"] = targets.empty() ? json("all-linear") : json(targets);
    j["svd"] = svd_choice_name(loftq.svd);
    j["oversample"] = s.oversample;
    j["power-iters"] = s.power_iters;
    j["warm-power-iters"] = s.warm_power_iters;
    j["power-scheme"] = power_scheme_name(s.scheme);
    j["seed"] = s.seed;
    j["lora-alpha"] = loftq.lora_alpha;
    j["rslora"] = loftq.rslora;
    j["double-quant"] = loftq.quant.double_quant;
    j["keep-best"] = loftq.keep_best;
    j["scale-compensation"] = loftq.compensate_scaling;
    j["backbone"] = backbone_name(loftq.backbone);
    j["split-threshold"] = split_threshold;
    return j.dump();
}

RunSpec RunSpec::from_json(const std::string& text, const std::string& what) {
    const json j = parse_strict_json(what, text.data(), text.size(), "settings", "setting");
    if (!j.is_object()) LOFTQ_THROW(InputError, what, ": settings are not a JSON object");
    for (auto it = j.begin(); it != j.end(); ++it)
        if (!spec_keys().count(it.key())) LOFTQ_THROW(InputError, what, ": unknown setting '", it.key(), "'");
    const auto at = [&](const char* key) -> const json& {
        if (!j.contains(key)) LOFTQ_THROW(InputError, what, ": setting '", key, "' is missing");
        return j[key];
    };
    RunSpec r;
    SvdOptions& s = r.loftq.svd_options;
    try {
        r.bits = at("bits").get<double>();
        r.quant = at("quant").get<std::string>();
        r.loftq.quant.blocksize = at("blocksize").get<int>();
        s.rank = at("rank").get<int>();
        r.loftq.iters = at("iters").get<int>();
        const json& t = at("targets");
        if (!(t.is_string() && t == "all-linear")) r.targets = t.get<std::vector<std::string>>();
        r.loftq.svd = parse_svd_choice(at("svd").get<std::string>());
        s.oversample = at("oversample").get<int>();
        s.power_iters = at("power-iters").get<int>();
        // Run files written before the setting existed ran warm iterations with 1.
        s.warm_power_iters = j.contains("warm-power-iters") ? j["warm-power-iters"].get<int>() : 1;
        // ... and kept only the last block of a fresh sketch.
        s.scheme = j.contains("power-scheme") ? parse_power_scheme(j["power-scheme"].get<std::string>())
                                              : PowerScheme::subspace;
        s.seed = at("seed").get<uint64_t>();
        r.loftq.lora_alpha = at("lora-alpha").get<double>();
        r.loftq.rslora = at("rslora").get<bool>();
        r.loftq.quant.double_quant = at("double-quant").get<bool>();
        r.loftq.keep_best = at("keep-best").get<bool>();
        r.loftq.compensate_scaling = at("scale-compensation").get<bool>();
        r.loftq.backbone = parse_backbone(at("backbone").get<std::string>());
        r.split_threshold = at("split-threshold").get<uint64_t>();
        r.validate();
    } catch (const json::exception& e) {
        LOFTQ_THROW(InputError, what, ": a setting has the wrong type (", e.what(), ")");
    } catch (const ConfigError& e) {
        LOFTQ_THROW(InputError, what, ": setting '", e.setting(), "': ", e.what());
    }
    return r;
}

}  // namespace loftq
