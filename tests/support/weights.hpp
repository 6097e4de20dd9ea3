// Test inputs for the quantization tests: the float32 tensors of a small safetensors file
// (stories260K; a minimal header parse, not the product reader) and seeded synthetic weights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loftq::testing {

struct F32Tensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> data;
};

// Every F32 tensor of a safetensors file, in header order (throws on anything unexpected).
std::vector<F32Tensor> read_f32_safetensors(const std::string& path);
// stories260K's 2-D weights of the decoder layers (the LoftQ targets).
std::vector<F32Tensor> stories_target_weights();

// n values drawn from a Student-t with `dof` degrees of freedom times `scale` (heavy tails, like
// LLM weights), keyed by seed.
std::vector<float> heavy_tailed(int64_t n, uint64_t seed, float scale = 0.02f, double dof = 4.0);

}  // namespace loftq::testing
