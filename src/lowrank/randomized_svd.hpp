// Randomized truncated SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1), unsharded or on a
// matrix row-sharded over a group of ranks.
//
//   G (k x n) Gaussian keyed by (seed, name)       or, warm-started, the previous right basis
//   Y = A G^T, Q = orth(Y)                          local GEMM per shard, TSQR across shards
//   q times: Z^T = Q^T A (reduced over shards), orth rows of Z^T, Y = A Z, Q = orth(Y)
//   B = Q^T A (k x n, reduced), B = Ub S Vt (small SVD, replicated), U = Q Ub[:, :r]
//
// Orthonormalisation of the tall, row-sharded Y is TSQR: a Householder QR of each shard, the
// S stacked k x k R factors gathered and factored again, Q_s = Q_s,local * Q2_s. It is as stable
// as Householder whatever cond(Y) (CholeskyQR2 squares cond(Y) in float32 and breaks down past
// ~1e3 without the shifted pass), needs m_s >= k rows per shard, and moves the same S k^2 floats
// as one Gram all-reduce. The unsharded case is the same code with S = 1.
//
// Results are bit-identical for any assignment of the S shards to ranks (ShardExchange) and agree
// with the unsharded result up to rounding.
#pragma once

#include <vector>

#include "comm/communicator.hpp"
#include "lowrank/distributed_svd.hpp"
#include "lowrank/truncated_svd.hpp"

namespace loftq {

class RandomizedSvd final : public TruncatedSvd {
public:
    // Unsharded: the whole rows x cols matrix on this process.
    RandomizedSvd(LinalgBackend& be, int64_t rows, int64_t cols, const SvdOptions& opt);
    // Row-sharded over `comm` (nullptr: every shard on this process). Each shard needs at least
    // rank + oversample rows (clamped sketch width). Collective over `comm`.
    RandomizedSvd(LinalgBackend& be, int64_t rows, int64_t cols, const SvdOptions& opt,
                  const ShardLayout& layout, Communicator* comm);

    // Unsharded call (layout of one shard held here): a rows x cols, u rows x rank.
    void compute(const float* a, float* u, float* s, float* vt) override;
    // Sharded call, collective over the group: a[i] is shard local_shards()[i] (its rows x cols),
    // u[i] the matching rows of U (rows x rank); s and vt are replicated on every rank.
    void compute_shards(const std::vector<const float*>& a, const std::vector<float*>& u,
                        float* s, float* vt);
    void reset_warm_start() override { warm_ = false; }
    std::string method() const override { return "randomized"; }

    const std::vector<int>& local_shards() const { return exchange_.local(); }
    int sketch_width() const override { return static_cast<int>(k_); }
    int last_gemm_passes() const override { return last_passes_; }
    // Power iterations the next compute will run (fresh or warm).
    int next_power_iters() const;

private:
    void sketch_product(const std::vector<const float*>& a, const float* basis);
    void orthonormalize_y();
    void project(const std::vector<const float*>& a, float* out);

    LinalgBackend& be_;
    SvdOptions opt_;
    int64_t m_, n_, k_, r_;
    uint64_t name_hash_;
    ShardExchange exchange_;
    std::vector<int64_t> y_offset_;  // per local shard, into y_
    bool warm_ = false;
    int last_passes_ = 0;
    DeviceBuffer y_, y_tmp_, g_, ub_, sb_, vtb_, slots_, work_;
};

}  // namespace loftq
