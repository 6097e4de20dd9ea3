#include "plan/model_config.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "io/json_strict.hpp"

namespace loftq {
namespace {

using json = nlohmann::json;

const char* kind_of(const json& v) {
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "a boolean";
    if (v.is_number_integer()) return "an integer";
    if (v.is_number_float()) return "a float";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    return "an object";
}

// Field readers: absent (or null where allowed) gives the default; a wrong type or range is an
// InputError naming the file and the field.
struct FieldReader {
    const json& doc;
    const std::string& file;

    [[noreturn]] void bad(const char* field, const std::string& why) const {
        LOFTQ_THROW(InputError, file, ": field \"", field, "\" ", why);
    }
    const json* find(const char* field) const {
        auto it = doc.find(field);
        return it == doc.end() ? nullptr : &*it;
    }
    int64_t positive_int(const char* field, std::optional<int64_t> fallback,
                         int64_t max = int64_t{1} << 40) const {
        const json* v = find(field);
        if (!v || v->is_null()) {
            if (!fallback) bad(field, "is missing");
            return *fallback;
        }
        if (!v->is_number_integer()) bad(field, cat("must be a positive integer, got ", kind_of(*v)));
        const int64_t x = v->get<int64_t>();
        if (x <= 0) bad(field, cat("must be a positive integer, got ", x));
        if (x > max) bad(field, cat("is ", x, ", above the supported maximum ", max));
        return x;
    }
    // A dimension of a weight matrix (or a count that multiplies one).
    int64_t dimension(const char* field, std::optional<int64_t> fallback) const {
        return positive_int(field, fallback, kMaxModelDimension);
    }
    double positive_number(const char* field, double fallback) const {
        const json* v = find(field);
        if (!v || v->is_null()) return fallback;
        if (!v->is_number()) bad(field, cat("must be a number, got ", kind_of(*v)));
        const double x = v->get<double>();
        if (!(x > 0)) bad(field, cat("must be positive, got ", x));
        return x;
    }
    bool boolean(const char* field, bool fallback) const {
        const json* v = find(field);
        if (!v || v->is_null()) return fallback;
        if (!v->is_boolean()) bad(field, cat("must be true or false, got ", kind_of(*v)));
        return v->get<bool>();
    }
    std::string string(const char* field, std::optional<std::string> fallback) const {
        const json* v = find(field);
        if (!v || v->is_null()) {
            if (!fallback) bad(field, "is missing");
            return *fallback;
        }
        if (!v->is_string()) bad(field, cat("must be a string, got ", kind_of(*v)));
        return v->get<std::string>();
    }
    int64_t token_id(const char* field, int64_t fallback) const {
        const json* v = find(field);
        if (!v || v->is_null()) return fallback;
        if (v->is_array() && !v->empty() && (*v)[0].is_number_integer()) return (*v)[0].get<int64_t>();
        if (!v->is_number_integer()) bad(field, cat("must be an integer, got ", kind_of(*v)));
        return v->get<int64_t>();
    }
};

bool is_directory(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

ModelConfig parse_model_config(const json& doc, const std::string& file) {
    if (!doc.is_object()) LOFTQ_THROW(InputError, file, ": not a JSON object");
    const FieldReader f{doc, file};
    ModelConfig c;
    // Any model_type: the plan takes the layout from the checkpoint (plan/checkpoint_layout.hpp).
    c.model_type = f.string("model_type", std::nullopt);
    if (c.model_type.empty()) f.bad("model_type", "is empty");
    if (const json* a = f.find("architectures"); a && !a->is_null()) {
        if (!a->is_array()) f.bad("architectures", "must be a list of strings");
        for (const auto& s : *a) {
            if (!s.is_string()) f.bad("architectures", "must be a list of strings");
            c.architectures.push_back(s.get<std::string>());
        }
    }
    c.hidden_size = f.dimension("hidden_size", std::nullopt);
    c.intermediate_size = f.dimension("intermediate_size", 0);  // 0: absent (checked where a module needs it)
    c.num_hidden_layers = f.dimension("num_hidden_layers", std::nullopt);
    c.num_attention_heads = f.dimension("num_attention_heads", std::nullopt);
    c.num_key_value_heads = f.dimension("num_key_value_heads", c.num_attention_heads);
    if (c.num_attention_heads % c.num_key_value_heads != 0)
        f.bad("num_key_value_heads", cat(c.num_key_value_heads, " does not divide num_attention_heads ",
                                         c.num_attention_heads));
    if (!f.find("head_dim") || f.find("head_dim")->is_null()) {
        if (c.hidden_size % c.num_attention_heads != 0)
            f.bad("num_attention_heads", cat(c.num_attention_heads, " does not divide hidden_size ",
                                             c.hidden_size, " and head_dim is absent"));
        c.head_dim = c.hidden_size / c.num_attention_heads;
    } else {
        c.head_dim = f.dimension("head_dim", std::nullopt);
    }
    // Each factor is <= 2^20, so the products do not overflow; they are rows of q/k/v/o.
    if (c.q_rows() > kMaxModelDimension)
        f.bad("head_dim", cat("times num_attention_heads is ", c.q_rows(), ", above the supported maximum ",
                              kMaxModelDimension));
    c.vocab_size = f.positive_int("vocab_size", std::nullopt, kMaxVocabSize);
    for (const char* key : {"num_local_experts", "num_experts", "n_routed_experts"})
        if (const json* e = f.find(key); e && !e->is_null() && c.num_experts == 0)
            c.num_experts = f.dimension(key, std::nullopt);
    if (const json* e = f.find("num_experts_per_tok"); e && !e->is_null())
        c.num_experts_per_tok = f.dimension("num_experts_per_tok", std::nullopt);
    c.max_position_embeddings = f.positive_int("max_position_embeddings", c.max_position_embeddings);
    c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
    c.attention_bias = f.boolean("attention_bias", false);
    c.mlp_bias = f.boolean("mlp_bias", false);
    c.torch_dtype = f.string("torch_dtype", c.torch_dtype);
    if (c.torch_dtype != "float32" && c.torch_dtype != "float16" && c.torch_dtype != "bfloat16")
        f.bad("torch_dtype", cat("is \"", c.torch_dtype, "\"; supported: float32, float16, bfloat16"));
    c.rope_theta = f.positive_number("rope_theta", c.rope_theta);
    c.rms_norm_eps = f.positive_number("rms_norm_eps", c.rms_norm_eps);
    // Qwen2-family configs write 0 (or a window with use_sliding_window false): no window.
    if (const json* s = f.find("sliding_window"); s && !s->is_null()) {
        if (!s->is_number_integer()) f.bad("sliding_window", cat("must be an integer or null, got ", kind_of(*s)));
        if (s->get<int64_t>() > 0) c.sliding_window = s->get<int64_t>();
    }
    c.bos_token_id = f.token_id("bos_token_id", c.bos_token_id);
    c.eos_token_id = f.token_id("eos_token_id", c.eos_token_id);
    c.source = doc;
    return c;
}

void require_model_folder(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        LOFTQ_THROW_SETTING("model", "'", path, "': cannot open: ", std::strerror(errno));
    if (!S_ISDIR(st.st_mode))
        LOFTQ_THROW_SETTING("model", "'", path, "' is not a folder (a model folder holds config.json and the "
                            "weights)");
}

ModelConfig read_model_config(const std::string& path) {
    const std::string file = is_directory(path) ? path + "/config.json" : path;
    // The hint is for the common mistake; read_json_file words every other failure.
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        LOFTQ_THROW(InputError, file, ": cannot open: ", std::strerror(errno), " (a model folder needs config.json)");
    return parse_model_config(read_json_file(file, "file"), file);
}

const std::vector<std::string>& preset_names() {
    static const std::vector<std::string> names{"tiny",          "llama2-7b",  "llama2-13b",  "llama2-70b",
                                                "codellama-70b", "llama3-70b", "qwen2.5-72b", "mixtral-8x22b"};
    return names;
}

ModelConfig preset_model_config(const std::string& name) {
    ModelConfig c;
    c.model_type = "llama";
    c.architectures = {"LlamaForCausalLM"};
    c.rms_norm_eps = 1e-5;
    c.max_position_embeddings = 4096;
    c.torch_dtype = "float16";
    c.vocab_size = 32000;
    auto dims = [&c](int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv) {
        c.hidden_size = hidden;
        c.intermediate_size = inter;
        c.num_hidden_layers = layers;
        c.num_attention_heads = heads;
        c.num_key_value_heads = kv;
        c.head_dim = hidden / heads;
    };
    // Values of the published Hugging Face configs (meta-llama/Llama-2-*-hf, CodeLlama-70b-hf).
    if (name == "tiny") {
        // stories260K-like, but every width a multiple of 64 (blocks never straddle rows).
        dims(128, 384, 4, 4, 2);
        c.vocab_size = 512;
        c.max_position_embeddings = 512;
        c.torch_dtype = "bfloat16";
    } else if (name == "llama2-7b") {
        dims(4096, 11008, 32, 32, 32);
    } else if (name == "llama2-13b") {
        dims(5120, 13824, 40, 40, 40);
    } else if (name == "llama2-70b") {
        dims(8192, 28672, 80, 64, 8);
    } else if (name == "codellama-70b") {
        dims(8192, 28672, 80, 64, 8);
        c.vocab_size = 32016;
        c.rope_theta = 1e6;
        c.max_position_embeddings = 16384;
        c.torch_dtype = "bfloat16";
    } else if (name == "llama3-70b") {  // meta-llama/Llama-3.1-70B
        dims(8192, 28672, 80, 64, 8);
        c.vocab_size = 128256;
        c.rope_theta = 500000.0;
        c.max_position_embeddings = 131072;
        c.torch_dtype = "bfloat16";
        c.bos_token_id = 128000;
        c.eos_token_id = 128001;
        c.source = {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                      {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}};
    } else if (name == "qwen2.5-72b") {  // Qwen/Qwen2.5-72B: q/k/v carry biases
        dims(8192, 29568, 80, 64, 8);
        c.model_type = "qwen2";
        c.architectures = {"Qwen2ForCausalLM"};
        c.vocab_size = 152064;
        c.rope_theta = 1e6;
        c.rms_norm_eps = 1e-6;
        c.max_position_embeddings = 131072;
        c.torch_dtype = "bfloat16";
        c.bos_token_id = 151643;
        c.eos_token_id = 151643;
        c.source = {{"use_sliding_window", false}, {"sliding_window", 131072}, {"hidden_act", "silu"}};
    } else if (name == "mixtral-8x22b") {  // mistralai/Mixtral-8x22B-v0.1: intermediate_size is per expert
        dims(6144, 16384, 56, 48, 8);
        c.model_type = "mixtral";
        c.architectures = {"MixtralForCausalLM"};
        c.vocab_size = 32768;
        c.num_experts = 8;
        c.num_experts_per_tok = 2;
        c.rope_theta = 1e6;
        c.max_position_embeddings = 65536;
        c.torch_dtype = "bfloat16";
    } else {
        std::string list;
        for (const auto& n : preset_names()) list += (list.empty() ? "" : "|") + n;
        LOFTQ_THROW_SETTING("preset", "'", name, "' is not one of ", list);
    }
    return c;
}

json model_config_to_json(const ModelConfig& c) {
    json j = c.source.is_object() ? c.source : json::object();
    if (c.architectures.empty())
        j["architectures"] = {c.model_type == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM"};
    else
        j["architectures"] = c.architectures;
    j["model_type"] = c.model_type;
    j["hidden_size"] = c.hidden_size;
    if (c.intermediate_size > 0) j["intermediate_size"] = c.intermediate_size;  // 0: config.json had none
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["num_attention_heads"] = c.num_attention_heads;
    j["num_key_value_heads"] = c.num_key_value_heads;
    j["head_dim"] = c.head_dim;
    j["vocab_size"] = c.vocab_size;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["tie_word_embeddings"] = c.tie_word_embeddings;
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
    j["torch_dtype"] = c.torch_dtype;
    j["rope_theta"] = c.rope_theta;
    j["rms_norm_eps"] = c.rms_norm_eps;
    if (c.model_type == "mistral" || c.model_type == "mixtral") {
        if (c.sliding_window) j["sliding_window"] = *c.sliding_window;
        else j["sliding_window"] = nullptr;
    }
    if (c.num_experts > 0) {
        j[c.model_type == "mixtral" ? "num_local_experts" : "num_experts"] = c.num_experts;
        j["num_experts_per_tok"] = c.num_experts_per_tok;
    }
    // Fields transformers expects of a Llama config; kept when the source has them.
    auto fill = [&j](const char* key, json value) {
        if (!j.contains(key)) j[key] = std::move(value);
    };
    fill("bos_token_id", c.bos_token_id);
    fill("eos_token_id", c.eos_token_id);
    fill("hidden_act", "silu");
    fill("initializer_range", 0.02);
    fill("attention_dropout", 0.0);
    fill("rope_scaling", nullptr);
    fill("pretraining_tp", 1);
    fill("use_cache", true);
    return j;
}

const std::vector<std::string>& linear_module_names() {
    static const std::vector<std::string> names{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                "gate_proj", "up_proj", "down_proj"};
    return names;
}

std::optional<std::string> linear_module_parent(const std::string& module) {
    if (module == "q_proj" || module == "k_proj" || module == "v_proj" || module == "o_proj")
        return std::string("self_attn");
    if (module == "gate_proj" || module == "up_proj" || module == "down_proj") return std::string("mlp");
    return std::nullopt;
}

std::vector<int64_t> linear_module_shape(const ModelConfig& c, const std::string& module) {
    if (module == "q_proj") return {c.q_rows(), c.hidden_size};
    if (module == "k_proj" || module == "v_proj") return {c.kv_rows(), c.hidden_size};
    if (module == "o_proj") return {c.hidden_size, c.q_rows()};
    if (module == "gate_proj" || module == "up_proj") return {c.intermediate_size, c.hidden_size};
    if (module == "down_proj") return {c.hidden_size, c.intermediate_size};
    LOFTQ_THROW(Error, "linear_module_shape: unknown module '", module, "'");
}

std::vector<ModelTensor> expected_tensors(const ModelConfig& c) {
    const bool qkv_bias = c.model_type == "qwen2";  // Qwen2 biases q/k/v, never o_proj
    const bool moe = c.model_type == "mixtral";      // block_sparse_moe replaces the MLP
    std::vector<ModelTensor> out;
    out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = cat("model.layers.", l, ".");
        out.push_back({p + "input_layernorm.weight", {c.hidden_size}});
        for (const auto& m : linear_module_names()) {
            const std::string parent = *linear_module_parent(m);
            const auto shape = linear_module_shape(c, m);
            if (parent == "mlp" && m == "gate_proj")
                out.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
            if (parent == "mlp" && moe) continue;
            out.push_back({p + parent + "." + m + ".weight", shape});
            const bool bias = parent == "mlp" ? c.mlp_bias : c.attention_bias || (qkv_bias && m != "o_proj");
            if (bias) out.push_back({p + parent + "." + m + ".bias", {shape[0]}});
        }
        if (!moe) continue;
        out.push_back({p + "block_sparse_moe.gate.weight", {c.num_experts, c.hidden_size}});
        for (int64_t e = 0; e < c.num_experts; ++e) {
            const std::string x = cat(p, "block_sparse_moe.experts.", e, ".");
            out.push_back({x + "w1.weight", {c.intermediate_size, c.hidden_size}});
            out.push_back({x + "w2.weight", {c.hidden_size, c.intermediate_size}});
            out.push_back({x + "w3.weight", {c.intermediate_size, c.hidden_size}});
        }
    }
    out.push_back({"model.norm.weight", {c.hidden_size}});
    if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
    return out;
}

}  // namespace loftq
