#include "io/export_format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "core/error.hpp"
#include "quant/format.hpp"
#include "quant/format_tables.hpp"
#include "quant/quantize_ref.hpp"

namespace loftq {
namespace {

constexpr const char* kAdapterPrefix = "base_model.model.";
constexpr const char* kWeightSuffix = ".weight";

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A JSON number that prints as an integer when the value is one (lora_alpha 16, not 16.0).
nlohmann::json plain_number(double v) {
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15) return static_cast<int64_t>(v);
    return v;
}

}  // namespace

std::string module_path(const std::string& tensor) {
    if (!ends_with(tensor, kWeightSuffix) || tensor.size() == std::string(kWeightSuffix).size())
        LOFTQ_THROW(InputError, "tensor '", tensor, "': a LoRA target must be a '<module>.weight'");
    return tensor.substr(0, tensor.size() - std::string(kWeightSuffix).size());
}

std::string module_name(const std::string& tensor) {
    const std::string path = module_path(tensor);
    const size_t dot = path.find_last_of('.');
    return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string lora_a_key(const std::string& tensor) { return kAdapterPrefix + module_path(tensor) + ".lora_A.weight"; }
std::string lora_b_key(const std::string& tensor) { return kAdapterPrefix + module_path(tensor) + ".lora_B.weight"; }

std::string tensor_of_lora_key(const std::string& key, char& which) {
    const std::string prefix = kAdapterPrefix;
    if (key.compare(0, prefix.size(), prefix) != 0) return "";
    for (const char w : {'A', 'B'}) {
        const std::string tail = std::string(".lora_") + w + ".weight";
        if (ends_with(key, tail) && key.size() > prefix.size() + tail.size()) {
            which = w;
            return key.substr(prefix.size(), key.size() - prefix.size() - tail.size()) + kWeightSuffix;
        }
    }
    return "";
}

DType torch_dtype_to_dtype(const std::string& torch_name, const std::string& what) {
    if (torch_name == "bfloat16") return DType::BF16;
    if (torch_name == "float16") return DType::F16;
    if (torch_name == "float32") return DType::F32;
    LOFTQ_THROW(InputError, what, ": dtype '", torch_name, "' is not one of bfloat16, float16, float32");
}

std::string dtype_to_torch_name(DType t) {
    switch (t) {
        case DType::BF16: return "bfloat16";
        case DType::F16: return "float16";
        case DType::F32: return "float32";
        default: LOFTQ_THROW(Error, "dtype ", dtype_name(t), " has no torch float name");
    }
}

DType backbone_dtype(Backbone b) {
    switch (b) {
        case Backbone::BF16: return DType::BF16;
        case Backbone::FP16: return DType::F16;
        case Backbone::FP32: return DType::F32;
        case Backbone::BNB4:
        case Backbone::INT8: break;
    }
    LOFTQ_THROW(Error, "backbone ", backbone_name(b), " has no single float dtype");
}

nlohmann::json adapter_config_json(const AdapterSettings& s) {
    LOFTQ_CHECK(!s.module_ranks.empty(), "adapter_config_json: no target modules");
    std::map<int64_t, int> count;
    for (const auto& [path, r] : s.module_ranks) ++count[r];
    int64_t r = 0;
    int best = 0;
    for (const auto& [rank, n] : count)
        if (n > best) r = rank, best = n;  // map order: the smallest rank wins a tie
    nlohmann::json rank_pattern = nlohmann::json::object();
    std::set<std::string> modules;
    for (const auto& [path, rank] : s.module_ranks) {
        const size_t dot = path.find_last_of('.');
        modules.insert(dot == std::string::npos ? path : path.substr(dot + 1));
        if (rank != r) rank_pattern[path] = rank;
    }
    nlohmann::json j;
    j["peft_type"] = "LORA";
    j["task_type"] = "CAUSAL_LM";
    j["base_model_name_or_path"] = s.base_model;
    j["r"] = r;
    j["lora_alpha"] = plain_number(s.lora_alpha);
    j["lora_dropout"] = 0.0;
    j["target_modules"] = std::vector<std::string>(modules.begin(), modules.end());
    j["init_lora_weights"] = true;
    j["bias"] = "none";
    j["fan_in_fan_out"] = false;
    j["inference_mode"] = true;
    j["modules_to_save"] = nullptr;
    j["use_rslora"] = s.rslora;
    j["rank_pattern"] = rank_pattern;
    j["alpha_pattern"] = nlohmann::json::object();
    j["loftq_config"] = {{"loftq_bits", plain_number(s.bits)}, {"loftq_iter", s.iters}};
    return j;
}

std::string bnb4_quant_state_json(const Bnb4State& s) {
    std::string out = cat("{\"quant_type\": \"", s.quant_type, "\", \"blocksize\": ", s.blocksize,
                          ", \"dtype\": \"", s.dtype, "\", \"shape\": [", s.rows, ", ", s.cols, "]");
    if (s.nested) {
        char offset[32];
        std::snprintf(offset, sizeof offset, "%.8e", static_cast<double>(s.nested_offset));
        out += cat(", \"nested_blocksize\": ", DoubleQuant::kBlocksize, ", \"nested_dtype\": \"float32\", ",
                   "\"nested_offset\": ", offset);
    }
    return out + "}";
}

std::vector<TensorSpec> bnb4_tensor_specs(const MatrixLayout& m, size_t state_json_bytes) {
    const std::string p = m.name;
    std::vector<TensorSpec> specs;
    specs.push_back({p, DType::U8, {(m.rows * m.cols + 1) / 2, 1}});
    specs.push_back({p + ".absmax", m.double_quant ? DType::U8 : DType::F32, {m.nblocks}});
    specs.push_back({p + ".quant_map", DType::F32, {16}});
    if (m.double_quant) {
        specs.push_back({p + ".nested_absmax", DType::F32, {block_count(m.nblocks, DoubleQuant::kBlocksize)}});
        specs.push_back({p + ".nested_quant_map", DType::F32, {256}});
    }
    specs.push_back({p + ".quant_state.bitsandbytes__" + bnb4_quant_type(*find_format(m.format)), DType::U8,
                     {static_cast<int64_t>(state_json_bytes)}});
    return specs;
}

nlohmann::json bnb4_quantization_config(const std::string& quant_type, bool double_quant,
                                        const std::string& compute_dtype) {
    return {{"quant_method", "bitsandbytes"},
            {"load_in_4bit", true},
            {"load_in_8bit", false},
            {"bnb_4bit_quant_type", quant_type},
            {"bnb_4bit_use_double_quant", double_quant},
            {"bnb_4bit_compute_dtype", compute_dtype},
            {"bnb_4bit_quant_storage", "uint8"},
            {"llm_int8_threshold", 6.0},
            {"llm_int8_skip_modules", nullptr},
            {"llm_int8_has_fp16_weight", false},
            {"llm_int8_enable_fp32_cpu_offload", false},
            {"_load_in_4bit", true},
            {"_load_in_8bit", false}};
}

std::string bnb4_quant_type(const QuantFormat& f) { return f.loads_through_nf4() ? "nf4" : f.name; }

void nf2_codes_as_nf4(const uint8_t* nf2_packed, int64_t n, uint8_t* nf4_packed) {
    const QuantFormat& nf2 = *find_format("nf2");
    const QuantFormat& nf4 = *find_format("nf4");
    std::vector<uint8_t> codes(static_cast<size_t>(n));
    unpack_codes(nf2, nf2_packed, n, codes.data());
    for (auto& c : codes) c = tables::kNF4CodeOfNF2[c];
    pack_codes(nf4, codes.data(), n, 0, nf4_packed);
}

std::string int8_scb_key(const std::string& tensor) { return module_path(tensor) + ".SCB"; }
std::string int8_weight_format_key(const std::string& tensor) { return module_path(tensor) + ".weight_format"; }

std::vector<TensorSpec> int8_tensor_specs(const MatrixLayout& m) {
    return {{m.name, DType::I8, {m.rows, m.cols}},
            {int8_scb_key(m.name), DType::F32, {m.rows}},
            {int8_weight_format_key(m.name), DType::U8, {}}};
}

nlohmann::json int8_quantization_config() {
    return {{"quant_method", "bitsandbytes"},
            {"load_in_4bit", false},
            {"load_in_8bit", true},
            {"llm_int8_threshold", 6.0},
            {"llm_int8_skip_modules", nullptr},
            {"llm_int8_has_fp16_weight", false},
            {"llm_int8_enable_fp32_cpu_offload", false},
            {"bnb_4bit_quant_type", "fp4"},
            {"bnb_4bit_use_double_quant", false},
            {"bnb_4bit_compute_dtype", "float32"},
            {"bnb_4bit_quant_storage", "uint8"},
            {"_load_in_4bit", false},
            {"_load_in_8bit", true}};
}

Backbone resolve_export_backbone(std::optional<Backbone> requested, Backbone run_bb,
                                 const RunLayout& layout, const std::string& work_path) {
    const Backbone bb = requested.value_or(run_bb);
    const std::string rerun = cat("; re-run the quantization for a ", backbone_name(bb),
                                  " backbone to optimise for that form");
    for (const auto& m : layout) {
        const QuantFormat* f = find_format(m.format);
        if (f == nullptr) LOFTQ_THROW(InputError, "run file '", work_path, "': matrix ", m.name, " has unknown format '", m.format, "'");
        if (bb == Backbone::BNB4 && !f->is_bnb() && !f->loads_through_nf4())
            LOFTQ_THROW_SETTING("backbone", "bitsandbytes cannot hold ", m.format, " (matrix ", m.name,
                                ") pre-quantized in a bnb4 backbone; export a bf16, fp16 or fp32 backbone "
                                "(dequantized values)");
        if (bb == Backbone::INT8 && !f->is_row_wise())
            LOFTQ_THROW_SETTING("backbone", "an int8 backbone holds only LLM.int8 matrices (--quant int8), not ",
                                m.format, " (matrix ", m.name, ")");
        if (bb != Backbone::BNB4 && (f->is_bnb() || f->loads_through_nf4()) && m.blocksize != 64)
            LOFTQ_THROW_SETTING("backbone", backbone_name(bb), " backbone: the run used blocksize ", m.blocksize,
                                " but transformers re-quantizes a ", backbone_name(bb),
                                " backbone at blocksize 64; export a bnb4 backbone (stores the blocksize)");
        if (bb != Backbone::BNB4 && m.double_quant)
            LOFTQ_THROW_SETTING("backbone", backbone_name(bb), " backbone: run file '", work_path,
                                "' keeps only the double-quantized absmax, not the values a ", backbone_name(bb),
                                " backbone stores; export a bnb4 backbone (exact)");
    }
    if (bb == run_bb) return bb;
    if (bb == Backbone::BNB4) return bb;  // every format is nf4/fp4/nf2 here (checked above)
    // Every format is int8 here; the run's codes and SCB are what its backbone loads as.
    if (bb == Backbone::INT8) return bb;
    LOFTQ_THROW_SETTING("backbone", backbone_name(bb), " backbone: run file '", work_path, "' was optimised for a ",
                        backbone_name(run_bb), " backbone, and a ", backbone_name(bb), " backbone loads a different Q",
                        rerun);
}

}  // namespace loftq
