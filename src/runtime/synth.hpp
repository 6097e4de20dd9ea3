// Synthetic checkpoints (`loftq synth`; presets of Llama 2/3, CodeLlama, Qwen2.5, Mixtral shapes):
// the tensors of a preset architecture,
// filled with weights that look like trained LLM weights to LoftQ, written streaming.
//
// Every element is a pure function of (seed, tensor name, row, column) through a counter-based
// generator (SplitMix64 keyed by the seed and the name): the output does not depend on the
// order, chunking or thread count of generation, and the same seed gives byte-identical files.
//
// A linear weight W (m x n) is, with std s = 0.02,
//   W[i][j] = s * ( r_i * c_j * e_ij  +  sum_k a_k u_k[i] v_k[j] )
//   e_ij    Laplace, unit variance (kurtosis 6: heavy tails)
//   r_i, c_j log-normal row / column scales with mean square 1 (sigma 0.2 / 0.4): the outlier
//           channels of real LLM weights (columns are the input features)
//   u_k, v_k standard normal vectors, k < 12, a_k = 3 * 0.7^k * (sqrt m + sqrt n) / sqrt(m n):
//           a low-rank part whose singular values (~ 3 * 0.7^k times the edge of the noise
//           bulk) decay geometrically from above the bulk into it, as trained spectra do.
// Embeddings and lm_head are Laplace with log-normal row scales (token frequency); RMSNorm
// weights are log-normal around 1; biases small normal.
//
// Memory: one tensor in its output dtype plus one float32 row per thread; the writer streams
// tensor by tensor (io/safetensors_writer.hpp), so a 70B-shaped layer never sits in memory whole.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "plan/model_config.hpp"

namespace loftq {

struct SynthOptions {
    std::string preset = "tiny";
    int layers = 0;                  // 0 = the preset's depth
    uint64_t seed = 0;
    DType dtype = DType::BF16;       // BF16 | F16 | F32
    uint64_t max_shard_size = 5000000000ULL;
};

struct SynthSummary {
    ModelConfig model;
    std::vector<std::string> files;   // shard file names, in order
    uint64_t total_bytes = 0;         // sum of tensor bytes
    uint64_t largest_tensor_bytes = 0;
    size_t tensors = 0;
};

// The model a synth run writes: the preset with its depth cut to `layers` and torch_dtype set.
ModelConfig synth_model_config(const SynthOptions& opts);

// Rows [row_begin, row_end) of tensor `t` of `model` as float32, row-major into out
// ((row_end - row_begin) * cols values; 1-D tensors are one row of shape[0] values).
void synth_rows(const ModelConfig& model, const ModelTensor& t, uint64_t seed, int64_t row_begin,
                int64_t row_end, float* out);

// Write config.json and the sharded safetensors into `folder` (created if absent; its parent
// must exist). ConfigError naming --output if the folder already holds a checkpoint. Files
// appear under their final names only when complete.
SynthSummary write_synthetic_checkpoint(const std::string& folder, const SynthOptions& opts);

}  // namespace loftq
