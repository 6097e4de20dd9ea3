// libFuzzer harness: the PEFT adapter of an exported folder as `loftq verify` reads it
// (io/adapter_reader.hpp). Input: a 4-byte little-endian length L, then L bytes of
// adapter_config.json, then adapter_model.safetensors (fuzz/make_corpus.py writes the seeds).
// An accepted adapter must give every module a positive rank and a finite scaling, and its
// lora_A / lora_B tensors must read.
#include <cmath>
#include <vector>

#include "fuzz_support.hpp"
#include "io/adapter_reader.hpp"
#include "io/export_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    const size_t len = size_t{data[0]} | size_t{data[1]} << 8 | size_t{data[2]} << 16 | size_t{data[3]} << 24;
    if (len > size - 4) return 0;
    loftq::fuzz::write_file("adapter_config.json", data + 4, len);
    loftq::fuzz::write_file("adapter_model.safetensors", data + 4 + len, size - 4 - len);
    loftq::fuzz::refuse_or_accept([&] {
        const loftq::AdapterReader adapter(loftq::fuzz::scratch_dir());
        for (const auto& module : adapter.modules()) {
            const std::string& name = module.first;
            if (adapter.rank_of(name) < 1 || !std::isfinite(adapter.scaling_of(name))) std::abort();
            for (const std::string& key : {loftq::lora_a_key(name), loftq::lora_b_key(name)}) {
                const loftq::TensorInfo& t = adapter.tensors().info(key);
                std::vector<float> values(t.numel());
                adapter.tensors().read_f32_into(key, 0, values.size(), values.data(), loftq::FiniteCheck::reject);
            }
        }
    });
    return 0;
}
