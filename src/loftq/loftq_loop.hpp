// The LoftQ loop (FORMATS.md section 1) for one weight matrix, whole or row-sharded over a group
// of ranks, in float32 on the rank's linear-algebra backend.
//
//   t = 1:      Q_1 = q(W)                      (quantize as loaded: the Q transformers will hold)
//   every t:    R_t = W - Q_t;  L_t Rt_t = rank-r SVD of R_t (sqrt(S) split evenly)
//               err_t = ||W - Q_t - L_t Rt_t||_F / ||W||_F
//   t + 1:      Q_{t+1} = q(W - L_t Rt_t)
//
// Unlike PEFT: (1) the Q that the SVD corrects is the Q as loaded for the chosen backbone,
// (2) the iterate with the smallest error is kept (`keep_best`; PEFT keeps the last, whose error
// can grow: peft#3088), so the result is never worse than QLoRA's plain quantization, and (3) the
// stored factors are compensated for the LoRA scaling s (`compensate_scaling`): s * B * A equals
// the computed low-rank term, so the adapter PEFT loads adds exactly L_t Rt_t (peft#1982).
//
// One path for every backend: quantization goes through the backend's QuantSlots
// (linalg/backend.hpp), so the loop never asks which backend it runs on.
//
// Bits: every reduction over the row shards of a split matrix is summed in shard order
// (ShardExchange), so the result depends on the matrix and its shard count, never on the number of
// ranks holding the shards.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "linalg/backend.hpp"
#include "lowrank/distributed_svd.hpp"
#include "lowrank/truncated_svd.hpp"
#include "quant/quantize.hpp"

namespace loftq {

struct LoftqOptions {
    QuantParams quant;
    Backbone backbone = Backbone::BF16;
    int iters = 5;
    SvdChoice svd = SvdChoice::automatic;  // split matrices are always randomized
    SvdOptions svd_options;    // rank, oversample, power iterations, seed; name set per matrix
    double lora_alpha = 16;
    bool rslora = false;
    bool keep_best = true;
    bool compensate_scaling = true;

    int rank() const { return svd_options.rank; }
    // The LoRA scaling PEFT applies: alpha / r, or alpha / sqrt(r) with rslora.
    double lora_scaling() const;
};

// Wall-clock seconds per phase, in the order of the run file's kTimingPhases.
struct PhaseTimes {
    double read = 0, quantize = 0, svd = 0, comm = 0, write = 0;
    std::array<double, 5> as_array() const { return {read, quantize, svd, comm, write}; }
};

// One local row shard of the matrix: rows [row_begin, row_end) of W, row-major on the host.
struct ShardInput {
    int64_t row_begin = 0, row_end = 0;
    const float* w = nullptr;
    // w already lives in the backend's memory (device memory on CUDA: nothing is uploaded).
    bool in_backend_memory = false;
};

// What the loop returns for the local shards. Per shard: its codes/scales and its rows of B.
// Replicated on every member of the group: A, the errors, the chosen iteration.
struct LoftqResult {
    std::vector<QuantizedTensor> q;       // per local shard (whole matrix: one)
    std::vector<std::vector<float>> B;    // per local shard: (row_end - row_begin) x r
    std::vector<float> A;                 // r x cols
    double qlora_error = 0;               // ||W - q_plain(W)|| / ||W||: QLoRA loading the original
    std::vector<double> iteration_error;  // err_t, t = 1..iters (the last, when the LoRA scaling
                                          // is compensated: with the stored factors, as loaded)
    int chosen_iteration = 1;             // 1-based t whose Q, A, B are returned
    double loaded_error = 0;              // ||W - Q - s B A|| / ||W|| with the stored Q, A, B
    std::string svd_method;               // "exact" | "randomized"
    int sketch = 0;                       // randomized: the sketch width k (rank + oversample)
    std::vector<int> gemm_passes;         // randomized: per iteration, passes over the residual
                                          // (2q + 2); exact: zeros
    std::vector<int> gemm_columns;        // randomized: per iteration, the columns those passes
                                          // multiply (k each; a Krylov projection (q + 1) k)
    PhaseTimes times;
};

// Whole matrix on this process: w is rows x cols, row-major, on the host.
// InputError naming the tensor for non-finite weights, for a shard whose Frobenius norm is
// outside 2^-50..2^50 (zero is fine: float32 could not give true figures), and for any error
// (QLoRA's, per iteration, as loaded) that is not finite: a result is finite or not returned.
LoftqResult run_loftq(LinalgBackend& be, const std::string& name, const float* w, int64_t rows,
                      int64_t cols, const LoftqOptions& opt);

// Row-sharded matrix: `layout` lists every shard of the matrix and its owner in `comm` (nullptr:
// every shard here); `local` holds this process's shards in layout order. Collective over comm.
LoftqResult run_loftq_sharded(LinalgBackend& be, Communicator* comm, const ShardLayout& layout,
                              const std::string& name, const std::vector<ShardInput>& local,
                              int64_t rows, int64_t cols, const LoftqOptions& opt);

}  // namespace loftq
