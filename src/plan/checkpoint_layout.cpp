#include "plan/checkpoint_layout.hpp"

#include <cstdio>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace loftq {
namespace {

// The rules of the header, as data: a module's last path component and the kind it is held as.
struct LastNameRule {
    const char* last;
    HeldAs held;
};
constexpr LastNameRule kEmbeddings[] = {
    {"embed_tokens", HeldAs::embedding}, {"embed_in", HeldAs::embedding},
    {"wte", HeldAs::embedding},          {"wpe", HeldAs::embedding},
    {"word_embeddings", HeldAs::embedding}, {"embed_positions", HeldAs::embedding},
};
// Top-level modules that are the output head (transformers' get_output_embeddings()).
constexpr const char* kOutputHeads[] = {"lm_head", "embed_out"};
// A router is a module of this last name whose parent also holds "<parent>.experts.".
constexpr const char* kRouters[] = {"gate", "router"};
// transformers' Conv1D families (pytorch_utils.Conv1D in their modeling files).
constexpr const char* kConv1DModelTypes[] = {"gpt2", "openai-gpt", "imagegpt"};

std::vector<std::string> split_path(const std::string& s) {
    std::vector<std::string> parts;
    size_t b = 0;
    while (true) {
        const size_t e = s.find('.', b);
        parts.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
        if (e == std::string::npos) return parts;
        b = e + 1;
    }
}

bool all_digits(const std::string& s) {
    if (s.empty() || s.size() > 9) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool has_prefix_in(const std::map<std::string, TensorInfo>& catalogue, const std::string& prefix) {
    const auto it = catalogue.lower_bound(prefix);
    return it != catalogue.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

uint64_t stored_bytes(const TensorInfo& t) { return t.numel() * dtype_size(t.dtype); }

}  // namespace

const char* held_as_name(HeldAs h) {
    switch (h) {
        case HeldAs::linear4bit: return "Linear4bit";
        case HeldAs::embedding: return "embedding";
        case HeldAs::output_head: return "output head";
        case HeldAs::moe_router: return "MoE router";
        case HeldAs::moe_expert: return "MoE expert";
        case HeldAs::not_a_matrix: break;
    }
    return "other";
}

std::optional<int64_t> layer_index(const std::string& name) {
    std::optional<int64_t> layer;
    for (const auto& part : split_path(name)) {
        if (!all_digits(part)) continue;
        if (part.size() > 1 && part[0] == '0')
            LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " has a module index with a leading zero ('", part,
                        "'); a module index is written without one");
        if (!layer) layer = std::stoll(part);
    }
    return layer;
}

bool holds_conv1d_projections(const std::string& model_type) {
    for (const char* t : kConv1DModelTypes)
        if (model_type == t) return true;
    return false;
}

std::optional<int64_t> expert_index(const std::string& name) {
    const auto parts = split_path(name);
    for (size_t i = 0; i + 1 < parts.size(); ++i)
        if (parts[i] == "experts" && all_digits(parts[i + 1])) return std::stoll(parts[i + 1]);
    return std::nullopt;
}

HeldAs classify_tensor(const std::string& name, const std::vector<int64_t>& shape,
                       const std::map<std::string, TensorInfo>& catalogue) {
    const bool fused_experts = shape.size() == 3 && name.find(".experts.") != std::string::npos;
    if (fused_experts) return HeldAs::moe_expert;  // transformers 5's own form, should a file hold it
    if (shape.size() != 2 || !ends_with(name, ".weight")) return HeldAs::not_a_matrix;
    const std::string module = name.substr(0, name.size() - 7);
    const auto parts = split_path(module);
    const std::string& last = parts.back();
    for (const auto& r : kEmbeddings)
        if (last == r.last) return r.held;
    for (const char* head : kOutputHeads)
        if (module == head) return HeldAs::output_head;
    if (expert_index(name)) return HeldAs::moe_expert;
    for (const char* router : kRouters)
        if (last == router) {
            const std::string parent = module.substr(0, module.size() - last.size());  // ends with '.'
            if (has_prefix_in(catalogue, parent + "experts.")) return HeldAs::moe_router;
        }
    return HeldAs::linear4bit;
}

uint64_t KeptSummary::kept_bytes() const {
    uint64_t b = 0;
    for (const auto& g : groups) b += g.bytes;
    return b;
}

std::string KeptSummary::text() const {
    std::string out;
    for (const auto& g : groups) {
        char share[32];
        std::snprintf(share, sizeof share, "%.1f%%", model_bytes ? 100.0 * g.bytes / model_bytes : 0.0);
        out += cat(out.empty() ? "" : "; ", g.kind, " ", g.tensors, g.tensors == 1 ? " tensor (" : " tensors (", share,
                   " of the model's bytes, e.g. ", g.example, ")");
    }
    return out;
}

nlohmann::json KeptSummary::to_json() const {
    nlohmann::json groups_json = nlohmann::json::array();
    for (const auto& g : groups)
        groups_json.push_back({{"kind", g.kind}, {"tensors", g.tensors}, {"bytes", g.bytes},
                               {"share", model_bytes ? static_cast<double>(g.bytes) / model_bytes : 0.0},
                               {"example", g.example}});
    return {{"model_bytes", model_bytes}, {"kept_bytes", kept_bytes()}, {"groups", groups_json}};
}

bool KeptSummary::has_moe() const {
    for (const auto& g : groups)
        if (g.kind == held_as_name(HeldAs::moe_expert) || g.kind == held_as_name(HeldAs::moe_router)) return true;
    return false;
}

KeptSummary kept_in_16bit(const std::map<std::string, TensorInfo>& catalogue) {
    constexpr HeldAs kinds[] = {HeldAs::embedding, HeldAs::output_head, HeldAs::moe_router, HeldAs::moe_expert};
    KeptSummary s;
    std::map<HeldAs, KeptGroup> by_kind;
    for (const auto& [name, info] : catalogue) {
        s.model_bytes += stored_bytes(info);
        const HeldAs h = classify_tensor(name, info.shape, catalogue);
        if (h == HeldAs::linear4bit || h == HeldAs::not_a_matrix) continue;
        KeptGroup& g = by_kind[h];
        if (g.tensors++ == 0) g.example = name;
        g.bytes += stored_bytes(info);
    }
    for (HeldAs h : kinds)
        if (auto it = by_kind.find(h); it != by_kind.end()) {
            it->second.kind = held_as_name(h);
            s.groups.push_back(it->second);
        }
    return s;
}

}  // namespace loftq
