// The model plan: which weight matrices LoftQ runs on, their shapes (checked against
// config.json), their bit width (LoftQ's mixed-precision rule, FORMATS.md section 1) and a cost
// estimate for load balancing. Rank 0 builds it, serialises it to JSON bytes, and the driver
// broadcasts them; every rank then derives the same distribution from it (distribution.hpp).
//
// Cost model (units: flop-equivalents; only ratios matter), per matrix of m x n, k = min(m, n),
// l = max(m, n), LoRA rank r, T iterations, sketch width p = r + oversample, q power iterations:
//   exact SVD        6 l k^2 + 20 k^3                       (thin R-SVD, Golub & Van Loan 8.6)
//   randomized SVD   (2 + 2q) * 2 m n p + 4 (m + n) p^2 + 20 p^3 (a Krylov fresh step: 2 + 3q)
//   per iteration    SVD + 2 m n r (the product B A) + 8 * 16 m n (quantize, dequantize and two
//                    residuals stream ~16 bytes per element; 8 flops per byte of traffic)
//   cost = T * per-iteration.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "io/safetensors.hpp"
#include "plan/model_config.hpp"
#include "plan/run_spec.hpp"

namespace loftq {

class Checkpoint;

// Every tensor of a checkpoint by name, as its safetensors headers state it (only dtype and
// shape are used; byte offsets may be zero).
using TensorCatalogue = std::map<std::string, TensorInfo>;

// The catalogue of an opened checkpoint (opens every shard's header).
TensorCatalogue read_catalogue(const Checkpoint& checkpoint);

// The catalogue a well-formed checkpoint of `model` stored in `dtype` has (expected_tensors).
TensorCatalogue expected_catalogue(const ModelConfig& model, DType dtype);

struct MatrixPlan {
    int index = 0;             // position in Plan::matrices
    std::string tensor;        // "model.layers.3.self_attn.q_proj.weight"
    std::string module;        // "q_proj"
    int layer = 0;             // decoder layer
    int64_t rows = 0;          // out features
    int64_t cols = 0;          // in features
    DType dtype = DType::F32;  // as stored in the checkpoint
    int bits = 4;              // 2, 4 or 8 for this matrix
    int rank = 0;              // LoRA rank: min(--rank, rows, cols)
    int shards = 1;            // row shards (shard_count); > 1: split over a group of ranks
    SvdMethod svd = SvdMethod::exact;  // as the loop will run it (split matrices: randomized)
    double cost = 0;           // see the cost model above
    uint64_t f32_bytes = 0;    // rows * cols * 4

    std::string module_path() const;  // tensor without ".weight" (the PEFT module path)
};

struct Plan {
    ModelConfig model;  // model.source is not serialised
    RunSpec spec;
    std::vector<MatrixPlan> matrices;  // (layer, attention, MLP, others by name) order; index = position

    std::string to_json() const;
    // InputError naming `what` if the bytes are not a plan this code wrote.
    static Plan from_json(const std::string& bytes, const std::string& what = "plan");
};

// Build the plan: the targets are the tensors classify_tensor calls linear4bit (any decoder with a
// regular layout; plan/checkpoint_layout.hpp), narrowed by spec.targets (PEFT's suffix rule).
// Errors: a named target matching no target (ConfigError, setting "targets", naming what it
// matches instead); a Llama-layout tensor whose shape differs from config.json (InputError naming
// the tensor, config.json and both shapes); a non-float target, a layer index past
// num_hidden_layers, a layer without targets, a missing member of q/k/v/o or gate/up/down, an
// expert count other than config.json's (InputError). A rank above min(rows, cols) is clipped
// for that matrix (MatrixPlan::rank).
Plan build_plan(const ModelConfig& model, const TensorCatalogue& tensors, const RunSpec& spec);

// LoftQ's rule: integer bits apply everywhere; for mixed bits b the first
// floor(num_layers * (b - 2) / 2) decoder layers get 4 bits, the others 2.
int bits_for_layer(double bits, int layer, int num_layers);

// The cost model of the header comment.
double estimate_cost(int64_t rows, int64_t cols, SvdMethod svd_method, const RunSpec& spec);

}  // namespace loftq
