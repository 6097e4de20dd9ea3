#include "runtime/merge_inputs.hpp"

#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/hash64.hpp"
#include "io/checkpoint.hpp"
#include "io/export_format.hpp"
#include "io/held_weight.hpp"
#include "io/json_strict.hpp"
#include "io/peft_adapter.hpp"
#include "io/runfile.hpp"
#include "io/safetensors.hpp"
#include "plan/model_config.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

// The decoder linear weights of the architecture (what all-linear and BitsAndBytesConfig touch).
std::set<std::string> decoder_linear_weights(const ModelConfig& mc) {
    std::set<std::string> out;
    for (const auto& t : expected_tensors(mc)) {
        if (t.name.size() < 7 || t.name.compare(t.name.size() - 7, 7, ".weight") != 0) continue;
        for (const auto& m : linear_module_names())
            if (module_name(t.name) == m) out.insert(t.name);
    }
    return out;
}

// How the base holds its weights: --base-load resolved against config.json and report.json.
void resolve_base_load(const MergeOptions& opt, const nlohmann::json& config, MergePlan& plan) {
    const std::string cfg_path = opt.base_dir + "/config.json";
    const bool bnb4_folder = config.contains("quantization_config");
    if (bnb4_folder) {
        const auto& qc = config["quantization_config"];
        if (!qc.is_object() || qc.value("quant_method", std::string()) != "bitsandbytes" ||
            !qc.value("load_in_4bit", false))
            LOFTQ_THROW(InputError, cfg_path, ": quantization_config is not bitsandbytes 4-bit (the only quantized "
                        "base loftq merge reads)");
        if (opt.base_load != "auto" && opt.base_load != "bnb4")
            LOFTQ_THROW_SETTING("base-load", "'", opt.base_load, "' does not fit ", opt.base_dir,
                                ": it is a bitsandbytes 4-bit folder (use auto or bnb4)");
        plan.base_load = BaseLoad::bnb4;
        return;
    }
    if (opt.base_load == "bnb4")
        LOFTQ_THROW_SETTING("base-load", "bnb4: ", cfg_path, " has no bitsandbytes quantization_config");
    if (opt.base_load == "nf4" || opt.base_load == "fp4") {
        plan.base_load = opt.base_load == "nf4" ? BaseLoad::nf4 : BaseLoad::fp4;
        plan.load_double_quant = opt.base_double_quant;
        return;
    }
    plan.base_load = BaseLoad::as_stored;
    if (opt.base_load == "as-stored") return;
    // auto: a `loftq run` float backbone says in report.json how it loads.
    const std::string report_path = opt.base_dir + "/report.json";
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(report_path, ec))) return;
    const nlohmann::json report = read_json_file(report_path, "file");
    const nlohmann::json load = report.is_object() ? report.value("load", nlohmann::json()) : nlohmann::json();
    if (!load.is_object() || !load.value("requantize", false)) return;
    const nlohmann::json qt = load.value("bnb_4bit_quant_type", nlohmann::json());
    const nlohmann::json dq = load.value("bnb_4bit_use_double_quant", nlohmann::json(false));
    if (!qt.is_string() || (qt != "nf4" && qt != "fp4") || !dq.is_boolean())
        LOFTQ_THROW(InputError, report_path, ": load block says requantize but its bnb_4bit_quant_type / "
                    "bnb_4bit_use_double_quant are not nf4|fp4 / true|false");
    plan.base_load = qt == "nf4" ? BaseLoad::nf4 : BaseLoad::fp4;
    plan.load_double_quant = dq.get<bool>();
}

uint64_t file_fingerprint(const std::string& path, uint64_t seed) {
    const SafetensorsFile f(path);
    uint64_t h = seed;
    for (const auto& t : f.tensors()) h = hash_bytes(f.raw(t.name), t.nbytes(), hash_bytes(t.name.data(), t.name.size(), h));
    return h;
}

}  // namespace

MergePlan plan_merge(const MergeOptions& opt) {
    MergePlan plan;
    plan.to = opt.to;
    plan.max_shard_size = opt.max_shard_size;
    const std::string cfg_path = opt.base_dir + "/config.json";
    const nlohmann::json config = read_json_file(cfg_path, "file");
    const ModelConfig mc = read_model_config(opt.base_dir);
    resolve_base_load(opt, config, plan);
    const std::string dtype_key = config.contains("torch_dtype") ? "torch_dtype" : "dtype";
    plan.load_dtype = torch_dtype_to_dtype(config.value(dtype_key, std::string("float32")), cfg_path + " " + dtype_key);
    const DType out_dtype = opt.to == "fp16" ? DType::F16 : DType::BF16;  // --to bnb4: unused

    const Checkpoint ck(opt.base_dir);
    ck.validate_all();
    const PeftAdapter adapter = read_peft_adapter(opt.adapter_dir);
    const SafetensorsFile adapter_file(adapter.weights_path);
    const std::set<std::string> linear = decoder_linear_weights(mc);
    std::map<std::string, const LoraModule*> modules;
    for (const auto& m : adapter.modules) modules[m.tensor] = &m;

    // Every adapter module a 2-D weight of the base, with factors of its shape.
    for (const auto& m : adapter.modules) {
        const bool bnb4 = plan.base_load == BaseLoad::bnb4 && is_bnb4_weight(ck, m.tensor);
        if (!ck.contains(m.tensor))
            LOFTQ_THROW(InputError, adapter.weights_path, ": module ", module_path(m.tensor), " has no weight ",
                        m.tensor, " in the base ", opt.base_dir);
        std::vector<int64_t> shape;
        if (bnb4) {
            const Bnb4Stored st = read_bnb4_state(ck, m.tensor);
            shape = {st.rows, st.cols};
        } else {
            const TensorInfo& t = ck.info(m.tensor);
            if (t.shape.size() != 2 || !is_float_weight_dtype(t.dtype))
                LOFTQ_THROW(InputError, opt.base_dir, ": tensor ", m.tensor, " (adapted by ", adapter.weights_path,
                            ") is ", dtype_name(t.dtype), " ", shape_string(t.shape), ", not a 2-D float weight");
            shape = t.shape;
        }
        const TensorInfo& ai = adapter_file.info(lora_a_key(m.tensor));
        const TensorInfo& bi = adapter_file.info(lora_b_key(m.tensor));
        if (ai.shape != std::vector<int64_t>{m.r, shape[1]} || bi.shape != std::vector<int64_t>{shape[0], m.r})
            LOFTQ_THROW(InputError, adapter.weights_path, ": module ", module_path(m.tensor), " lora_A is ",
                        shape_string(ai.shape), ", lora_B is ", shape_string(bi.shape), "; the base weight is ",
                        shape[0], "x", shape[1], " so r = ", m.r, " needs [", m.r, ", ", shape[1], "] and [",
                        shape[0], ", ", m.r, "]");
        if (!adapter.target_modules.is_null() && !adapter.targets(module_path(m.tensor)))
            LOFTQ_THROW(InputError, adapter.weights_path, ": module ", module_path(m.tensor),
                        " is not selected by target_modules of ", adapter.config_path, " (PEFT would not load it)");
    }
    // Every module target_modules selects has its factors (unless the config narrows the
    // selection further in ways not modelled here: layers_to_transform, exclude_modules).
    const nlohmann::json acfg = read_json_file(adapter.config_path, "file");
    const bool narrowed = !acfg.value("layers_to_transform", nlohmann::json()).is_null() ||
                          !acfg.value("exclude_modules", nlohmann::json()).is_null();
    if (!narrowed && !adapter.target_modules.is_null())
        for (const auto& name : linear)
            if (ck.contains(name) && adapter.targets(module_path(name)) && !modules.count(name))
                LOFTQ_THROW(InputError, adapter.weights_path, ": no lora_A / lora_B for module ", module_path(name),
                            ", which target_modules of ", adapter.config_path, " selects");

    const bool to_bnb4 = opt.to == "bnb4";
    if (to_bnb4) {  // the base's 4-bit form, else what BitsAndBytesConfig(load_in_4bit=True) gives
        plan.out_quant_type = "nf4";
        if (plan.base_load == BaseLoad::nf4 || plan.base_load == BaseLoad::fp4) {
            plan.out_quant_type = base_load_name(plan.base_load);
            plan.out_double_quant = plan.load_double_quant;
        }
        for (const auto& name : ck.names())
            if (plan.base_load == BaseLoad::bnb4 && is_bnb4_weight(ck, name)) {
                const Bnb4Stored st = read_bnb4_state(ck, name);
                plan.out_quant_type = st.quant_type;
                plan.out_double_quant = st.nested;
                plan.load_dtype = st.dtype;
                break;
            }
    }
    // The 4-bit weight "P.weight" a component "P.weight.absmax" (...) belongs to; "" for others.
    const auto owner_of = [&](const std::string& name) -> std::string {
        if (plan.base_load != BaseLoad::bnb4 || !is_bnb4_component(ck, name)) return {};
        const size_t cut = name.find(".weight.");
        return cut == std::string::npos ? std::string() : name.substr(0, cut + 7);
    };
    for (const auto& name : ck.names()) {
        const std::string owner = owner_of(name);
        if (plan.base_load == BaseLoad::bnb4 && is_bnb4_component(ck, name)) {
            // Kept as stored only beside their weight in a --to bnb4 output the adapter leaves alone.
            if (!to_bnb4 || owner.empty() || modules.count(owner)) continue;
        }
        MergeItem it;
        it.tensor = name;
        const bool bnb4 = plan.base_load == BaseLoad::bnb4 && is_bnb4_weight(ck, name);
        const TensorInfo& t = ck.info(name);
        it.in_dtype = t.dtype;
        it.shape = t.shape;
        if (bnb4) {
            const Bnb4Stored st = read_bnb4_state(ck, name);
            it.shape = {st.rows, st.cols};
        }
        const auto m = modules.find(name);
        const bool requantized = (plan.base_load == BaseLoad::nf4 || plan.base_load == BaseLoad::fp4) && linear.count(name);
        if (requantized && (t.shape.size() != 2 || !is_float_weight_dtype(t.dtype)))
            LOFTQ_THROW(InputError, opt.base_dir, ": linear weight ", name, " is ", dtype_name(t.dtype), " ",
                        shape_string(t.shape), "; --base-load ", base_load_name(plan.base_load),
                        " needs a 2-D float weight");
        it.four_bit = bnb4 || requantized;
        if (m != modules.end()) {
            it.kind = MergeItem::Kind::merged;
            it.r = m->second->r;
            it.scaling = m->second->scaling;
        } else if ((bnb4 && !to_bnb4) || requantized || (to_bnb4 && linear.count(name) && !bnb4)) {
            it.kind = MergeItem::Kind::held;
        } else {
            it.kind = MergeItem::Kind::copy;
        }
        it.out_bnb4 = to_bnb4 && it.kind != MergeItem::Kind::copy && (it.four_bit || linear.count(name));
        if (it.out_bnb4) {
            MatrixLayout ml;
            ml.name = name;
            ml.rows = it.shape[0];
            ml.cols = it.shape[1];
            ml.format = plan.out_quant_type;
            ml.blocksize = 64;
            ml.nblocks = (ml.rows * ml.cols + 63) / 64;
            ml.double_quant = plan.out_double_quant;
            for (const auto& spec : bnb4_tensor_specs(ml, merge_bnb4_state(plan, it, 0.0f).size()))
                it.outputs.push_back({spec.name, spec.dtype, spec.shape, spec.name != name});
        } else if (it.kind == MergeItem::Kind::copy) {
            it.outputs.push_back({name, t.dtype, t.shape, !owner.empty() && owner != name});
        } else {
            it.outputs.push_back({name, out_dtype, it.shape, false});
        }
        plan.items.push_back(std::move(it));
    }
    // A resume must see the same inputs: the adapter's bytes and the base's tensor index.
    uint64_t h = file_fingerprint(adapter.weights_path, 0x6d65726765ULL);
    for (const auto& name : ck.names()) {
        const TensorInfo& t = ck.info(name);
        h = hash_bytes(name.data(), name.size(), h);
        const uint64_t dims[3] = {static_cast<uint64_t>(t.dtype), t.nbytes(), t.begin};
        h = hash_bytes(dims, sizeof dims, h);
    }
    plan.inputs_fingerprint = h;
    place_items(plan);
    return plan;
}

}  // namespace loftq
