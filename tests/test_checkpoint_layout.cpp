// Targets found from the checkpoint itself (issue #12): the layouts of the families users bring,
// as transformers 5.23's save_pretrained writes them (names and shapes measured with
// tests/client/held_modules.py), planned without a per-family schema; what stays 16-bit; the
// checks config.json still allows; the presets beyond Llama-2.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "plan/checkpoint_layout.hpp"
#include "plan/plan.hpp"

using namespace loftq;

namespace {

struct Builder {
    TensorCatalogue cat;
    void add(const std::string& name, std::vector<int64_t> shape, DType d = DType::BF16) {
        cat[name] = TensorInfo{name, d, std::move(shape), 0, 0};
    }
};

ModelConfig tiny_config(const std::string& type) {
    ModelConfig c;
    c.model_type = type;
    c.hidden_size = 128;
    c.intermediate_size = 256;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 32;
    c.vocab_size = 512;
    return c;
}

RunSpec rank(int r) {
    RunSpec o;
    o.loftq.svd_options.rank = r;
    return o;
}

std::vector<std::string> paths(const Plan& p) {
    std::vector<std::string> out;
    for (const auto& m : p.matrices) out.push_back(m.module_path());
    return out;
}

// gpt_neox: fused query_key_value, names outside "model.layers", embed_in / embed_out.
TensorCatalogue gpt_neox() {
    Builder b;
    b.add("gpt_neox.embed_in.weight", {512, 128});
    b.add("embed_out.weight", {512, 128});
    b.add("gpt_neox.final_layer_norm.weight", {128});
    for (int l = 0; l < 2; ++l) {
        const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
        b.add(p + "attention.query_key_value.weight", {384, 128});
        b.add(p + "attention.query_key_value.bias", {384});
        b.add(p + "attention.dense.weight", {128, 128});
        b.add(p + "mlp.dense_h_to_4h.weight", {512, 128});
        b.add(p + "mlp.dense_4h_to_h.weight", {128, 512});
        b.add(p + "input_layernorm.weight", {128});
    }
    return b.cat;
}

// qwen2_moe: per-expert Linears, a router, a shared expert and its [1, H] gate.
TensorCatalogue qwen2_moe() {
    Builder b;
    b.add("model.embed_tokens.weight", {512, 128});
    b.add("lm_head.weight", {512, 128});
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (const char* m : {"q_proj", "o_proj"}) b.add(p + "self_attn." + m + ".weight", {128, 128});
        for (const char* m : {"k_proj", "v_proj"}) b.add(p + "self_attn." + m + ".weight", {64, 128});
        b.add(p + "self_attn.q_proj.bias", {128});
        b.add(p + "mlp.gate.weight", {4, 128});
        for (int e = 0; e < 4; ++e) {
            const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
            b.add(x + "gate_proj.weight", {64, 128});
            b.add(x + "up_proj.weight", {64, 128});
            b.add(x + "down_proj.weight", {128, 64});
        }
        for (const char* m : {"gate_proj", "up_proj", "down_proj"}) b.add(p + "mlp.shared_expert." + m + ".weight", {128, 128});
        b.add(p + "mlp.shared_expert_gate.weight", {1, 128});
    }
    return b.cat;
}

}  // namespace

TEST(CheckpointLayout, ClassifiesByTheTable) {
    const auto cat = qwen2_moe();
    EXPECT_EQ(classify_tensor("model.embed_tokens.weight", {512, 128}, cat), HeldAs::embedding);
    EXPECT_EQ(classify_tensor("lm_head.weight", {512, 128}, cat), HeldAs::output_head);
    EXPECT_EQ(classify_tensor("model.layers.0.mlp.gate.weight", {4, 128}, cat), HeldAs::moe_router);
    EXPECT_EQ(classify_tensor("model.layers.0.mlp.experts.3.up_proj.weight", {64, 128}, cat), HeldAs::moe_expert);
    EXPECT_EQ(classify_tensor("model.layers.0.mlp.experts.gate_up_proj", {4, 128, 128}, cat), HeldAs::moe_expert);
    EXPECT_EQ(classify_tensor("model.layers.0.mlp.shared_expert_gate.weight", {1, 128}, cat), HeldAs::linear4bit);
    EXPECT_EQ(classify_tensor("model.layers.0.self_attn.q_proj.bias", {128}, cat), HeldAs::not_a_matrix);
    // "gate" is a router only beside experts: elsewhere it is a Linear like any other.
    EXPECT_EQ(classify_tensor("model.layers.0.block.gate.weight", {4, 128}, cat), HeldAs::linear4bit);
    EXPECT_EQ(layer_index("gpt_neox.layers.12.mlp.dense_4h_to_h.weight"), 12);
    EXPECT_EQ(layer_index("lm_head.weight"), std::nullopt);
    EXPECT_EQ(expert_index("model.layers.1.block_sparse_moe.experts.7.w2.weight"), 7);
    EXPECT_THROW(layer_index("model.layers.1.mlp.experts.07.w2.weight"), InputError);
}

TEST(CheckpointLayout, GptNeoXFusedAndOutsideModelLayers) {
    ModelConfig c = tiny_config("gpt_neox");
    c.num_key_value_heads = 4;
    c.intermediate_size = 512;
    const Plan p = build_plan(c, gpt_neox(), rank(8));
    EXPECT_EQ(paths(p), (std::vector<std::string>{
                            "gpt_neox.layers.0.attention.query_key_value", "gpt_neox.layers.0.attention.dense",
                            "gpt_neox.layers.0.mlp.dense_h_to_4h", "gpt_neox.layers.0.mlp.dense_4h_to_h",
                            "gpt_neox.layers.1.attention.query_key_value", "gpt_neox.layers.1.attention.dense",
                            "gpt_neox.layers.1.mlp.dense_h_to_4h", "gpt_neox.layers.1.mlp.dense_4h_to_h"}));
    EXPECT_EQ(p.matrices[0].rows, 384);
    EXPECT_EQ(p.matrices[4].layer, 1);
    // --targets narrows by PEFT's suffix rule; the output head is named as what it is.
    RunSpec o = rank(8);
    o.targets = {"dense"};
    EXPECT_EQ(build_plan(c, gpt_neox(), o).matrices.size(), 2u);
    o.targets = {"embed_out"};
    try {
        build_plan(c, gpt_neox(), o);
        FAIL() << "embed_out accepted as a target";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.setting(), "targets");
        EXPECT_NE(std::string(e.what()).find("embed_out is the output head"), std::string::npos) << e.what();
    }
}

TEST(CheckpointLayout, Qwen2MoeKeepsExpertsAndRoutersAndClipsTheGateRank) {
    ModelConfig c = tiny_config("qwen2_moe");
    c.num_experts = 4;
    const auto cat = qwen2_moe();
    const Plan p = build_plan(c, cat, rank(8));
    ASSERT_EQ(p.matrices.size(), 16u);  // per layer: q k v o, shared expert gate/up/down and its gate
    for (const auto& m : p.matrices) {
        EXPECT_EQ(m.tensor.find(".experts."), std::string::npos) << m.tensor;
        EXPECT_EQ(m.rank, m.module == "shared_expert_gate" ? 1 : 8) << m.tensor;
    }
    const KeptSummary kept = kept_in_16bit(cat);
    ASSERT_EQ(kept.groups.size(), 4u);
    EXPECT_EQ(kept.groups[3].kind, "MoE expert");
    EXPECT_EQ(kept.groups[3].tensors, 24);
    EXPECT_EQ(kept.groups[3].bytes, 24u * 64 * 128 * 2);
    EXPECT_EQ(kept.groups[2].kind, "MoE router");
    EXPECT_TRUE(kept.has_moe());
    EXPECT_NE(kept.text().find("MoE expert 24 tensors"), std::string::npos) << kept.text();
    // config.json's expert count is checked against the checkpoint.
    c.num_experts = 8;
    EXPECT_THROW(build_plan(c, cat, rank(8)), InputError);
}

TEST(CheckpointLayout, ChecksWhatConfigStates) {
    const ModelConfig c = tiny_config("qwen2_moe");
    auto cat = qwen2_moe();
    // A layer past num_hidden_layers; a layer without targets.
    auto extra = cat;
    extra["model.layers.2.self_attn.o_proj.weight"] = TensorInfo{"model.layers.2.self_attn.o_proj.weight", DType::BF16, {128, 128}, 0, 0};
    EXPECT_THROW(build_plan(c, extra, rank(8)), InputError);
    ModelConfig three = c;
    three.num_hidden_layers = 3;
    EXPECT_THROW(build_plan(three, cat, rank(8)), InputError);
    // tie_word_embeddings false in config.json needs a stored head.
    ModelConfig untied = c;
    untied.source = {{"tie_word_embeddings", false}};
    auto headless = cat;
    headless.erase("lm_head.weight");
    EXPECT_THROW(build_plan(untied, headless, rank(8)), InputError);
    untied.source = {{"tie_word_embeddings", true}};
    EXPECT_EQ(build_plan(untied, headless, rank(8)).matrices.size(), 16u);
    // q/k/v come together.
    auto missing = cat;
    missing.erase("model.layers.1.self_attn.k_proj.weight");
    try {
        build_plan(c, missing, rank(8));
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.k_proj.weight is missing"), std::string::npos)
            << e.what();
    }
}

TEST(CheckpointLayout, UnknownModelTypeIsParsed) {
    const nlohmann::json doc = {{"model_type", "acme_decoder"}, {"hidden_size", 128}, {"num_hidden_layers", 2},
                                {"num_attention_heads", 4},       {"vocab_size", 512},  {"sliding_window", 0},
                                {"num_local_experts", 4}};
    const ModelConfig c = parse_model_config(doc, "config.json");
    EXPECT_EQ(c.model_type, "acme_decoder");
    EXPECT_EQ(c.intermediate_size, 0);
    EXPECT_EQ(c.num_experts, 4);
    EXPECT_FALSE(c.sliding_window);
    // The plan of such a model goes through its JSON (rank 0 broadcasts it) unchanged.
    ModelConfig neox = c;
    neox.num_experts = 0;
    const Plan p = build_plan(neox, gpt_neox(), rank(8));
    EXPECT_EQ(Plan::from_json(p.to_json()).to_json(), p.to_json());
}

TEST(CheckpointLayout, Conv1DFamiliesAreRefusedByName) {
    ModelConfig c = tiny_config("gpt2");
    try {
        build_plan(c, gpt_neox(), rank(8));
        FAIL() << "gpt2 planned";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("model_type gpt2 holds its projections as Conv1D"), std::string::npos);
    }
}

TEST(CheckpointLayout, PresetsBeyondLlama2) {
    const Plan l3 = build_plan(preset_model_config("llama3-70b"), expected_catalogue(preset_model_config("llama3-70b"), DType::BF16), RunSpec{});
    EXPECT_EQ(l3.matrices.size(), 560u);
    EXPECT_EQ(preset_model_config("llama3-70b").vocab_size, 128256);
    EXPECT_EQ(model_config_to_json(preset_model_config("llama3-70b"))["rope_scaling"]["rope_type"], "llama3");

    const ModelConfig qw = preset_model_config("qwen2.5-72b");
    const auto qcat = expected_catalogue(qw, DType::BF16);
    EXPECT_EQ(qcat.count("model.layers.0.self_attn.q_proj.bias"), 1u);
    EXPECT_EQ(qcat.count("model.layers.0.self_attn.o_proj.bias"), 0u);
    const Plan q = build_plan(qw, qcat, RunSpec{});
    EXPECT_EQ(q.matrices.size(), 560u);
    EXPECT_EQ(q.matrices[4].rows, 29568);

    const ModelConfig mx = preset_model_config("mixtral-8x22b");
    const auto mcat = expected_catalogue(mx, DType::BF16);
    const Plan m = build_plan(mx, mcat, RunSpec{});
    EXPECT_EQ(m.matrices.size(), 56u * 4u);  // attention only: the experts stay 16-bit
    const KeptSummary kept = kept_in_16bit(mcat);
    ASSERT_TRUE(kept.has_moe());
    EXPECT_EQ(kept.groups.back().tensors, 56 * 8 * 3);
    EXPECT_GT(static_cast<double>(kept.groups.back().bytes) / kept.model_bytes, 0.9);
    const ModelConfig back = parse_model_config(model_config_to_json(mx), "x");
    EXPECT_EQ(back.num_experts, 8);
    EXPECT_EQ(back.model_type, "mixtral");
}
