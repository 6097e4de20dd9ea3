#include "plan/plan.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "plan/checkpoint_layout.hpp"
#include "plan/distribution.hpp"
#include "io/json_strict.hpp"

namespace loftq {
namespace {

using json = nlohmann::json;

std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// PEFT's rule: a target names a module path exactly or a dotted suffix of it.
bool target_matches(const std::string& target, const std::string& module_path) {
    return module_path == target || ends_with(module_path, "." + target);
}

// Plan order within a layer: attention before the MLP, as the modules run (Llama's q, k, v, o,
// gate, up, down keep their order: stories260K and Llama plans are unchanged); others after, by name.
int module_order(const std::string& module) {
    static const char* const order[] = {"q_proj",  "k_proj",    "v_proj",       "qkv_proj",      "query_key_value",
                                        "o_proj",  "dense",     "gate_proj",    "up_proj",       "gate_up_proj",
                                        "c_fc",    "dense_h_to_4h", "down_proj", "dense_4h_to_h", "c_proj"};
    for (size_t i = 0; i < std::size(order); ++i)
        if (module == order[i]) return static_cast<int>(i);
    return static_cast<int>(std::size(order));
}

// Modules that come together: a layer holding one of a group holds all of it (o_proj and
// down_proj also sit beside fused qkv_proj / gate_up_proj, as in Phi-3).
const std::vector<std::vector<std::string>>& module_groups() {
    static const std::vector<std::vector<std::string>> groups{
        {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {"mlp.gate_proj", "mlp.up_proj"}};
    return groups;
}

}  // namespace

TensorCatalogue expected_catalogue(const ModelConfig& model, DType dtype) {
    TensorCatalogue c;
    for (auto& t : expected_tensors(model)) c[t.name] = TensorInfo{t.name, dtype, t.shape, 0, 0};
    return c;
}

TensorCatalogue read_catalogue(const Checkpoint& checkpoint) {
    TensorCatalogue c;
    for (const auto& name : checkpoint.names()) c[name] = checkpoint.info(name);
    return c;
}

std::string MatrixPlan::module_path() const {
    return ends_with(tensor, ".weight") ? tensor.substr(0, tensor.size() - 7) : tensor;
}

int bits_for_layer(double bits, int layer, int num_layers) {
    if (bits == 2 || bits == 4 || bits == 8) return static_cast<int>(bits);
    // LoftQ utils: bit4_layers = int((num_layers * (num_bits - 2)) // 2)
    const int bit4_layers = static_cast<int>(std::floor(num_layers * (bits - 2) / 2));
    return layer < bit4_layers ? 4 : 2;
}

double estimate_cost(int64_t rows, int64_t cols, SvdMethod svd_method, const RunSpec& spec) {
    const SvdOptions& o = spec.loftq.svd_options;
    const double m = static_cast<double>(rows), n = static_cast<double>(cols);
    const double k = std::min(m, n), l = std::max(m, n);
    double svd = 0;
    if (svd_method == SvdMethod::exact) {
        svd = 6 * l * k * k + 20 * k * k * k;
    } else {
        const double p = std::min<double>(o.rank + o.oversample, k);
        // GEMM passes of p columns: 2q + 2 per step, q = power_iters fresh (step 1),
        // warm_power_iters after; a Krylov fresh step projects on q + 1 blocks (3q + 2).
        const double T = spec.loftq.iters;
        const double q = o.power_iters;
        const double warm_q = o.warm_start ? o.warm_power_iters : q;
        const double fresh = o.scheme == PowerScheme::krylov ? 2 + 3 * q : 2 + 2 * q;
        const double passes = fresh + (T - 1) * (2 + 2.0 * warm_q);
        svd = passes / T * 2 * m * n * p + 4 * (m + n) * p * p + 20 * p * p * p;
    }
    const double per_iter = svd + 2 * m * n * o.rank + 8 * 16 * m * n;
    return spec.loftq.iters * per_iter;
}

namespace {

// The checks config.json allows on the targets found: layer indices within num_hidden_layers and
// every layer holding targets; Llama-layout modules (layer.self_attn.q_proj, layer.mlp.up_proj, ...)
// complete per layer (module_groups) and of the shape config.json implies; a stored output head
// unless the embeddings are tied; the expert count of every MoE block.
void cross_check(const ModelConfig& model, const TensorCatalogue& tensors, const std::vector<MatrixPlan>& found) {
    const std::string config_file = "config.json";
    const auto L = model.num_hidden_layers;
    std::map<int64_t, std::set<std::string>> per_layer;  // layer -> module paths after "<layer>."
    std::map<int64_t, std::string> prefix;               // layer -> "model.layers.<layer>."
    for (const auto& mp : found) {
        if (mp.layer >= L)
            LOFTQ_THROW(InputError, "checkpoint: tensor ", mp.tensor, " is in layer ", mp.layer, " but ",
                        config_file, " has num_hidden_layers ", L);
        const std::string key = cat(".", mp.layer, ".");
        const size_t at = mp.tensor.find(key);
        if (at == std::string::npos) continue;  // outside the layers
        const std::string rest = mp.tensor.substr(at + key.size());
        per_layer[mp.layer].insert(rest.substr(0, rest.size() - 7));
        prefix[mp.layer] = mp.tensor.substr(0, at + key.size());
        const bool llama_layout = linear_module_parent(mp.module) &&
                                  rest == *linear_module_parent(mp.module) + "." + mp.module + ".weight";
        const bool mlp = linear_module_parent(mp.module) == std::optional<std::string>("mlp");
        if (!llama_layout || (mlp && model.intermediate_size == 0)) continue;
        const auto want = linear_module_shape(model, mp.module);
        if (std::vector<int64_t>{mp.rows, mp.cols} != want)
            LOFTQ_THROW(InputError, "checkpoint: tensor ", mp.tensor, " has shape ", shape_text({mp.rows, mp.cols}),
                        " but ", config_file, " implies ", shape_text(want));
    }
    if (found.empty()) LOFTQ_THROW(InputError, "checkpoint: no linear weight found (2-D float <module>.weight)");
    if (!per_layer.empty())
        for (int64_t l = 0; l < L; ++l) {
            const auto it = per_layer.find(l);
            if (it == per_layer.end())
                LOFTQ_THROW(InputError, "checkpoint: layer ", l, " holds no linear weight (", config_file,
                            " has num_hidden_layers ", L, ")");
            for (const auto& group : module_groups()) {
                bool any = false;
                for (const auto& m : group) any = any || it->second.count(m);
                for (const auto& m : group)
                    if (any && !it->second.count(m))
                        LOFTQ_THROW(InputError, "checkpoint: tensor ", prefix[l], m, ".weight is missing (layer ", l,
                                    " holds other modules of its group)");
            }
        }
    // Untied embeddings need a stored output head (transformers would start it from random values).
    bool embedding = false, head = false;
    for (const auto& [name, info] : tensors) {
        const HeldAs h = classify_tensor(name, info.shape, tensors);
        embedding = embedding || h == HeldAs::embedding;
        head = head || h == HeldAs::output_head;
    }
    const bool untied = model.source.is_object() && model.source.value("tie_word_embeddings", nlohmann::json(true)) == false;
    if (embedding && !head && untied)
        LOFTQ_THROW(InputError, "checkpoint: no output head tensor (lm_head.weight or embed_out.weight) but ",
                    config_file, " has tie_word_embeddings false");
    if (model.num_experts > 0) {
        std::map<std::string, std::set<int64_t>> experts;  // the module holding "experts." -> indices
        for (const auto& [name, info] : tensors)
            if (const auto e = expert_index(name)) experts[name.substr(0, name.find(".experts."))].insert(*e);
        for (const auto& [parent, set] : experts)
            if (static_cast<int64_t>(set.size()) != model.num_experts || *set.rbegin() != model.num_experts - 1)
                LOFTQ_THROW(InputError, "checkpoint: ", parent, ".experts holds ", set.size(), " experts (0..",
                            *set.rbegin(), ") but ", config_file, " states ", model.num_experts);
    }
}

}  // namespace

Plan build_plan(const ModelConfig& model, const TensorCatalogue& tensors, const RunSpec& spec) {
    const auto L = model.num_hidden_layers;
    if (holds_conv1d_projections(model.model_type))
        LOFTQ_THROW(InputError, "config.json: model_type ", model.model_type, " holds its projections as Conv1D "
                    "(weights stored [in, out], transposed by bitsandbytes at load); not supported");
    // The targets: what the clients hold as Linear4bit (checkpoint_layout.hpp), float, 2-D.
    std::vector<MatrixPlan> found;
    for (const auto& [name, info] : tensors) {
        if (classify_tensor(name, info.shape, tensors) != HeldAs::linear4bit) {
            layer_index(name);  // a leading-zero index is refused wherever it is
            continue;
        }
        if (!is_float_weight_dtype(info.dtype))
            LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " has dtype ", dtype_name(info.dtype),
                        "; a weight must be F32, F16 or BF16");
        MatrixPlan mp;
        mp.tensor = name;
        const std::string path = mp.module_path();
        mp.module = path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
        mp.layer = static_cast<int>(layer_index(name).value_or(0));
        mp.rows = info.shape[0];
        mp.cols = info.shape[1];
        mp.dtype = info.dtype;
        found.push_back(std::move(mp));
    }
    cross_check(model, tensors, found);

    std::vector<MatrixPlan> chosen;
    if (spec.targets.empty()) {
        chosen = found;
    } else {
        std::vector<bool> used(spec.targets.size(), false);
        for (auto& mp : found) {
            bool take = false;
            for (size_t t = 0; t < spec.targets.size(); ++t)
                if (target_matches(spec.targets[t], mp.module_path())) take = used[t] = true;
            if (take) chosen.push_back(mp);
        }
        for (size_t t = 0; t < spec.targets.size(); ++t) {
            if (used[t]) continue;
            std::string kept;  // what it names instead, if anything
            for (const auto& [name, info] : tensors) {
                const std::string path = name.size() > 7 ? name.substr(0, name.size() - 7) : name;
                const HeldAs h = classify_tensor(name, info.shape, tensors);
                if (h != HeldAs::not_a_matrix && target_matches(spec.targets[t], path)) {
                    kept = cat(": ", path, " is ", std::string(h == HeldAs::output_head ? "the " : "an "),
                               held_as_name(h), ", which the clients keep in 16-bit");
                    break;
                }
            }
            LOFTQ_THROW_SETTING("targets", "'", spec.targets[t],
                                "' matches no linear weight the clients quantize (embeddings, the output head, "
                                "MoE routers and experts are never targets)", kept);
        }
    }
    std::sort(chosen.begin(), chosen.end(), [](const MatrixPlan& a, const MatrixPlan& b) {
        if (a.layer != b.layer) return a.layer < b.layer;
        if (module_order(a.module) != module_order(b.module)) return module_order(a.module) < module_order(b.module);
        return a.tensor < b.tensor;
    });

    Plan plan;
    plan.model = model;
    plan.model.source = nullptr;
    plan.spec = spec;
    const int rank = spec.loftq.svd_options.rank;
    for (size_t i = 0; i < chosen.size(); ++i) {
        MatrixPlan& mp = chosen[i];
        // A rank above the smaller side cannot be factored (PEFT's loftq_init would silently store
        // factors of that side's size under the global r): the matrix gets r = min(rows, cols),
        // stated in adapter_config.json's rank_pattern, which PEFT applies with lora_alpha / r.
        mp.rank = static_cast<int>(std::min<int64_t>(rank, std::min(mp.rows, mp.cols)));
        SvdOptions svd_options = spec.loftq.svd_options;
        svd_options.rank = mp.rank;
        mp.index = static_cast<int>(i);
        mp.bits = bits_for_layer(spec.bits, mp.layer, static_cast<int>(L));
        mp.f32_bytes = static_cast<uint64_t>(mp.rows) * static_cast<uint64_t>(mp.cols) * 4;
        // The one decision of "split": the distribution and the loop follow mp.shards.
        mp.shards = shard_count(mp.rows, mp.cols, spec.split_threshold, spec.blocksize_for(mp.bits, mp.cols),
                                min_shard_rows(mp.rows, mp.cols, spec));
        // The low-rank engine's own rule, so the cost model and the run agree.
        // The loop refuses the exact SVD on a split matrix; refused here, on rank 0 before the run
        // file exists, the error is collective (one line, no abort) and leaves nothing behind.
        if (mp.shards > 1 && spec.loftq.svd == SvdChoice::exact)
            LOFTQ_THROW_SETTING("svd", "the exact SVD cannot run on ", mp.tensor, ": it is split over ", mp.shards,
                                " shards by the split threshold (ask for the randomized SVD or raise the "
                                "split threshold)");
        mp.svd = mp.shards > 1 ? SvdMethod::randomized
                               : choose_svd_method(spec.loftq.svd, mp.rows, mp.cols, svd_options);
        mp.cost = estimate_cost(mp.rows, mp.cols, mp.svd, spec);
    }
    plan.matrices = std::move(chosen);
    return plan;
}

std::string Plan::to_json() const {
    json j;
    j["format"] = "loftq-plan-1";
    ModelConfig m = model;
    m.source = nullptr;
    j["model"] = model_config_to_json(m);
    j["spec"] = spec.to_json();
    json mats = json::array();
    for (const auto& mp : matrices)
        mats.push_back({{"index", mp.index}, {"tensor", mp.tensor}, {"module", mp.module},
                        {"layer", mp.layer}, {"rows", mp.rows}, {"cols", mp.cols},
                        {"dtype", dtype_name(mp.dtype)}, {"bits", mp.bits}, {"svd", svd_method_name(mp.svd)},
                        {"shards", mp.shards}, {"cost", mp.cost}, {"f32_bytes", mp.f32_bytes}, {"rank", mp.rank}});
    j["matrices"] = std::move(mats);
    return j.dump();
}

Plan Plan::from_json(const std::string& bytes, const std::string& what) {
    Plan p;
    try {
        const json j = parse_strict_json(what, bytes);  // InputError naming `what` passes through
        if (j.at("format") != "loftq-plan-1") LOFTQ_THROW(InputError, what, ": not a loftq plan");
        p.model = parse_model_config(j.at("model"), what);
        p.model.source = nullptr;
        p.spec = RunSpec::from_json(j.at("spec").get<std::string>(), what);
        for (const auto& e : j.at("matrices")) {
            MatrixPlan mp;
            mp.index = e.at("index").get<int>();
            mp.tensor = e.at("tensor").get<std::string>();
            mp.module = e.at("module").get<std::string>();
            mp.layer = e.at("layer").get<int>();
            mp.rows = e.at("rows").get<int64_t>();
            mp.cols = e.at("cols").get<int64_t>();
            const auto dt = parse_dtype(e.at("dtype").get<std::string>());
            if (!dt) LOFTQ_THROW(InputError, what, ": matrix ", mp.tensor, " has an unknown dtype");
            mp.dtype = *dt;
            mp.bits = e.at("bits").get<int>();
            mp.svd = parse_svd_method(e.at("svd").get<std::string>());
            mp.shards = e.at("shards").get<int>();
            mp.cost = e.at("cost").get<double>();
            mp.f32_bytes = e.at("f32_bytes").get<uint64_t>();
            mp.rank = e.at("rank").get<int>();
            if (mp.index != static_cast<int>(p.matrices.size()) || mp.rows <= 0 || mp.cols <= 0 || mp.shards < 1 ||
                mp.rank < 1 || mp.rank > std::min(mp.rows, mp.cols))
                LOFTQ_THROW(InputError, what, ": matrix ", mp.tensor, " is out of order or empty");
            p.matrices.push_back(std::move(mp));
        }
    } catch (const json::exception& e) {
        LOFTQ_THROW(InputError, what, ": malformed plan JSON (", e.what(), ")");
    }
    return p;
}

}  // namespace loftq
