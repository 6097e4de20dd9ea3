// The model plan: targets, shapes against config.json, mixed bits, order, rejections, JSON.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "plan/distribution.hpp"
#include "plan/plan.hpp"
#include "support/paths.hpp"

using namespace loftq;
using loftq::testing::stories_dir;

namespace {

TensorCatalogue stories_catalogue() { return read_catalogue(Checkpoint(stories_dir())); }

RunSpec opts_rank(int rank) {
    RunSpec o;
    o.loftq.svd_options.rank = rank;
    return o;
}

template <typename E>
std::string error_of(const ModelConfig& m, const TensorCatalogue& t, const RunSpec& o) {
    try {
        build_plan(m, t, o);
    } catch (const E& e) {
        return e.what();
    }
    return "(no error)";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(Plan, Stories260KHas35MatricesWithReadmeShapes) {
    const ModelConfig m = read_model_config(stories_dir());
    const Plan p = build_plan(m, stories_catalogue(), opts_rank(8));
    ASSERT_EQ(p.matrices.size(), 35u);
    const std::vector<std::pair<std::string, std::vector<int64_t>>> per_layer{
        {"q_proj", {64, 64}},     {"k_proj", {32, 64}},  {"v_proj", {32, 64}},   {"o_proj", {64, 64}},
        {"gate_proj", {172, 64}}, {"up_proj", {172, 64}}, {"down_proj", {64, 172}}};
    for (size_t i = 0; i < p.matrices.size(); ++i) {
        const MatrixPlan& mp = p.matrices[i];
        const auto& [module, shape] = per_layer[i % 7];
        EXPECT_EQ(mp.index, static_cast<int>(i));
        EXPECT_EQ(mp.layer, static_cast<int>(i / 7));
        EXPECT_EQ(mp.module, module);
        EXPECT_EQ((std::vector<int64_t>{mp.rows, mp.cols}), shape) << mp.tensor;
        EXPECT_EQ(mp.dtype, DType::F32);
        EXPECT_EQ(mp.bits, 4);
        EXPECT_EQ(mp.f32_bytes, static_cast<uint64_t>(mp.rows * mp.cols * 4));
        EXPECT_GT(mp.cost, 0);
    }
    EXPECT_EQ(p.matrices[9].tensor, "model.layers.1.self_attn.v_proj.weight");
    EXPECT_EQ(p.matrices[9].module_path(), "model.layers.1.self_attn.v_proj");
    // A rank above a matrix's smaller side is that side for the matrix (PEFT's rank_pattern
    // states it in the adapter): k_proj / v_proj [32, 64] get 32, q_proj [64, 64] keeps 64.
    const Plan wide = build_plan(m, stories_catalogue(), opts_rank(64));
    for (const auto& mp : wide.matrices)
        EXPECT_EQ(mp.rank, std::min<int64_t>(64, std::min(mp.rows, mp.cols))) << mp.tensor;
    EXPECT_EQ(wide.matrices[1].rank, 32);
    EXPECT_EQ(wide.matrices[0].rank, 64);
    EXPECT_EQ(Plan::from_json(wide.to_json()).matrices[1].rank, 32);
}

TEST(Plan, Llama70BHas560MatricesWithExactShapes) {
    const ModelConfig m = preset_model_config("llama2-70b");
    const Plan p = build_plan(m, expected_catalogue(m, DType::BF16), RunSpec{});
    ASSERT_EQ(p.matrices.size(), 560u);
    const std::vector<std::vector<int64_t>> shapes{{8192, 8192},  {1024, 8192},  {1024, 8192}, {8192, 8192},
                                                   {28672, 8192}, {28672, 8192}, {8192, 28672}};
    int64_t params = 0;
    for (const auto& mp : p.matrices) {
        EXPECT_EQ((std::vector<int64_t>{mp.rows, mp.cols}), shapes[mp.index % 7]) << mp.tensor;
        EXPECT_EQ(mp.layer, mp.index / 7);
        params += mp.rows * mp.cols;
    }
    EXPECT_EQ(params, 80LL * (2 * 8192 * 8192 + 2 * 1024 * 8192 + 3 * 28672LL * 8192));
    EXPECT_EQ(p.matrices.back().tensor, "model.layers.79.mlp.down_proj.weight");
    // Bigger matrices cost more; a 28672 x 8192 randomized one less than exact.
    EXPECT_GT(p.matrices[4].cost, p.matrices[0].cost);
    EXPECT_GT(p.matrices[0].cost, p.matrices[1].cost);
    EXPECT_EQ(p.matrices[4].svd, SvdMethod::randomized);
    EXPECT_LT(p.matrices[4].cost, estimate_cost(28672, 8192, SvdMethod::exact, RunSpec{}));
}

TEST(Plan, MistralAndCodeLlamaConfigs) {
    ModelConfig mis = preset_model_config("llama2-7b");
    mis.model_type = "mistral";
    mis.architectures = {"MistralForCausalLM"};
    mis.intermediate_size = 14336;
    mis.num_key_value_heads = 8;
    mis.sliding_window = 4096;
    const Plan a = build_plan(mis, expected_catalogue(mis, DType::BF16), RunSpec{});
    ASSERT_EQ(a.matrices.size(), 32u * 7u);
    EXPECT_EQ(a.matrices[1].rows, 1024);
    EXPECT_EQ(a.matrices[6].cols, 14336);
    const ModelConfig cl = preset_model_config("codellama-70b");
    const Plan b = build_plan(cl, expected_catalogue(cl, DType::BF16), RunSpec{});
    EXPECT_EQ(b.matrices.size(), 560u);  // vocab 32016 touches no target
}

TEST(Plan, MixedPrecisionFollowsLoftQRule) {
    const ModelConfig m = preset_model_config("llama2-7b");
    const auto cat = expected_catalogue(m, DType::F16);
    for (const auto& [bits, four] : std::vector<std::pair<double, int>>{{2.25, 4}, {2.5, 8}, {3, 16}}) {
        RunSpec o;
        o.bits = bits;
        const Plan p = build_plan(m, cat, o);
        for (const auto& mp : p.matrices) EXPECT_EQ(mp.bits, mp.layer < four ? 4 : 2) << bits << " " << mp.tensor;
    }
    EXPECT_EQ(bits_for_layer(2, 0, 32), 2);
    EXPECT_EQ(bits_for_layer(8, 31, 32), 8);
    EXPECT_EQ(bits_for_layer(2.25, 1, 5), 2);  // floor(5 * 0.25 / 2) = 0 four-bit layers
    EXPECT_EQ(bits_for_layer(3, 1, 5), 4);     // floor(5 / 2) = 2
    EXPECT_EQ(bits_for_layer(3, 2, 5), 2);
    EXPECT_EQ(bits_for_layer(2.5, 19, 80), 4);  // 80 layers, 2.5 bits: first 20
    EXPECT_EQ(bits_for_layer(2.5, 20, 80), 2);
}

TEST(Plan, TargetSubsetsKeepPlanOrder) {
    const ModelConfig m = preset_model_config("tiny");
    const auto cat = expected_catalogue(m, DType::BF16);
    RunSpec o = opts_rank(8);
    o.targets = {"down_proj", "q_proj"};
    Plan p = build_plan(m, cat, o);
    ASSERT_EQ(p.matrices.size(), 2u * static_cast<size_t>(m.num_hidden_layers));
    EXPECT_EQ(p.matrices[0].module, "q_proj");
    EXPECT_EQ(p.matrices[1].module, "down_proj");
    EXPECT_EQ(p.matrices[2].layer, 1);
    o.targets = {"self_attn.v_proj"};
    p = build_plan(m, cat, o);
    ASSERT_EQ(p.matrices.size(), static_cast<size_t>(m.num_hidden_layers));
    EXPECT_EQ(p.matrices[0].module, "v_proj");
    o.targets = {"model.layers.2.mlp.up_proj"};
    p = build_plan(m, cat, o);
    ASSERT_EQ(p.matrices.size(), 1u);
    EXPECT_EQ(p.matrices[0].layer, 2);
}

TEST(Plan, RejectsUnknownTargetsAndEmbeddings) {
    const ModelConfig m = preset_model_config("tiny");
    const auto cat = expected_catalogue(m, DType::BF16);
    for (const char* t : {"qproj", "lm_head", "embed_tokens", "input_layernorm"}) {
        RunSpec o = opts_rank(8);
        o.targets = {"q_proj", t};
        const std::string msg = error_of<ConfigError>(m, cat, o);
        EXPECT_TRUE(has(msg, "matches no linear weight")) << msg;
        EXPECT_TRUE(has(msg, t)) << msg;
    }
}

TEST(Plan, RejectsShapeMismatchNamingTensorAndConfig) {
    const ModelConfig m = preset_model_config("tiny");
    auto cat = expected_catalogue(m, DType::BF16);
    cat["model.layers.1.self_attn.k_proj.weight"].shape = {128, 128};
    const std::string msg = error_of<InputError>(m, cat, opts_rank(8));
    EXPECT_TRUE(has(msg, "model.layers.1.self_attn.k_proj.weight")) << msg;
    EXPECT_TRUE(has(msg, "config.json")) << msg;
    EXPECT_TRUE(has(msg, "[128, 128]")) << msg;
    EXPECT_TRUE(has(msg, "[64, 128]")) << msg;
    // Checked even when the tensor is not a target: the checkpoint disagrees with its config.
    RunSpec only_q = opts_rank(8);
    only_q.targets = {"q_proj"};
    EXPECT_THROW(build_plan(m, cat, only_q), InputError);
}

TEST(Plan, RejectsMissingExtraAndNonFloatTensors) {
    const ModelConfig m = preset_model_config("tiny");
    auto missing = expected_catalogue(m, DType::BF16);
    missing.erase("model.layers.3.mlp.up_proj.weight");
    EXPECT_TRUE(has(error_of<InputError>(m, missing, opts_rank(8)), "model.layers.3.mlp.up_proj.weight"));
    auto extra = expected_catalogue(m, DType::BF16);
    extra["model.layers.4.mlp.up_proj.weight"] = TensorInfo{"model.layers.4.mlp.up_proj.weight", DType::BF16, {384, 128}, 0, 0};
    EXPECT_TRUE(has(error_of<InputError>(m, extra, opts_rank(8)), "num_hidden_layers"));
    // A linear weight of a module the Llama layout lacks is a target like any other (the clients
    // quantize every nn.Linear), planned after the known modules of its layer.
    auto odd = expected_catalogue(m, DType::BF16);
    odd["model.layers.0.mlp.extra_proj.weight"] = TensorInfo{"model.layers.0.mlp.extra_proj.weight", DType::BF16, {16, 128}, 0, 0};
    const Plan with_odd = build_plan(m, odd, opts_rank(8));
    ASSERT_EQ(with_odd.matrices.size(), 7u * 4u + 1u);
    EXPECT_EQ(with_odd.matrices[7].tensor, "model.layers.0.mlp.extra_proj.weight");
    auto ints = expected_catalogue(m, DType::BF16);
    ints["model.layers.0.self_attn.o_proj.weight"].dtype = DType::I8;
    EXPECT_TRUE(has(error_of<InputError>(m, ints, opts_rank(8)), "I8"));
    // Norms, embeddings and lm_head never become targets and are not shape-checked by the plan.
    auto norms = expected_catalogue(m, DType::BF16);
    EXPECT_EQ(build_plan(m, norms, opts_rank(8)).matrices.size(), 7u * 4u);
}

TEST(Plan, SplitMatricesAreRandomized) {
    const ModelConfig m = preset_model_config("llama2-70b");
    RunSpec o;
    o.loftq.svd = SvdChoice::randomized;
    o.split_threshold = 512ull << 20;  // 512 MiB: only the 28672 x 8192 MLP matrices (940 MB)
    const Plan p = build_plan(m, expected_catalogue(m, DType::BF16), o);
    for (const auto& mp : p.matrices) {
        const bool mlp = mp.rows == 28672 || mp.cols == 28672;
        EXPECT_EQ(mp.shards > 1, mlp) << mp.tensor;
        EXPECT_EQ(mp.svd, SvdMethod::randomized) << mp.tensor;
    }
}

// The loop cannot run the exact SVD on a split matrix: the plan (rank 0, before the run file
// exists) refuses it, naming the setting and a split tensor, so the error is collective.
TEST(Plan, ExactSvdOnASplitMatrixIsRefused) {
    const ModelConfig m = preset_model_config("llama2-70b");
    RunSpec o;
    o.loftq.svd = SvdChoice::exact;
    o.split_threshold = 512ull << 20;
    try {
        build_plan(m, expected_catalogue(m, DType::BF16), o);
        FAIL() << "accepted --svd exact with split matrices";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.setting(), "svd");
        EXPECT_TRUE(has(e.what(), "model.layers.0.mlp.gate_proj.weight")) << e.what();
    }
    o.split_threshold = 0;
    EXPECT_EQ(build_plan(m, expected_catalogue(m, DType::BF16), o).matrices.size(), 560u);
}

// "model.layers.00." is not layer 0: PyTorch never writes a module index with a leading zero, and
// transformers would not load such a tensor into layer 0.
TEST(Plan, RejectsLayerIndexWithLeadingZero) {
    const ModelConfig m = preset_model_config("tiny");
    for (const char* name : {"model.layers.00.self_attn.q_proj.weight", "model.layers.01.mlp.up_proj.weight"}) {
        auto cat = expected_catalogue(m, DType::BF16);
        cat[name] = TensorInfo{name, DType::BF16, {384, 128}, 0, 0};
        const std::string msg = error_of<InputError>(m, cat, opts_rank(8));
        EXPECT_TRUE(has(msg, name)) << msg;
        EXPECT_TRUE(has(msg, "leading zero")) << msg;
    }
    // Layer 0 and layer 10 still are.
    EXPECT_EQ(build_plan(m, expected_catalogue(m, DType::BF16), opts_rank(8)).matrices.front().layer, 0);
}

// One decision of "split": a matrix over the threshold that cannot be cut (too few rows for two
// shards of the sketch width) runs whole, and the plan costs it whole, with the method it runs.
TEST(Plan, UnsplittableMatrixIsPlannedWhole) {
    const ModelConfig m = preset_model_config("tiny");
    RunSpec o;
    o.loftq.svd_options.rank = 60;  // sketch width 76 > half of every tiny matrix's rows
    o.loftq.svd_options.oversample = 16;
    o.loftq.svd = SvdChoice::automatic;  // exact for every whole tiny matrix (min side < 256)
    o.split_threshold = 1024;
    const Plan p = build_plan(m, expected_catalogue(m, DType::BF16), o);
    const Distribution d = distribute(p, 4);
    for (const auto& mp : p.matrices) {
        EXPECT_EQ(d.matrices[static_cast<size_t>(mp.index)].shards, mp.shards) << mp.tensor;
        if (mp.shards == 1) EXPECT_EQ(mp.svd, SvdMethod::exact) << mp.tensor;
    }
}

TEST(Plan, JsonRoundTripIsExact) {
    const ModelConfig m = preset_model_config("codellama-70b");
    RunSpec o;
    o.bits = 2.5;
    o.targets = {"q_proj", "down_proj"};
    o.split_threshold = 300000000;
    const Plan a = build_plan(m, expected_catalogue(m, DType::BF16), o);
    const std::string bytes = a.to_json();
    const Plan b = Plan::from_json(bytes);
    EXPECT_EQ(b.to_json(), bytes);
    ASSERT_EQ(b.matrices.size(), a.matrices.size());
    for (size_t i = 0; i < a.matrices.size(); ++i) {
        EXPECT_EQ(b.matrices[i].tensor, a.matrices[i].tensor);
        EXPECT_EQ(b.matrices[i].cost, a.matrices[i].cost);
        EXPECT_EQ(b.matrices[i].bits, a.matrices[i].bits);
        EXPECT_EQ(b.matrices[i].shards, a.matrices[i].shards);
        EXPECT_EQ(b.matrices[i].dtype, a.matrices[i].dtype);
    }
    EXPECT_EQ(b.model.vocab_size, 32016);
    EXPECT_EQ(b.spec.targets, o.targets);
    EXPECT_EQ(b.spec.split_threshold, o.split_threshold);
    EXPECT_THROW(Plan::from_json("{\"format\": \"loftq-plan-1\"}"), InputError);
    EXPECT_THROW(Plan::from_json(bytes.substr(0, bytes.size() / 2)), InputError);
}
