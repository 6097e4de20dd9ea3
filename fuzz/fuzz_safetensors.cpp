// libFuzzer harness: a .safetensors file, opened as the tool opens a checkpoint shard (header,
// layout and tiling checks), then every float tensor read as float32 with the finiteness check
// and every other one read raw, as `inspect` and `quantize` would.
#include <vector>

#include "core/dtype.hpp"
#include "fuzz_support.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = loftq::fuzz::write_file("model.safetensors", data, size);
    loftq::fuzz::refuse_or_accept([&] {
        const loftq::SafetensorsFile file(path);
        for (const loftq::TensorInfo& t : file.tensors()) {
            if (file.info(t.name).nbytes() != t.nbytes()) std::abort();
            if (loftq::is_float_weight_dtype(t.dtype)) {
                std::vector<float> values(t.numel());
                file.read_f32_into(t.name, 0, values.size(), values.data(), loftq::FiniteCheck::reject);
            } else if (t.nbytes() > 0) {
                volatile unsigned char last = file.raw(t.name)[t.nbytes() - 1];
                (void)last;
            }
        }
    });
    return 0;
}
