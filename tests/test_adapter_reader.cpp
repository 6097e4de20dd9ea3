// io/adapter_reader: the PEFT adapter of an exported folder, as `loftq verify` reads it. The
// adapter is the real one of fuzz/corpus/adapter/export (a `loftq export`, see fuzz/make_corpus.py);
// the cases below change its adapter_config.json. Every refusal is one InputError naming the file
// (before: a rank_pattern value of the wrong type escaped as nlohmann's type_error, r = 0 gave
// an infinite scaling, a huge lora_alpha an infinite one).
#include "io/adapter_reader.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "support/paths.hpp"

using loftq::testing::TempDir;

namespace loftq {
namespace {

struct Seed {
    nlohmann::json config;
    std::string tensors;  // adapter_model.safetensors bytes
};

// A fuzz seed: 4-byte little-endian length, adapter_config.json, adapter_model.safetensors.
Seed read_seed(const std::string& name) {
    const std::string raw = testing::read_file(testing::source_dir() + "/fuzz/corpus/adapter/" + name);
    const auto* b = reinterpret_cast<const unsigned char*>(raw.data());
    const size_t len = size_t{b[0]} | size_t{b[1]} << 8 | size_t{b[2]} << 16 | size_t{b[3]} << 24;
    return {nlohmann::json::parse(raw.substr(4, len)), raw.substr(4 + len)};
}

void write_adapter(const TempDir& dir, const std::string& config, const std::string& tensors) {
    testing::write_file(dir / "adapter_config.json", config);
    testing::write_file(dir / "adapter_model.safetensors", tensors);
}

std::string refusal(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

const char* kQ = "model.layers.0.self_attn.q_proj.weight";
const char* kDown = "model.layers.0.mlp.down_proj.weight";

TEST(AdapterReader, ReadsTheExportedAdapter) {
    const Seed seed = read_seed("export");
    TempDir dir;
    write_adapter(dir, seed.config.dump(), seed.tensors);
    const AdapterReader a(dir.path());
    ASSERT_EQ(a.modules().size(), 2u);
    EXPECT_EQ(a.modules().count(kQ), 1u);
    EXPECT_EQ(a.rank_of(kDown), 2);
    EXPECT_DOUBLE_EQ(a.scaling_of(kQ), seed.config["lora_alpha"].get<double>() / 2.0);
}

TEST(AdapterReader, AppliesPatternsAndRslora) {
    const Seed seed = read_seed("patterns_rslora");
    TempDir dir;
    write_adapter(dir, seed.config.dump(), seed.tensors);
    const AdapterReader a(dir.path());
    EXPECT_DOUBLE_EQ(a.alpha_of(kDown), 8.0);
    EXPECT_DOUBLE_EQ(a.scaling_of(kDown), 8.0 / std::sqrt(2.0));
    EXPECT_DOUBLE_EQ(a.scaling_of(kQ), seed.config["lora_alpha"].get<double>() / std::sqrt(2.0));
}

TEST(AdapterReader, RefusesBadSettingsInOneLineNamingTheFile) {
    const Seed seed = read_seed("export");
    const auto refused = [&](const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json cfg = seed.config;
        edit(cfg);
        TempDir dir;
        write_adapter(dir, cfg.dump(), seed.tensors);
        return refusal([&] { AdapterReader a(dir.path()); });
    };
    for (const auto& [what, edit] : std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>>{
             {"rank_pattern 'q_proj' is not a positive integer", [](auto& c) { c["rank_pattern"] = {{"q_proj", "2"}}; }},
             {"r is not a positive integer", [](auto& c) { c["r"] = 0; }},
             {"r is not a positive integer", [](auto& c) { c["r"] = 2.5; }},
             {"lora_alpha is not a finite number", [](auto& c) { c["lora_alpha"] = "16"; }},
             {"alpha_pattern 'down_proj' is not a finite number", [](auto& c) { c["alpha_pattern"] = {{"down_proj", nullptr}}; }},
             {"\"rank_pattern\" is not an object", [](auto& c) { c["rank_pattern"] = nlohmann::json::array(); }},
             {"use_rslora is not a boolean", [](auto& c) { c["use_rslora"] = 1; }},
             {"init_lora_weights is not true", [](auto& c) { c["init_lora_weights"] = "true"; }},
             {"missing field \"r\"", [](auto& c) { c.erase("r"); }},
         }) {
        const std::string msg = refused(edit);
        EXPECT_NE(msg.find("adapter_config.json: " + what), std::string::npos) << what << " -> " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    // Overflowing JSON numbers parse as infinity: refused, never an infinite scaling.
    TempDir dir;
    std::string text = seed.config.dump();
    const std::string alpha = "\"lora_alpha\":" + seed.config["lora_alpha"].dump();
    ASSERT_NE(text.find(alpha), std::string::npos);
    text.replace(text.find(alpha), alpha.size(), "\"lora_alpha\":1e400");
    write_adapter(dir, text, seed.tensors);
    const std::string msg = refusal([&] { AdapterReader a(dir.path()); });
    EXPECT_TRUE(msg.find("lora_alpha is not a finite number") != std::string::npos ||
                msg.find("not valid JSON") != std::string::npos) << msg;
}

}  // namespace
}  // namespace loftq
