// libFuzzer harness: a config.json, through the strict JSON reader (UTF-8, BOM, duplicate
// keys) and the model config parser; an accepted config must list its tensors and survive
// the round trip the export writes (model_config_to_json, then parsed again to the same shapes).
#include "fuzz_support.hpp"
#include "io/json_strict.hpp"
#include "plan/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = loftq::fuzz::write_file("config.json", data, size);
    loftq::fuzz::refuse_or_accept([&] {
        const nlohmann::json doc = loftq::read_json_file(path, "file");
        const loftq::ModelConfig cfg = loftq::parse_model_config(doc, path);
        // Dimensions are bounded (2^20) but a million layers would list 9 M tensors: the
        // listing is checked for the models a fuzzer can reach quickly.
        if (cfg.num_hidden_layers <= 64) {
            const auto tensors = loftq::expected_tensors(cfg);
            if (tensors.empty()) std::abort();
        }
        const loftq::ModelConfig again = loftq::parse_model_config(loftq::model_config_to_json(cfg), path);
        if (again.q_rows() != cfg.q_rows() || again.kv_rows() != cfg.kv_rows() ||
            again.intermediate_size != cfg.intermediate_size || again.vocab_size != cfg.vocab_size ||
            again.num_hidden_layers != cfg.num_hidden_layers)
            std::abort();
    });
    return 0;
}
