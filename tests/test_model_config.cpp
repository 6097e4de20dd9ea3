// ModelConfig: parsing real and hand-made config.json files, presets, rejections, round trip.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.hpp"
#include "plan/model_config.hpp"
#include "support/paths.hpp"

using namespace loftq;
using json = nlohmann::json;

namespace {

json mistral_7b() {
    return json::parse(R"({
      "architectures": ["MistralForCausalLM"], "model_type": "mistral",
      "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
      "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
      "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
      "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"})");
}

json codellama_70b() {
    return json::parse(R"({
      "architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
      "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32016,
      "max_position_embeddings": 16384, "rms_norm_eps": 1e-05, "rope_theta": 1000000,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16", "rope_scaling": null})");
}

std::string message_of(const json& doc) {
    try {
        parse_model_config(doc, "m/config.json");
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(ModelConfig, ReadsStories260K) {
    const ModelConfig c = read_model_config(loftq::testing::stories_dir());
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.hidden_size, 64);
    EXPECT_EQ(c.intermediate_size, 172);
    EXPECT_EQ(c.num_hidden_layers, 5);
    EXPECT_EQ(c.num_attention_heads, 8);
    EXPECT_EQ(c.num_key_value_heads, 4);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.vocab_size, 512);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.torch_dtype, "float32");
    const auto t = expected_tensors(c);
    EXPECT_EQ(t.size(), 47u);  // the README's tensor count; no lm_head (tied)
    EXPECT_EQ(t.back().name, "model.norm.weight");
}

TEST(ModelConfig, MistralWithGqaAndSlidingWindow) {
    const ModelConfig c = parse_model_config(mistral_7b(), "config.json");
    EXPECT_EQ(c.model_type, "mistral");
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.kv_rows(), 1024);
    ASSERT_TRUE(c.sliding_window.has_value());
    EXPECT_EQ(*c.sliding_window, 4096);
    EXPECT_EQ(linear_module_shape(c, "k_proj"), (std::vector<int64_t>{1024, 4096}));
    EXPECT_EQ(linear_module_shape(c, "down_proj"), (std::vector<int64_t>{4096, 14336}));
    json null_window = mistral_7b();
    null_window["sliding_window"] = nullptr;
    EXPECT_FALSE(parse_model_config(null_window, "config.json").sliding_window.has_value());
}

TEST(ModelConfig, CodeLlama70BMatchesPreset) {
    const ModelConfig c = parse_model_config(codellama_70b(), "config.json");
    const ModelConfig p = preset_model_config("codellama-70b");
    EXPECT_EQ(c.vocab_size, 32016);
    EXPECT_EQ(c.rope_theta, 1e6);
    EXPECT_EQ(c.head_dim, 128);
    for (const auto* cfg : {&c, &p}) {
        EXPECT_EQ(cfg->max_position_embeddings, 16384);
        EXPECT_EQ(cfg->kv_rows(), 1024);
    }
    const auto a = expected_tensors(c), b = expected_tensors(p);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].name, b[i].name);
        EXPECT_EQ(a[i].shape, b[i].shape);
    }
    EXPECT_EQ(a.size(), 2u + 80u * 9u + 1u);
    EXPECT_EQ(a.front().shape, (std::vector<int64_t>{32016, 8192}));
    EXPECT_EQ(a.back().name, "lm_head.weight");
}

TEST(ModelConfig, PresetsHavePublishedValues) {
    const ModelConfig s = preset_model_config("llama2-7b");
    EXPECT_EQ(s.hidden_size, 4096);
    EXPECT_EQ(s.intermediate_size, 11008);
    EXPECT_EQ(s.num_hidden_layers, 32);
    EXPECT_EQ(s.num_key_value_heads, 32);
    const ModelConfig m = preset_model_config("llama2-13b");
    EXPECT_EQ(m.hidden_size, 5120);
    EXPECT_EQ(m.intermediate_size, 13824);
    EXPECT_EQ(m.num_hidden_layers, 40);
    const ModelConfig l = preset_model_config("llama2-70b");
    EXPECT_EQ(l.hidden_size, 8192);
    EXPECT_EQ(l.intermediate_size, 28672);
    EXPECT_EQ(l.num_hidden_layers, 80);
    EXPECT_EQ(l.num_attention_heads, 64);
    EXPECT_EQ(l.num_key_value_heads, 8);
    EXPECT_EQ(l.vocab_size, 32000);
    const ModelConfig t = preset_model_config("tiny");
    EXPECT_EQ(t.hidden_size % 64, 0);
    EXPECT_EQ(t.intermediate_size % 64, 0);
    EXPECT_EQ(t.kv_rows() % 64, 0);
    EXPECT_THROW(preset_model_config("llama3-8b"), ConfigError);
}

TEST(ModelConfig, JsonRoundTripKeepsEveryField) {
    for (const auto& name : preset_names()) {
        const ModelConfig a = preset_model_config(name);
        const json j = model_config_to_json(a);
        EXPECT_EQ(j["architectures"][0], a.architectures.at(0));
        EXPECT_EQ(j["hidden_act"], "silu");
        const ModelConfig b = parse_model_config(j, name);
        EXPECT_EQ(b.hidden_size, a.hidden_size);
        EXPECT_EQ(b.num_key_value_heads, a.num_key_value_heads);
        EXPECT_EQ(b.vocab_size, a.vocab_size);
        EXPECT_EQ(b.rope_theta, a.rope_theta);
        EXPECT_EQ(b.max_position_embeddings, a.max_position_embeddings);
        EXPECT_EQ(b.torch_dtype, a.torch_dtype);
    }
    // Unknown fields of a real config survive.
    const json m = model_config_to_json(parse_model_config(mistral_7b(), "config.json"));
    EXPECT_EQ(m["architectures"][0], "MistralForCausalLM");
    EXPECT_EQ(m["sliding_window"], 4096);
}

TEST(ModelConfig, RejectsBadFieldsNamingFileAndField) {
    struct Case {
        const char* field;
        json value;
    };
    const std::vector<Case> cases{
        {"hidden_size", "4096"},    {"hidden_size", 0},          {"hidden_size", 4096.5},
        {"num_hidden_layers", -1},  {"num_key_value_heads", 7},  {"model_type", ""},
        {"torch_dtype", "int8"},    {"tie_word_embeddings", 1},  {"rope_theta", "big"},
        {"vocab_size", nullptr},    {"sliding_window", "4096"},
    };
    for (const auto& c : cases) {
        json doc = mistral_7b();
        doc[c.field] = c.value;
        const std::string msg = message_of(doc);
        EXPECT_NE(msg.find("m/config.json"), std::string::npos) << c.field << ": " << msg;
        EXPECT_NE(msg.find(c.field), std::string::npos) << c.field << ": " << msg;
    }
    // intermediate_size may be absent (any model_type is planned from its checkpoint).
    for (const char* field : {"hidden_size", "num_attention_heads", "model_type"}) {
        json doc = mistral_7b();
        doc.erase(field);
        const std::string msg = message_of(doc);
        EXPECT_NE(msg.find(field), std::string::npos) << msg;
        EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
    }
    EXPECT_THROW(parse_model_config(json::array(), "config.json"), InputError);
}

// Sizes stay far inside int64: q_rows = heads * head_dim and the element counts of every weight.
TEST(ModelConfig, RejectsDimensionsThatWouldOverflow) {
    for (const char* field : {"hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                              "head_dim"}) {
        json doc = mistral_7b();
        doc[field] = int64_t{1} << 40;
        if (std::string(field) == "num_attention_heads") doc["num_key_value_heads"] = int64_t{1} << 40;
        const std::string msg = message_of(doc);
        EXPECT_NE(msg.find(field), std::string::npos) << field << ": " << msg;
        EXPECT_NE(msg.find("maximum"), std::string::npos) << field << ": " << msg;
    }
    json big_q = mistral_7b();  // each factor allowed, the product not
    big_q["num_attention_heads"] = 1 << 12;
    big_q["num_key_value_heads"] = 1 << 12;
    big_q["head_dim"] = 1 << 12;
    EXPECT_NE(message_of(big_q).find("head_dim"), std::string::npos) << message_of(big_q);
    json vocab = mistral_7b();
    vocab["vocab_size"] = int64_t{1} << 30;
    EXPECT_NE(message_of(vocab).find("vocab_size"), std::string::npos);
    json llama70 = codellama_70b();
    EXPECT_EQ(parse_model_config(llama70, "c").q_rows(), 8192);
}

TEST(ModelConfig, ModelMustBeAFolder) {
    loftq::testing::TempDir dir;
    loftq::testing::write_file(dir / "model.safetensors", "not json");
    EXPECT_NO_THROW(require_model_folder(dir.path()));
    for (const std::string& bad : {dir / "model.safetensors", dir / "absent"}) {
        try {
            require_model_folder(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const ConfigError& e) {
            EXPECT_EQ(e.setting(), "model");
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
}

TEST(ModelConfig, RejectsUnreadableFiles) {
    loftq::testing::TempDir dir;
    EXPECT_THROW(read_model_config(dir.path()), InputError);
    loftq::testing::write_file(dir / "config.json", "{\"model_type\": \"llama\", ");
    try {
        read_model_config(dir.path());
        FAIL() << "truncated JSON accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
    }
}

// config.json is read as strictly as every other JSON: transformers' json.load would refuse a
// BOM, and of two values for one key nlohmann silently keeps one.
TEST(ModelConfig, RejectsDuplicateKeysBomAndNonFiles) {
    auto message = [](const std::string& path) {
        try {
            read_model_config(path);
        } catch (const InputError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    const std::string good = loftq::testing::read_file(loftq::testing::stories_dir() + "/config.json");
    loftq::testing::TempDir dup, bom, folder, missing;
    loftq::testing::write_file(dup / "config.json", "{\"model_type\": \"llama\", " + good.substr(good.find('{') + 1));
    std::string msg = message(dup.path());
    EXPECT_NE(msg.find(dup / "config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("duplicate key 'model_type'"), std::string::npos) << msg;
    loftq::testing::write_file(bom / "config.json", "\xef\xbb\xbf" + good);
    msg = message(bom.path());
    EXPECT_NE(msg.find("byte order mark"), std::string::npos) << msg;
    std::filesystem::create_directory(folder / "config.json");
    msg = message(folder.path());
    EXPECT_NE(msg.find(folder / "config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not a regular file (a folder)"), std::string::npos) << msg;
    msg = message(missing.path());
    EXPECT_NE(msg.find("No such file or directory (a model folder needs config.json)"), std::string::npos) << msg;
}
