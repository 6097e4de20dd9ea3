#include "lowrank/randomized_svd.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/philox.hpp"

namespace loftq {

RandomizedSvd::RandomizedSvd(LinalgBackend& be, int64_t rows, int64_t cols, const SvdOptions& opt)
    : RandomizedSvd(be, rows, cols, opt, ShardLayout::single(std::max<int64_t>(rows, 1)), nullptr) {}

RandomizedSvd::RandomizedSvd(LinalgBackend& be, int64_t rows, int64_t cols, const SvdOptions& opt,
                             const ShardLayout& layout, Communicator* comm)
    : be_(be), opt_(opt), m_(rows), n_(cols),
      name_hash_(philox::fnv1a64(opt.name.data(), opt.name.size())),
      exchange_(be, comm, layout) {
    if (rows < 1 || cols < 1)
        LOFTQ_THROW(ConfigError, "randomized SVD of '", opt.name, "': empty matrix ", rows, " x ", cols);
    const int64_t p = std::min(rows, cols);
    if (opt.rank < 1 || opt.rank > p)
        LOFTQ_THROW_SETTING("rank", "rank ", opt.rank, " is outside [1, ", p, "] for '", opt.name,
                            "' (", rows, " x ", cols, ")");
    if (opt.oversample < 0) LOFTQ_THROW_SETTING("oversample", "oversampling must be >= 0, got ", opt.oversample);
    if (opt.power_iters < 0 || opt.warm_power_iters < 0)
        LOFTQ_THROW_SETTING("power-iters", "power iterations must be >= 0, got ", opt.power_iters);
    LOFTQ_CHECK(layout.row_offsets.back() == rows, "shard layout covers ", layout.row_offsets.back(),
                " rows, matrix '", opt.name, "' has ", rows);
    r_ = opt.rank;
    k_ = std::min<int64_t>(opt.rank + static_cast<int64_t>(opt.oversample), p);
    const int S = layout.count();
    if (S > 1)
        for (int s = 0; s < S; ++s)
            if (layout.rows(s) < k_)
                LOFTQ_THROW(ConfigError, "matrix '", opt.name, "': shard ", s, " has ", layout.rows(s),
                            " rows, fewer than the sketch width ", k_,
                            " (rank + oversample); raise --split-threshold");

    int64_t local_rows = 0, max_local = 0;
    for (int s : exchange_.local()) {
        y_offset_.push_back(local_rows * k_);
        local_rows += layout.rows(s);
        max_local = std::max(max_local, layout.rows(s));
    }
    const size_t kk = static_cast<size_t>(k_ * k_), kn = static_cast<size_t>(k_ * n_);
    y_ = DeviceBuffer(be, static_cast<size_t>(local_rows * k_));
    g_ = DeviceBuffer(be, kn);
    ub_ = DeviceBuffer(be, kk);
    sb_ = DeviceBuffer(be, static_cast<size_t>(k_));
    vtb_ = DeviceBuffer(be, kn);
    // Slots: S partial products of k x n (or S R-factors k x k, or S column peaks).
    slots_ = DeviceBuffer(be, static_cast<size_t>(S) * (exchange_.trivial() ? kk : kn));
    if (S > 1) y_tmp_ = DeviceBuffer(be, static_cast<size_t>(max_local * k_));
    size_t work = be.svd_work(k_, n_);
    work = std::max(work, be.qr_rows_work(k_, n_));
    if (max_local >= k_) work = std::max(work, be.qr_columns_work(max_local, k_));
    if (S > 1) work = std::max(work, be.qr_columns_work(S * k_, k_));
    work_ = DeviceBuffer(be, work);
}

int RandomizedSvd::next_power_iters() const {
    return warm_ && opt_.warm_start ? opt_.warm_power_iters : opt_.power_iters;
}

void RandomizedSvd::compute(const float* a, float* u, float* s, float* vt) {
    LOFTQ_CHECK(exchange_.layout().count() == 1 && exchange_.group_size() == 1,
                "compute() is the unsharded call; use compute_shards()");
    compute_shards({a}, {u}, s, vt);
}

// Y_s = A_s basis^T for every local shard (basis: k x n, rows spanning the sketch space).
void RandomizedSvd::sketch_product(const std::vector<const float*>& a, const float* basis) {
    const auto& local = exchange_.local();
    for (size_t i = 0; i < local.size(); ++i)
        be_.gemm(Trans::no, Trans::yes, exchange_.layout().rows(local[i]), k_, n_, 1.0f, a[i], n_,
                 basis, n_, 0.0f, y_.get() + y_offset_[i], k_);
}

// TSQR of the row-sharded Y (see the header).
void RandomizedSvd::orthonormalize_y() {
    const auto& layout = exchange_.layout();
    const auto& local = exchange_.local();
    const int S = layout.count();
    const size_t kk = static_cast<size_t>(k_ * k_);
    if (S == 1) {
        if (!local.empty()) be_.qr_columns(layout.rows(0), k_, y_.get(), nullptr, work_.get());
        return;
    }
    for (size_t i = 0; i < local.size(); ++i)
        be_.qr_columns(layout.rows(local[i]), k_, y_.get() + y_offset_[i],
                       slots_.get() + local[i] * kk, work_.get());
    exchange_.share_slots(slots_.get(), kk, kk);
    be_.qr_columns(S * k_, k_, slots_.get(), nullptr, work_.get());  // replicated: same bits everywhere
    for (size_t i = 0; i < local.size(); ++i) {
        const int64_t ms = layout.rows(local[i]);
        float* ys = y_.get() + y_offset_[i];
        be_.gemm(Trans::no, Trans::no, ms, k_, k_, 1.0f, ys, k_, slots_.get() + local[i] * kk, k_,
                 0.0f, y_tmp_.get(), k_);
        be_.copy(ys, y_tmp_.get(), static_cast<size_t>(ms * k_));
    }
}

// out (k x n) = Q^T A = sum over shards of Q_s^T A_s, in shard order.
void RandomizedSvd::project(const std::vector<const float*>& a, float* out) {
    const auto& local = exchange_.local();
    const size_t kn = static_cast<size_t>(k_ * n_);
    if (exchange_.trivial()) {
        be_.gemm(Trans::yes, Trans::no, k_, n_, m_, 1.0f, y_.get(), k_, a[0], n_, 0.0f, out, n_);
        return;
    }
    for (size_t i = 0; i < local.size(); ++i)
        be_.gemm(Trans::yes, Trans::no, k_, n_, exchange_.layout().rows(local[i]), 1.0f,
                 y_.get() + y_offset_[i], k_, a[i], n_, 0.0f, slots_.get() + local[i] * kn, n_);
    exchange_.share_slots(slots_.get(), kn, kn);
    exchange_.sum_slots(slots_.get(), kn, kn, out);
}

void RandomizedSvd::compute_shards(const std::vector<const float*>& a, const std::vector<float*>& u,
                                   float* s, float* vt) {
    const auto& local = exchange_.local();
    LOFTQ_CHECK(a.size() == local.size() && u.size() == local.size(), "randomized SVD of '",
                opt_.name, "': expected ", local.size(), " local shards, got ", a.size());
    const int q = next_power_iters();
    last_passes_ = 2 * q + 2;
    const float* basis = vtb_.get();
    if (!(warm_ && opt_.warm_start)) {
        be_.fill_gaussian(opt_.seed, name_hash_, 0, static_cast<size_t>(k_ * n_), g_.get());
        basis = g_.get();
    }
    sketch_product(a, basis);
    orthonormalize_y();
    for (int it = 0; it < q; ++it) {
        project(a, g_.get());
        be_.qr_rows(k_, n_, g_.get(), work_.get());
        sketch_product(a, g_.get());
        orthonormalize_y();
    }
    project(a, g_.get());
    be_.svd(k_, n_, g_.get(), ub_.get(), sb_.get(), vtb_.get(), work_.get());
    warm_ = true;
    for (size_t i = 0; i < local.size(); ++i)
        be_.gemm(Trans::no, Trans::no, exchange_.layout().rows(local[i]), r_, k_, 1.0f,
                 y_.get() + y_offset_[i], k_, ub_.get(), k_, 0.0f, u[i], r_);
    be_.copy(s, sb_.get(), static_cast<size_t>(r_));
    be_.copy(vt, vtb_.get(), static_cast<size_t>(r_ * n_));
    exchange_.canonical_signs(u, r_, vt, n_, slots_.get());
}

}  // namespace loftq
