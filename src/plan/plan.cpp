#include "plan/plan.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
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

// "model.layers.<N>.<rest>" -> N and rest; false for any other name. N is written as PyTorch
// writes a module index: "0", "12", never "00" or "012" (transformers would not load such a
// tensor into layer 0 or 12; InputError naming the tensor rather than quantizing it as that layer).
bool split_layer_name(const std::string& name, int64_t& layer, std::string& rest) {
    static const std::string prefix = "model.layers.";
    if (name.compare(0, prefix.size(), prefix) != 0) return false;
    size_t pos = prefix.size(), end = pos;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    if (end == pos || end - pos > 9 || end >= name.size() || name[end] != '.') return false;
    if (name[pos] == '0' && end - pos > 1)
        LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " has a layer index with a leading zero ('",
                    name.substr(pos, end - pos), "'); a module index is written without one");
    layer = std::stoll(name.substr(pos, end - pos));
    rest = name.substr(end + 1);
    return true;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// PEFT's rule: a target names a module path exactly or a dotted suffix of it.
bool target_matches(const std::string& target, const std::string& module_path) {
    return module_path == target || ends_with(module_path, "." + target);
}

int module_order(const std::string& module) {
    const auto& names = linear_module_names();
    return static_cast<int>(std::find(names.begin(), names.end(), module) - names.begin());
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
        svd = (2 + 2.0 * o.power_iters) * 2 * m * n * p + 4 * (m + n) * p * p + 20 * p * p * p;
    }
    const double per_iter = svd + 2 * m * n * o.rank + 8 * 16 * m * n;
    return spec.loftq.iters * per_iter;
}

Plan build_plan(const ModelConfig& model, const TensorCatalogue& tensors, const RunSpec& spec) {
    const std::string config_file = "config.json";
    const auto L = model.num_hidden_layers;

    // Every decoder linear weight the config implies must be there, float, and of its shape.
    for (int64_t l = 0; l < L; ++l)
        for (const auto& m : linear_module_names()) {
            const std::string name = cat("model.layers.", l, ".", *linear_module_parent(m), ".", m, ".weight");
            if (!tensors.count(name))
                LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " is missing (", config_file,
                            " has num_hidden_layers ", L, ")");
        }

    std::vector<MatrixPlan> found;
    for (const auto& [name, info] : tensors) {
        int64_t layer = 0;
        std::string rest;
        if (!split_layer_name(name, layer, rest) || !ends_with(rest, ".weight")) continue;
        const std::string path = name.substr(0, name.size() - 7);
        const std::string module = path.substr(path.rfind('.') + 1);
        const auto parent = linear_module_parent(module);
        const bool known = parent && rest == *parent + "." + module + ".weight";
        if (info.shape.size() != 2 && !known) continue;  // norms and other vectors
        if (layer >= L)
            LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " is in layer ", layer, " but ",
                        config_file, " has num_hidden_layers ", L);
        if (!known)
            LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " is not a linear layer of a ",
                        model.model_type, " model (", config_file, ")");
        const auto want = linear_module_shape(model, module);
        if (info.shape != want)
            LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " has shape ", shape_text(info.shape),
                        " but ", config_file, " implies ", shape_text(want));
        if (!is_float_weight_dtype(info.dtype))
            LOFTQ_THROW(InputError, "checkpoint: tensor ", name, " has dtype ", dtype_name(info.dtype),
                        "; a weight must be F32, F16 or BF16");
        MatrixPlan mp;
        mp.tensor = name;
        mp.module = module;
        mp.layer = static_cast<int>(layer);
        mp.rows = want[0];
        mp.cols = want[1];
        mp.dtype = info.dtype;
        found.push_back(std::move(mp));
    }

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
        for (size_t t = 0; t < spec.targets.size(); ++t)
            if (!used[t])
                LOFTQ_THROW_SETTING("targets", "'", spec.targets[t],
                                    "' matches no linear weight of the decoder layers (embeddings and "
                                    "lm_head are never targets)");
    }
    std::sort(chosen.begin(), chosen.end(), [](const MatrixPlan& a, const MatrixPlan& b) {
        if (a.layer != b.layer) return a.layer < b.layer;
        return module_order(a.module) < module_order(b.module);
    });

    Plan plan;
    plan.model = model;
    plan.model.source = nullptr;
    plan.spec = spec;
    const int rank = spec.loftq.svd_options.rank;
    for (size_t i = 0; i < chosen.size(); ++i) {
        MatrixPlan& mp = chosen[i];
        if (rank > std::min(mp.rows, mp.cols))
            LOFTQ_THROW_SETTING("rank", "rank ", rank, " exceeds min(rows, cols) = ", std::min(mp.rows, mp.cols),
                                " of ", mp.tensor, " [", mp.rows, ", ", mp.cols, "]");
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
                               : choose_svd_method(spec.loftq.svd, mp.rows, mp.cols, spec.loftq.svd_options);
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
                        {"shards", mp.shards}, {"cost", mp.cost}, {"f32_bytes", mp.f32_bytes}});
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
            if (mp.index != static_cast<int>(p.matrices.size()) || mp.rows <= 0 || mp.cols <= 0 || mp.shards < 1)
                LOFTQ_THROW(InputError, what, ": matrix ", mp.tensor, " is out of order or empty");
            p.matrices.push_back(std::move(mp));
        }
    } catch (const json::exception& e) {
        LOFTQ_THROW(InputError, what, ": malformed plan JSON (", e.what(), ")");
    }
    return p;
}

}  // namespace loftq
