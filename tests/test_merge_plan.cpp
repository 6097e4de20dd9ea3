// The merge plan (runtime/merge_plan.hpp) and PEFT's adapter rules (io/peft_adapter.hpp): pure
// functions, checked without MPI or files.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/error.hpp"
#include "io/peft_adapter.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "runtime/merge_plan.hpp"

using namespace loftq;

namespace {

MergePlan sample_plan(uint64_t max_shard_size) {
    MergePlan p;
    p.to = "bf16";
    p.base_load = BaseLoad::nf4;
    p.max_shard_size = max_shard_size;
    const char* names[] = {"lm_head.weight", "model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight",
                           "model.layers.0.self_attn.q_proj.weight", "model.norm.weight"};
    for (const char* n : names) {
        MergeItem it;
        it.tensor = n;
        const bool linear = std::string(n).find("layers") != std::string::npos;
        it.kind = linear ? MergeItem::Kind::merged : MergeItem::Kind::copy;
        it.four_bit = linear;
        it.in_dtype = DType::BF16;
        it.shape = std::string(n) == "model.norm.weight" ? std::vector<int64_t>{64} : std::vector<int64_t>{128, 64};
        it.r = linear ? 8 : 0;
        it.scaling = linear ? 2.0 : 0.0;
        it.outputs.push_back({n, DType::BF16, it.shape, false});
        if (linear) it.outputs.push_back({std::string(n) + ".absmax", DType::F32, {128}, true});  // a component
        p.items.push_back(it);
    }
    place_items(p);
    return p;
}

}  // namespace

TEST(MergePlan, PlacesTensorsBackToBackAfterEachShardHeader) {
    for (uint64_t limit : {uint64_t{5} << 30, uint64_t{20000}}) {
        const MergePlan p = sample_plan(limit);
        ASSERT_EQ(p.shard_files.size(), limit > 100000 ? 1u : 4u);  // 16 KB tensors; components and the norm join
        for (size_t s = 0; s < p.shard_files.size(); ++s) {
            std::vector<TensorSpec> specs;
            uint64_t end = 0;
            for (const auto& it : p.items)
                for (const auto& o : it.outputs) {
                    if (o.shard != static_cast<int>(s)) continue;
                    if (!specs.empty()) EXPECT_EQ(o.offset, end) << o.name;  // the first: against the header below
                    specs.push_back({o.name, o.dtype, o.shape});
                    end = o.offset + o.nbytes;
                }
            ASSERT_FALSE(specs.empty());
            uint64_t first = 0;
            for (const auto& it : p.items)
                for (const auto& o : it.outputs)
                    if (o.shard == static_cast<int>(s) && first == 0) first = o.offset;
            EXPECT_EQ(first, safetensors_header(specs, default_metadata()).size());
            EXPECT_EQ(end, p.shard_bytes[s]);
        }
        for (const auto& it : p.items)  // a component stays in its weight's shard
            for (const auto& o : it.outputs) EXPECT_EQ(o.shard, it.outputs.front().shard) << o.name;
    }
}

TEST(MergePlan, JsonRoundTripsAndRejectsGarbage) {
    const MergePlan p = sample_plan(20000);
    EXPECT_EQ(MergePlan::from_json(p.to_json(), "plan").to_json(), p.to_json());
    EXPECT_THROW(MergePlan::from_json("{\"to\": \"bf16\"}", "plan"), InputError);
    std::string bad = p.to_json();
    bad.replace(bad.find("\"merged\""), 8, "\"melted\"");
    EXPECT_THROW(MergePlan::from_json(bad, "plan"), InputError);
}

TEST(MergePlan, DistributionCoversEveryItemOnceForAnyRankCount) {
    const MergePlan p = sample_plan(5000000000ULL);
    for (int ranks : {1, 2, 3, 7}) {
        const auto work = distribute_merge(p, ranks);
        ASSERT_EQ(work.size(), static_cast<size_t>(ranks));
        std::multiset<int> seen;
        for (const auto& w : work) seen.insert(w.begin(), w.end());
        EXPECT_EQ(seen.size(), p.items.size());
        for (size_t i = 0; i < p.items.size(); ++i) EXPECT_EQ(seen.count(static_cast<int>(i)), 1u);
        EXPECT_EQ(work, distribute_merge(p, ranks));  // a pure function
    }
}

TEST(PeftAdapter, PatternKeysFollowPeftGetPatternKey) {
    const nlohmann::json pattern = {{"q_proj", 4}, {"layers\\.1\\.mlp\\..*", 16}};
    const auto* a = peft_pattern_for(pattern, "model.layers.0.self_attn.q_proj");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->get<int>(), 4);
    const auto* b = peft_pattern_for(pattern, "model.layers.1.mlp.up_proj");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->get<int>(), 16);
    EXPECT_EQ(peft_pattern_for(pattern, "model.layers.0.self_attn.qq_proj"), nullptr);  // "(.*\.)?" needs a dot
    EXPECT_EQ(peft_pattern_for(pattern, "model.layers.0.mlp.up_proj"), nullptr);
}

TEST(PeftAdapter, TargetModulesListRegexAndAllLinear) {
    PeftAdapter a;
    a.target_modules = {"q_proj", "mlp.up_proj"};
    EXPECT_TRUE(a.targets("model.layers.3.self_attn.q_proj"));
    EXPECT_TRUE(a.targets("model.layers.3.mlp.up_proj"));
    EXPECT_FALSE(a.targets("model.layers.3.self_attn.k_proj"));
    EXPECT_FALSE(a.targets("model.layers.3.self_attn.xq_proj"));
    a.target_modules = ".*layers\\.[01]\\..*_proj";
    EXPECT_TRUE(a.targets("model.layers.1.mlp.down_proj"));
    EXPECT_FALSE(a.targets("model.layers.2.mlp.down_proj"));
    a.target_modules = "all-linear";
    EXPECT_TRUE(a.targets("model.layers.2.mlp.down_proj"));
}
