// What the real clients hold of each tensor of a checkpoint, found from the tensor names and
// shapes alone (issue #12). transformers + bitsandbytes (load_in_4bit) turn every nn.Linear but
// the output head into Linear4bit, and PEFT's "all-linear" targets exactly that set; so a target
// is a 2-D float "<module>.weight" that no rule of a small table marks as something that is not
// an nn.Linear as transformers 5 holds it (measured on 16 families, tests/client/held_modules.py):
//   embedding     embed_tokens, embed_in, wte, wpe, word_embeddings, embed_positions
//   output head   lm_head, embed_out (top level; tied heads are not stored)
//   MoE router    <parent>.gate / .router where <parent> also holds experts
//   MoE expert    <parent>.experts.<E>.<linear>: stored one Linear per expert, held by
//                 transformers 5 as fused 3-D parameters that bitsandbytes keeps in 16-bit
//                 (a 3-D "<parent>.experts.<name>" tensor, that fused form, is one too)
// Everything else (1-D norms and biases, 3-D fused experts, non-".weight" tensors) is not 2-D
// Linear weight and is copied bit for bit.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"

namespace loftq {

enum class HeldAs { linear4bit, embedding, output_head, moe_router, moe_expert, not_a_matrix };

// "embedding", "output head", "MoE router", "MoE expert", "other".
const char* held_as_name(HeldAs h);

// How transformers holds `name` of a checkpoint whose tensors are `names` (routers are recognised
// by their siblings). A linear4bit answer says nothing of the dtype (the plan checks it).
HeldAs classify_tensor(const std::string& name, const std::vector<int64_t>& shape,
                       const std::map<std::string, TensorInfo>& catalogue);

// The decoder layer of a tensor: its first all-digit path component ("model.layers.3.mlp..." -> 3,
// "gpt_neox.layers.1.attention.dense.weight" -> 1); nullopt for a tensor outside the layers.
// InputError naming the tensor for an index written with a leading zero ("00", "012"), which
// PyTorch never writes and transformers would not load into that layer.
std::optional<int64_t> layer_index(const std::string& name);

// Model types whose projections are transformers' Conv1D (weight stored [in, out], transposed by
// bitsandbytes before it quantizes): gpt2, openai-gpt, imagegpt. Not planned (refused by name).
bool holds_conv1d_projections(const std::string& model_type);

// The expert index of a per-expert tensor ("...experts.5.w1.weight" -> 5), else nullopt.
std::optional<int64_t> expert_index(const std::string& name);

// The 2-D weights the clients keep in 16-bit (everything classify_tensor does not call
// linear4bit), grouped by kind: what the summary, report.json and `inspect` state.
struct KeptGroup {
    std::string kind;     // held_as_name
    int64_t tensors = 0;  // how many
    uint64_t bytes = 0;   // their bytes as stored
    std::string example;  // one tensor name
};
struct KeptSummary {
    std::vector<KeptGroup> groups;  // in HeldAs order, only non-empty kinds
    uint64_t model_bytes = 0;       // every tensor's bytes as stored
    uint64_t kept_bytes() const;
    // "MoE expert 96 tensors (71.2% of the model's bytes, e.g. ...); MoE router ..."; "" if none.
    std::string text() const;
    // {"model_bytes", "kept_bytes", "groups": [{"kind", "tensors", "bytes", "share", "example"}]}.
    nlohmann::json to_json() const;
    bool has_moe() const;  // any MoE expert or router kept
};
KeptSummary kept_in_16bit(const std::map<std::string, TensorInfo>& catalogue);

}  // namespace loftq
