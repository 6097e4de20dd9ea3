#include "runtime/merge_plan.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/export_format.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors_writer.hpp"

namespace loftq {
namespace {

constexpr const char* kKindNames[] = {"copy", "held", "merged"};
constexpr const char* kBaseLoadNames[] = {"as-stored", "bnb4", "nf4", "fp4"};

DType dtype_named(const std::string& name, const std::string& what) {
    const std::optional<DType> t = parse_dtype(name);
    if (!t) LOFTQ_THROW(InputError, what, ": unknown dtype '", name, "'");
    return *t;
}

template <typename E, size_t N>
E enum_named(const std::string& name, const char* const (&names)[N], const std::string& what) {
    for (size_t i = 0; i < N; ++i)
        if (name == names[i]) return static_cast<E>(i);
    LOFTQ_THROW(InputError, what, ": unknown value '", name, "'");
}

}  // namespace

const char* base_load_name(BaseLoad b) { return kBaseLoadNames[static_cast<int>(b)]; }
const char* merge_item_kind_name(MergeItem::Kind k) { return kKindNames[static_cast<int>(k)]; }

double MergeItem::cost() const {
    double n = 1;
    for (int64_t d : shape) n *= static_cast<double>(d);
    return kind == Kind::copy ? n : 4.0 * n;
}

std::string merge_bnb4_state(const MergePlan& plan, const MergeItem& it, float nested_offset) {
    // "dtype": what Params4bit was quantized from; PEFT's merged W' is float32 (the held weight plus
    // the float32 delta of an adapter trained as PEFT keeps it).
    return bnb4_quant_state_json({plan.out_quant_type, 64, "float32", it.shape.at(0),
                                  it.shape.at(1), plan.out_double_quant, nested_offset});
}

std::string MergePlan::to_json() const {
    nlohmann::json items_json = nlohmann::json::array();
    for (const auto& it : items) {
        nlohmann::json outs = nlohmann::json::array();
        for (const auto& o : it.outputs)
            outs.push_back({{"name", o.name}, {"dtype", dtype_name(o.dtype)}, {"shape", o.shape},
                            {"with_previous", o.with_previous}, {"shard", o.shard}, {"offset", o.offset},
                            {"nbytes", o.nbytes}});
        items_json.push_back({{"tensor", it.tensor}, {"kind", kKindNames[static_cast<int>(it.kind)]},
                              {"in_dtype", dtype_name(it.in_dtype)}, {"shape", it.shape},
                              {"four_bit", it.four_bit}, {"out_bnb4", it.out_bnb4}, {"r", it.r},
                              {"scaling", it.scaling}, {"outputs", outs}});
    }
    const nlohmann::json j = {{"to", to},
                              {"base_load", base_load_name(base_load)},
                              {"load_double_quant", load_double_quant},
                              {"load_dtype", dtype_name(load_dtype)},
                              {"out_quant_type", out_quant_type},
                              {"out_double_quant", out_double_quant},
                              {"max_shard_size", max_shard_size},
                              {"inputs_fingerprint", inputs_fingerprint},
                              {"shard_files", shard_files},
                              {"shard_bytes", shard_bytes},
                              {"items", items_json}};
    return j.dump();
}

MergePlan MergePlan::from_json(const std::string& text, const std::string& what) {
    const nlohmann::json j = parse_strict_json(what, text);
    MergePlan p;
    try {
        p.to = j.at("to").get<std::string>();
        p.base_load = enum_named<BaseLoad>(j.at("base_load").get<std::string>(), kBaseLoadNames, what);
        p.load_double_quant = j.at("load_double_quant").get<bool>();
        p.load_dtype = dtype_named(j.at("load_dtype").get<std::string>(), what);
        p.out_quant_type = j.at("out_quant_type").get<std::string>();
        p.out_double_quant = j.at("out_double_quant").get<bool>();
        p.max_shard_size = j.at("max_shard_size").get<uint64_t>();
        p.inputs_fingerprint = j.at("inputs_fingerprint").get<uint64_t>();
        p.shard_files = j.at("shard_files").get<std::vector<std::string>>();
        p.shard_bytes = j.at("shard_bytes").get<std::vector<uint64_t>>();
        for (const auto& e : j.at("items")) {
            MergeItem it;
            it.tensor = e.at("tensor").get<std::string>();
            it.kind = enum_named<MergeItem::Kind>(e.at("kind").get<std::string>(), kKindNames, what);
            it.in_dtype = dtype_named(e.at("in_dtype").get<std::string>(), what);
            it.shape = e.at("shape").get<std::vector<int64_t>>();
            it.four_bit = e.at("four_bit").get<bool>();
            it.out_bnb4 = e.at("out_bnb4").get<bool>();
            it.r = e.at("r").get<int64_t>();
            it.scaling = e.at("scaling").get<double>();
            for (const auto& o : e.at("outputs")) {
                MergeOutput out;
                out.name = o.at("name").get<std::string>();
                out.dtype = dtype_named(o.at("dtype").get<std::string>(), what);
                out.shape = o.at("shape").get<std::vector<int64_t>>();
                out.with_previous = o.at("with_previous").get<bool>();
                out.shard = o.at("shard").get<int>();
                out.offset = o.at("offset").get<uint64_t>();
                out.nbytes = o.at("nbytes").get<uint64_t>();
                if (out.shard < 0 || static_cast<size_t>(out.shard) >= p.shard_files.size())
                    LOFTQ_THROW(InputError, what, ": tensor ", out.name, " names shard ", out.shard);
                it.outputs.push_back(std::move(out));
            }
            if (it.outputs.empty()) LOFTQ_THROW(InputError, what, ": item ", it.tensor, " writes nothing");
            p.items.push_back(std::move(it));
        }
    } catch (const nlohmann::json::exception& e) {
        LOFTQ_THROW(InputError, what, ": not a merge plan (", e.what(), ")");
    }
    if (p.shard_bytes.size() != p.shard_files.size()) LOFTQ_THROW(InputError, what, ": shard lists differ in length");
    return p;
}

void place_items(MergePlan& plan) {
    std::vector<TensorSpec> specs;
    std::vector<bool> keep;
    std::vector<MergeOutput*> outs;
    for (auto& it : plan.items)
        for (auto& o : it.outputs) {
            specs.push_back({o.name, o.dtype, o.shape});
            keep.push_back(o.with_previous);
            outs.push_back(&o);
        }
    const std::vector<ShardPlan> shards = plan_shards(specs, plan.max_shard_size, keep);
    plan.shard_files.clear();
    plan.shard_bytes.clear();
    for (size_t s = 0; s < shards.size(); ++s) {
        std::vector<TensorSpec> mine;
        for (size_t i : shards[s].tensors) mine.push_back(specs[i]);
        uint64_t offset = safetensors_header(mine, default_metadata()).size();
        for (size_t i : shards[s].tensors) {
            MergeOutput& o = *outs[i];
            o.shard = static_cast<int>(s);
            o.offset = offset;
            o.nbytes = specs[i].nbytes();
            offset += o.nbytes;
        }
        plan.shard_files.push_back(shards[s].file_name);
        plan.shard_bytes.push_back(offset);
    }
}

std::vector<std::vector<int>> distribute_merge(const MergePlan& plan, int ranks) {
    LOFTQ_CHECK(ranks >= 1, "distribute_merge: ranks < 1");
    std::vector<int> order(plan.items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return plan.items[static_cast<size_t>(a)].cost() > plan.items[static_cast<size_t>(b)].cost();
    });
    std::vector<std::vector<int>> work(static_cast<size_t>(ranks));
    std::vector<double> load(static_cast<size_t>(ranks), 0.0);
    for (int i : order) {
        const size_t least = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
        work[least].push_back(i);
        load[least] += plan.items[static_cast<size_t>(i)].cost();
    }
    return work;
}

}  // namespace loftq
