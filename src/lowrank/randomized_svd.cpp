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
    int64_t min_shard = rows;
    for (int s = 0; s < S; ++s) min_shard = std::min(min_shard, layout.rows(s));
    if (S > 1 && min_shard < k_)
        LOFTQ_THROW(ConfigError, "matrix '", opt.name, "': a shard has ", min_shard,
                    " rows, fewer than the sketch width ", k_, " (rank + oversample); raise --split-threshold");
    // The fresh step's Krylov basis: q + 1 blocks of k columns, as many as fit the matrix (its
    // orthonormalisation needs that many rows in every shard, its projection that many columns).
    const int64_t fit = std::min(p, min_shard) / k_;
    blocks_ = opt.scheme == PowerScheme::krylov
                  ? static_cast<int>(std::min<int64_t>(opt.power_iters + 1, std::max<int64_t>(fit, 1)))
                  : 1;
    kw_ = k_ * blocks_;

    int64_t local_rows = 0, max_local = 0;
    for (int s : exchange_.local()) {
        y_offset_.push_back(local_rows * k_);
        kry_offset_.push_back(local_rows * kw_);
        local_rows += layout.rows(s);
        max_local = std::max(max_local, layout.rows(s));
    }
    const size_t kn = static_cast<size_t>(k_ * n_), wn = static_cast<size_t>(kw_ * n_);
    y_ = DeviceBuffer(be, static_cast<size_t>(local_rows * k_));
    if (blocks_ > 1) kry_ = DeviceBuffer(be, static_cast<size_t>(local_rows * kw_));
    g_ = DeviceBuffer(be, wn);  // the Gaussian (k x n), Z^T (k x n), B (up to kw x n)
    ub_ = DeviceBuffer(be, static_cast<size_t>(kw_ * kw_));
    sb_ = DeviceBuffer(be, static_cast<size_t>(kw_));
    vtb_ = DeviceBuffer(be, wn);
    // Slots: S partial products of at most k x n (a wider projection goes k columns at a time), or
    // S R-factors of at most kw x kw, or S column peaks.
    const size_t kwkw = static_cast<size_t>(kw_ * kw_);
    slots_ = DeviceBuffer(be, static_cast<size_t>(S) * (exchange_.trivial() ? kwkw : std::max(kn, kwkw)));
    if (S > 1) y_tmp_ = DeviceBuffer(be, static_cast<size_t>(max_local * kw_));
    size_t work = be.svd_work(kw_, n_);
    work = std::max(work, be.qr_rows_work(k_, n_));
    if (max_local >= kw_) work = std::max(work, be.qr_rows_work(kw_, max_local));
    if (max_local >= k_) work = std::max(work, be.qr_rows_work(k_, max_local));
    if (S > 1) work = std::max(work, be.qr_columns_work(S * kw_, kw_));
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

// Y_s = A_s basis^T for every local shard (basis: k x n, rows spanning the sketch space), held
// as Y_s^T = basis A_s^T (k x m_s): the faster GEMM orientation here, and the column-major Y_s
// that the Householder QR factors in place.
void RandomizedSvd::sketch_product(const std::vector<const float*>& a, const float* basis) {
    const auto& local = exchange_.local();
    for (size_t i = 0; i < local.size(); ++i) {
        const int64_t ms = exchange_.layout().rows(local[i]);
        be_.gemm(Trans::no, Trans::yes, k_, ms, n_, 1.0f, basis, n_, a[i], n_, 0.0f, y_.get() + y_offset_[i], ms);
    }
}

// TSQR of a row-sharded tall matrix of `width` columns (y_ or the Krylov basis; see the header).
void RandomizedSvd::orthonormalize(float* buf, const std::vector<int64_t>& offset, int64_t width) {
    const auto& layout = exchange_.layout();
    const auto& local = exchange_.local();
    const int S = layout.count();
    const size_t ww = static_cast<size_t>(width * width);
    if (S == 1) {
        if (!local.empty()) be_.qr_rows(width, layout.rows(0), buf, nullptr, work_.get());
        return;
    }
    for (size_t i = 0; i < local.size(); ++i)
        be_.qr_rows(width, layout.rows(local[i]), buf + offset[i], slots_.get() + local[i] * ww, work_.get());
    exchange_.share_slots(slots_.get(), ww, ww);
    be_.qr_columns(S * width, width, slots_.get(), nullptr, work_.get());  // replicated: same bits everywhere
    for (size_t i = 0; i < local.size(); ++i) {  // Q_s^T <- Q2_s^T Q_s^T
        const int64_t ms = layout.rows(local[i]);
        float* ys = buf + offset[i];
        be_.gemm(Trans::yes, Trans::no, width, ms, width, 1.0f, slots_.get() + local[i] * ww, width, ys, ms,
                 0.0f, y_tmp_.get(), ms);
        be_.copy(ys, y_tmp_.get(), static_cast<size_t>(ms * width));
    }
}

// out (width x n) = Q^T A = sum over shards of Q_s^T A_s, in shard order; Q is `buf` (width
// columns). Split over ranks, the partial products cross k rows at a time (slots of S k x n).
void RandomizedSvd::project(const std::vector<const float*>& a, const float* buf,
                            const std::vector<int64_t>& offset, int64_t width, float* out) {
    const auto& local = exchange_.local();
    if (exchange_.trivial()) {
        be_.gemm(Trans::no, Trans::no, width, n_, m_, 1.0f, buf, m_, a[0], n_, 0.0f, out, n_);
        return;
    }
    for (int64_t c0 = 0; c0 < width; c0 += k_) {
        const int64_t c = std::min(k_, width - c0);
        const size_t cn = static_cast<size_t>(c * n_);
        for (size_t i = 0; i < local.size(); ++i) {
            const int64_t ms = exchange_.layout().rows(local[i]);
            be_.gemm(Trans::no, Trans::no, c, n_, ms, 1.0f, buf + offset[i] + c0 * ms, ms, a[i], n_, 0.0f,
                     slots_.get() + local[i] * cn, n_);
        }
        exchange_.share_slots(slots_.get(), cn, cn);
        exchange_.sum_slots(slots_.get(), cn, cn, out + c0 * n_);
    }
}

// One power step of the k-column sketch: Z^T = Q^T A, orthonormal rows, Y = A Z, orthonormal.
void RandomizedSvd::power_step(const std::vector<const float*>& a) {
    project(a, y_.get(), y_offset_, k_, g_.get());
    be_.qr_rows(k_, n_, g_.get(), nullptr, work_.get());
    sketch_product(a, g_.get());
    orthonormalize(y_.get(), y_offset_, k_);
}

void RandomizedSvd::compute_shards(const std::vector<const float*>& a, const std::vector<float*>& u,
                                   float* s, float* vt) {
    const auto& local = exchange_.local();
    LOFTQ_CHECK(a.size() == local.size() && u.size() == local.size(), "randomized SVD of '",
                opt_.name, "': expected ", local.size(), " local shards, got ", a.size());
    const bool fresh = !(warm_ && opt_.warm_start);
    const int q = next_power_iters();
    last_passes_ = 2 * q + 2;
    last_columns_ = (2 * q + 1) * k_;  // every pass but the projection on K multiplies k columns
    const float* basis = vtb_.get();
    if (fresh) {
        be_.fill_gaussian(opt_.seed, name_hash_, 0, static_cast<size_t>(k_ * n_), g_.get());
        basis = g_.get();
    }
    sketch_product(a, basis);
    orthonormalize(y_.get(), y_offset_, k_);
    // The basis B is projected on: Y (k columns), or on a fresh step with Krylov blocks the q + 1
    // blocks [Y, (A A^T) Y, ..., (A A^T)^q Y] (each orthonormalised as it is made, then all
    // together). Power steps the blocks cannot hold (a matrix too small for q + 1 of them) run
    // first, on Y alone.
    const int blocks = fresh ? blocks_ : 1;
    for (int it = 0; it < q - (blocks - 1); ++it) power_step(a);
    float* kbuf = y_.get();
    const std::vector<int64_t>* koff = &y_offset_;
    int64_t width = k_;
    if (blocks > 1) {
        for (int b = 0; b < blocks; ++b) {
            if (b > 0) power_step(a);
            for (size_t i = 0; i < local.size(); ++i) {  // rows b k .. (b + 1) k of K_s^T
                const int64_t ms = exchange_.layout().rows(local[i]);
                be_.copy(kry_.get() + kry_offset_[i] + b * k_ * ms, y_.get() + y_offset_[i],
                         static_cast<size_t>(k_ * ms));
            }
        }
        orthonormalize(kry_.get(), kry_offset_, kw_);
        kbuf = kry_.get();
        koff = &kry_offset_;
        width = kw_;
    }
    last_columns_ += width;
    project(a, kbuf, *koff, width, g_.get());
    be_.svd_wide(width, n_, g_.get(), ub_.get(), sb_.get(), vtb_.get(), work_.get());
    warm_ = true;  // the next warm start: the top k rows of vtb_
    for (size_t i = 0; i < local.size(); ++i) {
        const int64_t ms = exchange_.layout().rows(local[i]);
        be_.gemm(Trans::yes, Trans::no, ms, r_, width, 1.0f, kbuf + (*koff)[i], ms, ub_.get(), width, 0.0f, u[i],
                 r_);
    }
    be_.copy(s, sb_.get(), static_cast<size_t>(r_));
    be_.copy(vt, vtb_.get(), static_cast<size_t>(r_ * n_));
    exchange_.canonical_signs(u, r_, vt, n_, slots_.get());
}

}  // namespace loftq
