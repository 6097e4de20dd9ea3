// Units of the exporter: PEFT key names and adapter_config.json (FORMATS.md 4), bitsandbytes'
// quant_state JSON bytes and 4-bit tensor specs (FORMATS.md 2), which backbone forms a run may
// be exported in, and the all-or-nothing output folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "io/export_format.hpp"
#include "io/output_folder.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using namespace loftq;

TEST(ExportNames, PeftKeysRoundTrip) {
    const std::string t = "model.layers.0.self_attn.q_proj.weight";
    EXPECT_EQ(module_path(t), "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(module_name(t), "q_proj");
    EXPECT_EQ(lora_a_key(t), "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    EXPECT_EQ(lora_b_key(t), "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
    char which = 0;
    EXPECT_EQ(tensor_of_lora_key(lora_b_key(t), which), t);
    EXPECT_EQ(which, 'B');
    EXPECT_EQ(tensor_of_lora_key("model.layers.0.mlp.up_proj.weight", which), "");
    EXPECT_THROW(module_path("model.norm.bias"), InputError);
    EXPECT_THROW(module_path(".weight"), InputError);
}

TEST(ExportAdapterConfig, EveryFieldPeftReads) {
    AdapterSettings s;
    s.base_model = "models/llama";
    s.lora_alpha = 16;
    s.bits = 4;
    s.iters = 5;
    s.module_ranks = {{"model.layers.0.self_attn.v_proj", 64}, {"model.layers.0.mlp.down_proj", 64},
                      {"model.layers.0.self_attn.q_proj", 64}};
    const nlohmann::json j = adapter_config_json(s);
    const nlohmann::json want = {
        {"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"base_model_name_or_path", "models/llama"},
        {"r", 64}, {"lora_alpha", 16}, {"lora_dropout", 0.0},
        {"target_modules", {"down_proj", "q_proj", "v_proj"}}, {"init_lora_weights", true}, {"bias", "none"},
        {"fan_in_fan_out", false}, {"inference_mode", true}, {"modules_to_save", nullptr}, {"use_rslora", false},
        {"rank_pattern", nlohmann::json::object()}, {"alpha_pattern", nlohmann::json::object()},
        {"loftq_config", {{"loftq_bits", 4}, {"loftq_iter", 5}}}};
    EXPECT_EQ(j, want) << j.dump();
    EXPECT_TRUE(j["lora_alpha"].is_number_integer());  // 16, not 16.0
}

TEST(ExportAdapterConfig, RealAlphaAndPerModuleRanks) {
    AdapterSettings s;
    s.lora_alpha = 12.5;
    s.rslora = true;
    s.bits = 2.5;
    s.module_ranks = {{"model.layers.0.self_attn.q_proj", 16}, {"model.layers.1.self_attn.q_proj", 8},
                      {"model.layers.2.self_attn.q_proj", 16}};
    const nlohmann::json j = adapter_config_json(s);
    EXPECT_EQ(j["r"], 16);
    EXPECT_DOUBLE_EQ(j["lora_alpha"].get<double>(), 12.5);
    EXPECT_EQ(j["use_rslora"], true);
    EXPECT_EQ(j["rank_pattern"], (nlohmann::json{{"model.layers.1.self_attn.q_proj", 8}}));
    EXPECT_DOUBLE_EQ(j["loftq_config"]["loftq_bits"].get<double>(), 2.5);
}

TEST(ExportBnb4, QuantStateIsJsonDumpsText) {
    Bnb4State s{"nf4", 64, "bfloat16", 64, 64, false, 0.0f};
    EXPECT_EQ(bnb4_quant_state_json(s),
              R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64]})");
    s.nested = true;
    s.nested_offset = 0.0123456789f;
    const std::string text = bnb4_quant_state_json(s);
    EXPECT_EQ(text, R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64], )"
                    R"("nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1.23456791e-02})");
    // 9 significant digits give the float32 back, and the length does not depend on the value.
    const double parsed = nlohmann::json::parse(text)["nested_offset"].get<double>();
    EXPECT_EQ(static_cast<float>(parsed), s.nested_offset);
    s.nested_offset = 3.0f;
    EXPECT_EQ(bnb4_quant_state_json(s).size(), text.size());
}

TEST(ExportBnb4, TensorSpecs) {
    MatrixLayout m;
    m.name = "model.layers.0.mlp.down_proj.weight";
    m.rows = 3;
    m.cols = 201;  // odd numel: 603 elements, 302 bytes, 10 blocks of 64
    m.format = "fp4";
    m.blocksize = 64;
    m.nblocks = 10;
    m.double_quant = true;
    const auto specs = bnb4_tensor_specs(m, 77);
    ASSERT_EQ(specs.size(), 6u);
    const std::string p = m.name;
    EXPECT_EQ(specs[0].name, p);
    EXPECT_EQ(specs[0].dtype, DType::U8);
    EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{302, 1}));
    EXPECT_EQ(specs[1].name, p + ".absmax");
    EXPECT_EQ(specs[1].dtype, DType::U8);  // double-quantized
    EXPECT_EQ(specs[1].shape, (std::vector<int64_t>{10}));
    EXPECT_EQ(specs[2].name, p + ".quant_map");
    EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{16}));
    EXPECT_EQ(specs[3].name, p + ".nested_absmax");
    EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{1}));
    EXPECT_EQ(specs[4].name, p + ".nested_quant_map");
    EXPECT_EQ(specs[4].shape, (std::vector<int64_t>{256}));
    EXPECT_EQ(specs[5].name, p + ".quant_state.bitsandbytes__fp4");
    EXPECT_EQ(specs[5].shape, (std::vector<int64_t>{77}));
    m.double_quant = false;
    const auto plain = bnb4_tensor_specs(m, 70);
    ASSERT_EQ(plain.size(), 4u);
    EXPECT_EQ(plain[1].dtype, DType::F32);
}

TEST(ExportBnb4, ComponentsShareTheWeightsShard) {
    std::vector<TensorSpec> specs = {{"a", DType::F32, {10}},  // 40 bytes
                                     {"w", DType::U8, {30}},   // 30 + 8 + 4 kept together
                                     {"w.absmax", DType::F32, {2}},
                                     {"w.state", DType::U8, {4}},
                                     {"b", DType::U8, {40}}};
    const std::vector<bool> keep = {false, false, true, true, false};
    const auto plain = plan_shards(specs, 75);
    ASSERT_EQ(plain.size(), 2u);
    EXPECT_EQ(plain[0].tensors, (std::vector<size_t>{0, 1}));  // 70 bytes: w's components split off
    const auto grouped = plan_shards(specs, 75, keep);
    ASSERT_EQ(grouped.size(), 3u);
    EXPECT_EQ(grouped[0].tensors, (std::vector<size_t>{0}));
    EXPECT_EQ(grouped[1].tensors, (std::vector<size_t>{1, 2, 3}));
    EXPECT_EQ(grouped[2].tensors, (std::vector<size_t>{4}));
    // A group larger than the limit still gets one shard of its own.
    const auto small = plan_shards(specs, 20, keep);
    EXPECT_EQ(small[1].tensors, (std::vector<size_t>{1, 2, 3}));
}

TEST(ExportBnb4, QuantizationConfigAsFormatsLists) {
    const nlohmann::json q = bnb4_quantization_config("nf4", false, "bfloat16");
    EXPECT_EQ(q, nlohmann::json::parse(R"({"quant_method": "bitsandbytes", "load_in_4bit": true,
        "load_in_8bit": false, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": false,
        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8", "llm_int8_threshold": 6.0,
        "llm_int8_skip_modules": null, "llm_int8_has_fp16_weight": false,
        "llm_int8_enable_fp32_cpu_offload": false, "_load_in_4bit": true, "_load_in_8bit": false})"));
}

namespace {

RunLayout layout_of(const std::string& format, int64_t blocksize, bool dq) {
    MatrixLayout m;
    m.name = "model.layers.0.self_attn.q_proj.weight";
    m.format = format;
    m.blocksize = blocksize;
    m.double_quant = dq;
    return {m};
}

// "" = none requested (the run's own backbone).
std::optional<Backbone> wanted(const std::string& name) {
    return name.empty() ? std::nullopt : std::optional<Backbone>(parse_backbone(name));
}

Backbone resolved(const std::string& requested, const std::string& run_bb, const RunLayout& layout) {
    return resolve_export_backbone(wanted(requested), parse_backbone(run_bb), layout, "r");
}

std::string refusal(const std::string& requested, const std::string& run_bb, const RunLayout& layout) {
    try {
        resolve_export_backbone(wanted(requested), parse_backbone(run_bb), layout, "run.h5");
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.setting(), "backbone") << e.what();
        return e.what();
    }
    return "";
}

}  // namespace

TEST(ExportBackbone, ExactCombinationsOnly) {
    const auto nf4 = layout_of("nf4", 64, false);
    EXPECT_EQ(resolved("", "bf16", nf4), Backbone::BF16);
    EXPECT_EQ(resolved("", "bnb4", nf4), Backbone::BNB4);
    EXPECT_EQ(resolved("bnb4", "fp16", nf4), Backbone::BNB4);
    EXPECT_EQ(resolved("bnb4", "bf16", layout_of("nf4", 64, true)), Backbone::BNB4);
    EXPECT_EQ(resolved("bnb4", "bf16", layout_of("fp4", 256, false)), Backbone::BNB4);
    EXPECT_EQ(resolved("", "fp32", layout_of("nf2", 64, false)), Backbone::FP32);

    EXPECT_NE(refusal("bf16", "bnb4", nf4).find("re-run the quantization for a bf16 backbone"), std::string::npos);
    EXPECT_NE(refusal("fp16", "bf16", nf4).find("fp16 backbone: run file"), std::string::npos);
    // nf2 loads through NF4: a bnb4 backbone holds it (as NF4 codes), from a bf16 run too.
    EXPECT_EQ(resolved("bnb4", "bf16", layout_of("nf2", 64, false)), Backbone::BNB4);
    EXPECT_EQ(resolved("", "bnb4", layout_of("nf2", 128, false)), Backbone::BNB4);
    EXPECT_NE(refusal("", "bf16", layout_of("nf2", 128, false)).find("blocksize 64"), std::string::npos);
    EXPECT_NE(refusal("bnb4", "bf16", layout_of("nf8", 64, false)).find("bitsandbytes cannot hold nf8"), std::string::npos);
    EXPECT_NE(refusal("bnb4", "bf16", layout_of("uniform2", 64, false)).find("cannot hold uniform2"), std::string::npos);
    // LLM.int8: the int8 backbone from any int8 run; never for other formats, never bnb4.
    EXPECT_EQ(resolved("int8", "bf16", layout_of("int8", 172, false)), Backbone::INT8);
    EXPECT_EQ(resolved("", "fp16", layout_of("int8", 64, false)), Backbone::FP16);
    EXPECT_NE(refusal("int8", "bf16", nf4).find("int8 backbone holds only LLM.int8"), std::string::npos);
    EXPECT_NE(refusal("bnb4", "bf16", layout_of("int8", 64, false)).find("cannot hold int8"), std::string::npos);
    EXPECT_NE(refusal("bf16", "int8", layout_of("int8", 64, false)).find("re-run the quantization"), std::string::npos);
    EXPECT_NE(refusal("", "bf16", layout_of("nf4", 128, false)).find("blocksize 64"), std::string::npos);
    EXPECT_NE(refusal("", "bf16", layout_of("nf4", 64, true)).find("export a bnb4 backbone"), std::string::npos);
    for (const auto& msg : {refusal("bf16", "bnb4", nf4), refusal("", "bf16", layout_of("nf4", 128, false))})
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(ExportBnb4, Nf2CodesAreStoredAsNf4Codes) {
    EXPECT_EQ(bnb4_quant_type(*find_format("nf2")), "nf4");
    EXPECT_EQ(bnb4_quant_type(*find_format("fp4")), "fp4");
    // NF2 codes 0..3 of 8 elements, LoftQ packing (element j of a byte at bits 2j).
    const uint8_t nf2[2] = {static_cast<uint8_t>(0 | 1 << 2 | 2 << 4 | 3 << 6), static_cast<uint8_t>(3 | 2 << 2 | 1 << 4)};
    uint8_t nf4[4] = {0xAA, 0xAA, 0xAA, 0xAA};
    nf2_codes_as_nf4(nf2, 8, nf4);
    EXPECT_EQ(nf4[0], 0x07);  // codes 0 (-1) and 7 (0): first element in the high nibble
    EXPECT_EQ(nf4[1], 0xBF);  // 11 (0.3379), 15 (1)
    EXPECT_EQ(nf4[2], 0xFB);
    EXPECT_EQ(nf4[3], 0x70);  // 7, then code 0 (-1)
    const MatrixLayout m = layout_of("nf2", 64, false).front();
    EXPECT_EQ(bnb4_tensor_specs(m, 70).back().name, m.name + ".quant_state.bitsandbytes__nf4");
}

TEST(OutputFolder, AllOrNothing) {
    loftq::testing::TempDir tmp;
    const std::string target = tmp / "out";
    {
        OutputFolder out(target, false);
        write_file_synced(out / "a.txt", "one");
        EXPECT_FALSE(fs::exists(target));
        EXPECT_TRUE(fs::exists(out.temp_path() + "/a.txt"));
    }  // destroyed uncommitted: the temporary is gone and nothing appeared
    EXPECT_FALSE(fs::exists(target));
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 0);
    {
        OutputFolder out(target, false);
        write_file_synced(out / "a.txt", "one");
        out.commit();
    }
    EXPECT_EQ(loftq::testing::read_file(target + "/a.txt"), "one");
    try {
        OutputFolder again(target, false);
        FAIL() << "an existing output was not refused";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.setting(), "output");  // the command line names it --output
        EXPECT_NE(std::string(e.what()).find(target), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("only when overwriting is asked for"), std::string::npos) << e.what();
    }
    {
        OutputFolder out(target + "/", true);
        write_file_synced(out / "b.txt", "two");
        EXPECT_TRUE(fs::exists(target + "/a.txt"));  // the old folder stays until commit
        out.commit();
    }
    EXPECT_FALSE(fs::exists(target + "/a.txt"));
    EXPECT_EQ(loftq::testing::read_file(target + "/b.txt"), "two");
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
    EXPECT_THROW(OutputFolder(tmp / "missing/out", false), ConfigError);
}

TEST(OutputFolder, StaleTemporaryOfADeadProcessIsRemoved) {
    loftq::testing::TempDir tmp;
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    std::string h(host);
    for (auto& c : h)
        if (c == '/' || c == '-') c = '_';
    // A pid far above pid_max (4194304 at most on Linux) belongs to no process.
    const std::string stale = tmp / (".out.tmp-" + h + "-999999999");
    fs::create_directory(stale);
    OutputFolder out(tmp / "out", false);
    EXPECT_FALSE(fs::exists(stale));
}
