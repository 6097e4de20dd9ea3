// Randomized truncated SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1; block Krylov as in
// Musco & Musco 2015), unsharded or on a matrix row-sharded over a group of ranks.
//
//   G (k x n) Gaussian keyed by (seed, name)       or, warm-started, the previous right basis
//   Y = A G^T, Q = orth(Y)                          local GEMM per shard, TSQR across shards
//   q times: Z^T = Q^T A (reduced over shards), orth rows of Z^T, Y = A Z, Q = orth(Y)
//   B = K^T A (reduced), B = Ub S Vt (small SVD, replicated), U = K Ub[:, :r]
//
// K is Q, except on a fresh (not warm-started) step with PowerScheme::krylov: there K = orth of
// the q + 1 blocks [Q_0, Q_1, ..., Q_q] the power steps made (block Krylov), so the same 2q + 2
// passes over A give a far better subspace than the last block alone; only the projection
// B = K^T A is (q + 1) times wider. LoftQ's later steps start warm from the top k right vectors
// of the previous B and make one block (bench/results/passes.md).
//
// Y and the Krylov basis are held transposed (k x m_s per shard, row-major): Y^T = G A^T is the
// faster GEMM orientation of the sketch, and Y^T row-major is the column-major Y that LAPACK /
// cuSOLVER factor in place (qr_rows), with no transposing copies.
//
// Orthonormalisation of the tall, row-sharded Y is TSQR: a Householder QR of each shard, the
// S stacked k x k R factors gathered and factored again, Q_s = Q_s,local * Q2_s. It is as stable
// as Householder whatever cond(Y) (CholeskyQR2 squares cond(Y) in float32 and breaks down past
// ~1e3 without the shifted pass), needs m_s >= k rows per shard, and moves the same S k^2 floats
// as one Gram all-reduce. The unsharded case is the same code with S = 1. The Krylov basis is
// orthonormalised the same way (its blocks, nearly parallel once converged, are no harm to a
// Householder QR); the fresh step keeps as many blocks as every shard has rows for.
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
    int last_gemm_columns() const override { return static_cast<int>(last_columns_); }
    // Power iterations the next compute will run (fresh or warm).
    int next_power_iters() const;

private:
    void sketch_product(const std::vector<const float*>& a, const float* basis);
    void orthonormalize(float* buf, const std::vector<int64_t>& offset, int64_t width);
    void project(const std::vector<const float*>& a, const float* buf, const std::vector<int64_t>& offset,
                 int64_t width, float* out);
    void power_step(const std::vector<const float*>& a);

    LinalgBackend& be_;
    SvdOptions opt_;
    int64_t m_, n_, k_, r_;
    int blocks_ = 1;   // Krylov blocks of a fresh step (1: the last block only)
    int64_t kw_ = 0;   // k * blocks_
    uint64_t name_hash_;
    ShardExchange exchange_;
    std::vector<int64_t> y_offset_;    // per local shard, into y_
    std::vector<int64_t> kry_offset_;  // per local shard, into kry_
    bool warm_ = false;
    int last_passes_ = 0;
    int64_t last_columns_ = 0;
    DeviceBuffer y_, kry_, y_tmp_, g_, ub_, sb_, vtb_, slots_, work_;
};

}  // namespace loftq
