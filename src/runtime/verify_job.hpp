// `loftq verify`: load an exported folder the way transformers + bitsandbytes + PEFT would, and
// measure each target matrix against the ORIGINAL weights of --model. Independent of the run
// file: it reads only the output folder (config.json, the backbone safetensors, loftq_init/,
// and report.json's per-matrix format, which says how each backbone matrix is meant to load).
//
// As loaded (float32, as the run's loaded_error counts it):
// - config.json has a bitsandbytes quantization_config: Q = quant_map[code] * absmax, codes and
//   absmax (double-quantized: nested_quant_map[c] * nested_absmax + nested_offset) read from the
//   serialized 4-bit tensors and their quant_state JSON, no re-quantization.
// - otherwise the stored values are cast to config.json's torch_dtype, then a matrix whose format
//   is nf4/fp4 is re-quantized as bitsandbytes does at load (blocksize 64, transformers has no
//   other); an nf2/nf8/uniform matrix is loaded as stored (bitsandbytes cannot hold it).
// - the adapter adds s * B @ A, s = lora_alpha / r (/ sqrt(r) with use_rslora), per module
//   rank_pattern / alpha_pattern applied, all from adapter_config.json.
// error = ||W - Q - s B A||_F / ||W||_F; QLoRA = ||W - q(W)||_F / ||W||_F with q the same
// quantizer (format, blocksize, double quant) applied to W as stored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loftq {

struct VerifiedMatrix {
    std::string name;
    int64_t rows = 0, cols = 0;
    std::string loaded_as;  // e.g. "bnb4 nf4/64", "bf16 -> nf4/64", "bf16 as stored (nf2)"
    double scaling = 0;
    double qlora_error = 0;
    double loftq_error = 0;
};

struct VerifyReport {
    std::string model_dir, output_dir;
    std::string backbone;  // "bnb4", or the float dtype the targets are stored in
    std::vector<VerifiedMatrix> matrices;
    std::vector<std::string> notes;

    int worse_than_qlora() const;
    nlohmann::json to_json() const;  // {model, output, backbone, matrices[], totals, notes}
    std::string table() const;       // what `loftq verify` prints
};

// One process. InputError naming the file and tensor for anything missing or inconsistent.
VerifyReport verify_output(const std::string& model_dir, const std::string& output_dir);

}  // namespace loftq
