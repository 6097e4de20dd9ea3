// The architecture of a Hugging Face decoder checkpoint, read from its config.json (any
// model_type: the plan finds the targets from the checkpoint itself, plan/checkpoint_layout.hpp,
// and uses these fields to cross-check what they state), or taken from a named preset with the
// published values; and, for the presets' families (llama, mistral, qwen2, mixtral), the list of
// tensors such a model holds, which `synth` writes.
//
// Guarantees: a ModelConfig returned by parse/read/preset is consistent (every size positive,
// num_attention_heads a multiple of num_key_value_heads, head_dim given or hidden divisible by
// heads). Anything else in config.json is an InputError naming config.json and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loftq {

struct ModelConfig {
    std::string model_type = "llama";  // any; the presets: llama (CodeLlama too), qwen2, mixtral
    std::vector<std::string> architectures;  // e.g. {"LlamaForCausalLM"}
    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;    // 0 when config.json has none
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;  // = num_attention_heads when config.json omits it
    int64_t head_dim = 0;             // = hidden_size / num_attention_heads when omitted
    int64_t vocab_size = 0;
    int64_t num_experts = 0;          // MoE: num_local_experts | num_experts | n_routed_experts; 0 = dense
    int64_t num_experts_per_tok = 0;  // MoE: experts each token uses (presets write it)
    int64_t max_position_embeddings = 2048;
    bool tie_word_embeddings = false;
    bool attention_bias = false;  // q/k/v/o carry a .bias tensor
    bool mlp_bias = false;        // gate/up/down carry a .bias tensor
    std::string torch_dtype = "float32";  // float32 | float16 | bfloat16
    double rope_theta = 10000.0;
    double rms_norm_eps = 1e-6;
    std::optional<int64_t> sliding_window;  // Mistral; nullopt = null or absent
    int64_t bos_token_id = 1;
    int64_t eos_token_id = 2;
    // The parsed config.json as read (null for a preset): to_json keeps its other fields.
    nlohmann::json source;

    int64_t q_rows() const { return num_attention_heads * head_dim; }
    int64_t kv_rows() const { return num_key_value_heads * head_dim; }
};

// Bounds of parse_model_config: every dimension of a weight matrix and every count that
// multiplies one (hidden, intermediate, layers, heads, head_dim, and heads * head_dim) is at most
// 2^20, so that shapes, element and byte counts stay far inside int64; vocab_size at most 2^24.
constexpr int64_t kMaxModelDimension = int64_t{1} << 20;
constexpr int64_t kMaxVocabSize = int64_t{1} << 24;

// Parse a config.json document; `file` names it in error messages.
ModelConfig parse_model_config(const nlohmann::json& doc, const std::string& file);
// Read `path` (a config.json, or a folder holding one). InputError if missing or malformed.
ModelConfig read_model_config(const std::string& path);
// ConfigError (setting "model") naming `path` unless it is a folder: a model is given as its
// folder, never as one of its files (a weights file would be read as config.json).
void require_model_folder(const std::string& path);

// The presets of `loftq synth`: tiny, llama2-7b, llama2-13b, llama2-70b, codellama-70b,
// llama3-70b, qwen2.5-72b, mixtral-8x22b.
// ConfigError naming --preset for any other name.
ModelConfig preset_model_config(const std::string& name);
const std::vector<std::string>& preset_names();

// A config.json transformers loads (AutoConfig / LlamaForCausalLM / MistralForCausalLM /
// Qwen2ForCausalLM / MixtralForCausalLM): the source document's fields, with every field of
// ModelConfig written over them.
nlohmann::json model_config_to_json(const ModelConfig& cfg);

// One tensor a model of this architecture holds.
struct ModelTensor {
    std::string name;            // e.g. "model.layers.0.self_attn.q_proj.weight"
    std::vector<int64_t> shape;  // PyTorch order: Linear weights are [out, in]
};

// Every tensor of a model of a preset family, in the order transformers creates them:
// embed_tokens, per layer input_layernorm, q/k/v/o_proj (qwen2: q/k/v with biases),
// post_attention_layernorm, gate/up/down_proj (mixtral: block_sparse_moe.gate and
// experts.E.w1/w2/w3), their biases when configured, model.norm, lm_head unless tied.
std::vector<ModelTensor> expected_tensors(const ModelConfig& cfg);

// The decoder linear modules in plan order, and their [out, in] shape under `cfg`.
const std::vector<std::string>& linear_module_names();  // q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
// "self_attn" or "mlp": the submodule a linear module lives in. nullopt if not a known module.
std::optional<std::string> linear_module_parent(const std::string& module);
// [out, in] of `module` (one of linear_module_names()).
std::vector<int64_t> linear_module_shape(const ModelConfig& cfg, const std::string& module);

}  // namespace loftq
