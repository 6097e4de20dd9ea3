#include "loftq/loftq_loop.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "lowrank/randomized_svd.hpp"

namespace loftq {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Sum of one double per shard over the group, added in shard order (bit-identical for any
// assignment of shards to ranks). A double travels as two floats (hi + lo), exact to ~2^-48.
class ShardSum {
public:
    ShardSum(LinalgBackend& be, Communicator* comm, const ShardLayout& layout)
        : be_(be), exchange_(be, comm, layout), slots_(be, 2 * static_cast<size_t>(layout.count())),
          host_(2 * static_cast<size_t>(layout.count()), 0.0f) {}

    // local[i] is the value of shard exchange.local()[i].
    double sum(const std::vector<double>& local) {
        const auto& shards = exchange_.local();
        for (size_t i = 0; i < shards.size(); ++i) {
            const float hi = static_cast<float>(local[i]);
            host_[2 * shards[i]] = hi;
            host_[2 * shards[i] + 1] = static_cast<float>(local[i] - static_cast<double>(hi));
        }
        be_.upload(slots_.get(), host_.data(), host_.size());
        exchange_.share_slots(slots_.get(), 2, 2);
        be_.download(host_.data(), slots_.get(), host_.size());
        double total = 0;
        for (size_t s = 0; s < host_.size() / 2; ++s)
            total += static_cast<double>(host_[2 * s]) + static_cast<double>(host_[2 * s + 1]);
        return total;
    }

private:
    LinalgBackend& be_;
    ShardExchange exchange_;
    DeviceBuffer slots_;
    std::vector<float> host_;
};

// One local row shard and its buffers in backend memory (allocated once per matrix).
struct LocalShard {
    int64_t rows = 0;
    size_t n = 0;                // rows * cols
    DeviceBuffer w_storage;      // W uploaded, where the backend's memory is not the host's
    const float* w = nullptr;    // W in backend memory
    DeviceBuffer res;            // the residual W - Q; after a low-rank step, L Rt (the next step's `low`)
    DeviceBuffer low;            // the slots' scratch (finish() and staged slots write Q as loaded there)
    DeviceBuffer u, u_alt;       // U (rows x r) of this iterate and of the best one: they swap
    std::unique_ptr<QuantSlots> q;
};

// An error that is not finite means weights no float32 computation can quantize; the slots
// reject non-finite weights themselves, this catches overflow of the residual.
void require_finite(double v, const std::string& name, const std::string& what) {
    if (!std::isfinite(v))
        LOFTQ_THROW(InputError, "tensor ", name, ": ", what, " is not finite; weights must be finite "
                    "(and within the backbone's range) to quantize");
}

// The range of ||W||^2 (per shard) in which a float32 LoftQ gives true figures: the SVD's
// products (W^T W) stay below float32's maximum, and the squared norms and errors, which cross
// the group as float32 pairs (ShardSum), stay inside float32's normal range. Weights of real
// models are many orders of magnitude inside it; outside it a matrix is refused by name rather
// than reported with an error of 0 (subnormal weights) or NaN (a 3e38 outlier).
constexpr double kMinNormSquared = 0x1p-100;
constexpr double kMaxNormSquared = 0x1p100;

void require_norm_in_range(double w2, const std::string& name, int64_t row_begin, int64_t row_end) {
    if (w2 == 0 || (w2 >= kMinNormSquared && w2 <= kMaxNormSquared)) return;
    LOFTQ_THROW(InputError, "tensor ", name, ": rows [", row_begin, ", ", row_end, ") have Frobenius norm ",
                std::sqrt(w2), ", outside the range 2^-50..2^50 in which float32 LoftQ computes true errors ",
                "(weights this ", w2 < kMinNormSquared ? "small" : "large", " cannot be quantized faithfully)");
}

std::vector<LocalShard> make_shards(LinalgBackend& be, Communicator* comm, const ShardLayout& layout,
                                    const std::string& name, const std::vector<ShardInput>& local,
                                    int64_t cols, const LoftqOptions& opt) {
    const auto r = static_cast<size_t>(opt.rank());
    std::vector<LocalShard> shards(local.size());
    const std::vector<int> mine = layout.local_shards(comm ? comm->rank() : 0);
    if (mine.size() != local.size()) LOFTQ_THROW(Error, "'", name, "': shard inputs do not match the layout");
    for (size_t i = 0; i < local.size(); ++i) {
        auto& s = shards[i];
        s.rows = local[i].row_end - local[i].row_begin;
        if (local[i].row_begin != layout.row_offsets[mine[i]] || local[i].row_end != layout.row_offsets[mine[i] + 1])
            LOFTQ_THROW(Error, "'", name, "': shard ", i, " rows do not match the layout");
        s.n = static_cast<size_t>(s.rows * cols);
        s.w = local[i].in_backend_memory ? local[i].w : be.adopt_host(local[i].w, s.n, s.w_storage);
        s.res = DeviceBuffer(be, s.n);
        s.low = DeviceBuffer(be, s.n);
        s.u = DeviceBuffer(be, static_cast<size_t>(s.rows) * r);
        s.u_alt = DeviceBuffer(be, static_cast<size_t>(s.rows) * r);
        s.q = be.make_quant_slots(opt.quant, opt.backbone, s.n, s.low.get(), name);
    }
    return shards;
}

// How the factors are stored: B = f U sqrt(S), A = f sqrt(S) Vt with f = 1/sqrt(s) when the LoRA
// scaling s is compensated (f = 1 otherwise), and the model adds s B A.
struct StoredScaling {
    double scaling = 1;
    std::vector<float> factor;  // r copies of f

    explicit StoredScaling(const LoftqOptions& opt)
        : scaling(opt.lora_scaling()),
          factor(static_cast<size_t>(opt.rank()),
                 opt.compensate_scaling ? static_cast<float>(1.0 / std::sqrt(opt.lora_scaling())) : 1.0f) {}
};

// The rank-r SVD of the residuals and the low-rank step of one iteration: L = U sqrt(S) and
// Rt = sqrt(S) Vt; low = L Rt; res -= low. The SVD object's workspace is sized once per matrix.
class LowRankStep {
public:
    LowRankStep(LinalgBackend& be, Communicator* comm, const ShardLayout& layout, const std::string& name,
                int64_t rows, int64_t cols, const LoftqOptions& opt, bool sharded)
        : be_(be), r_(opt.rank()), cols_(cols), sv_(be, static_cast<size_t>(opt.rank())), s_host_(opt.rank()) {
        SvdOptions svd_opt = opt.svd_options;
        svd_opt.name = name;
        if (!sharded) {
            svd_ = make_truncated_svd(be, choose_svd_method(opt.svd, rows, cols, svd_opt), rows, cols, svd_opt);
            return;
        }
        if (opt.svd == SvdChoice::exact)
            LOFTQ_THROW_SETTING("svd", "the exact SVD cannot run on '", name, "': it is split over several "
                                "shards (ask for the randomized SVD or raise the split threshold)");
        choose_svd_method(SvdChoice::randomized, rows, cols, svd_opt);  // validates the rank
        auto p = std::make_unique<RandomizedSvd>(be, rows, cols, svd_opt, layout, comm);
        rsvd_ = p.get();
        svd_ = std::move(p);
    }
    std::string method() const { return svd_->method(); }
    int sketch_width() const { return svd_->sketch_width(); }
    int last_gemm_passes() const { return svd_->last_gemm_passes(); }
    int last_gemm_columns() const { return svd_->last_gemm_columns(); }

    // vt: r x cols. The iterate's squared error ||res - L Rt||^2 is the group's sum of e2 less
    // `captured`:
    // - a step in the loop: e2[i] = ||res||^2 of shard i, captured = sum of the r squared singular
    //   values (U orthonormal and U^T res = S Vt, so ||res - U S Vt||^2 = ||res||^2 - sum s^2, in
    //   double), and L Rt is formed into res itself, which the next quantization reads as its
    //   `low`: no separate low-rank buffer is touched and no subtraction pass is made;
    // - with `stored` (LoftQ's last step when the LoRA scaling is compensated): U and Vt are also
    //   scaled as finish() stores them, res becomes W - Q - s (f U)(f Vt), e2[i] is its squared
    //   norm (the error as loaded) and captured = 0.
    void run(std::vector<LocalShard>& shards, float* vt, std::vector<double>& e2, double& captured,
             const StoredScaling* stored) {
        if (!stored)
            for (size_t i = 0; i < shards.size(); ++i) {
                const double e = be_.norm2(shards[i].n, shards[i].res.get());
                e2[i] = e * e;
            }
        if (rsvd_) {
            std::vector<const float*> a;
            std::vector<float*> u;
            for (auto& s : shards) {
                a.push_back(s.res.get());
                u.push_back(s.u.get());
            }
            rsvd_->compute_shards(a, u, sv_.get(), vt);
        } else {
            svd_->compute(shards[0].res.get(), shards[0].u.get(), sv_.get(), vt);
        }
        be_.download(s_host_.data(), sv_.get(), s_host_.size());
        captured = 0;
        if (!stored)
            for (float v : s_host_) captured += static_cast<double>(v) * static_cast<double>(v);
        for (auto& v : s_host_) v = std::sqrt(std::max(v, 0.0f));
        be_.scale_rows(r_, cols_, vt, cols_, s_host_.data());
        if (stored) be_.scale_rows(r_, cols_, vt, cols_, stored->factor.data());
        for (size_t i = 0; i < shards.size(); ++i) {
            auto& s = shards[i];
            be_.scale_columns(s.rows, r_, s.u.get(), r_, s_host_.data());
            if (stored) {
                be_.scale_columns(s.rows, r_, s.u.get(), r_, stored->factor.data());
                be_.gemm(Trans::no, Trans::no, s.rows, cols_, r_, static_cast<float>(-stored->scaling), s.u.get(), r_,
                         vt, cols_, 1.0f, s.res.get(), cols_);
                const double e = be_.norm2(s.n, s.res.get());
                e2[i] = e * e;
                continue;
            }
            be_.gemm(Trans::no, Trans::no, s.rows, cols_, r_, 1.0f, s.u.get(), r_, vt, cols_, 0.0f, s.res.get(),
                     cols_);
        }
    }

private:
    LinalgBackend& be_;
    int r_;
    int64_t cols_;
    std::unique_ptr<TruncatedSvd> svd_;
    RandomizedSvd* rsvd_ = nullptr;  // set for a split matrix (compute_shards)
    DeviceBuffer sv_;
    std::vector<float> s_host_;
};

// The end of the loop: the kept iterate (the slots' best, u_alt, rt_best) becomes the stored
// codes, B and A (s * B * A = L Rt when compensating the LoRA scaling), and the error as loaded,
// ||W - Q - s B A|| / ||W|| with exactly what is stored, is computed in backend memory, unless
// the kept iterate is the last step, which computed both itself (`done`, LowRankStep::run with
// the stored scaling): the same operations on the same values. Each result reaches the host once.
void finish(LinalgBackend& be, std::vector<LocalShard>& shards, float* rt_best, int64_t cols,
            const StoredScaling& stored, bool done, ShardSum& shard_sum, double denom, const std::string& name,
            LoftqResult& out) {
    const int r = static_cast<int>(stored.factor.size());
    if (!done) {
        be.scale_rows(r, cols, rt_best, cols, stored.factor.data());
        std::vector<double> e2(shards.size());
        for (size_t i = 0; i < shards.size(); ++i) {
            auto& s = shards[i];
            be.scale_columns(s.rows, r, s.u_alt.get(), r, stored.factor.data());
            be.copy(s.res.get(), s.w, s.n);
            be.axpy(s.n, -1.0f, s.q->best_loaded(), s.res.get());
            be.gemm(Trans::no, Trans::no, s.rows, cols, r, static_cast<float>(-stored.scaling), s.u_alt.get(), r,
                    rt_best, cols, 1.0f, s.res.get(), cols);
            const double e = be.norm2(s.n, s.res.get());
            e2[i] = e * e;
        }
        out.loaded_error = std::sqrt(shard_sum.sum(e2)) / denom;
    }
    require_finite(out.loaded_error, name, "the error as loaded");
    out.A.resize(static_cast<size_t>(r) * cols);
    be.download(out.A.data(), rt_best, out.A.size());
    for (auto& s : shards) {
        out.B.emplace_back(static_cast<size_t>(s.rows) * r);
        be.download(out.B.back().data(), s.u_alt.get(), out.B.back().size());
        out.q.push_back(s.q->take_best());
    }
}

}  // namespace

double LoftqOptions::lora_scaling() const {
    const double r = static_cast<double>(rank());
    return rslora ? lora_alpha / std::sqrt(r) : lora_alpha / r;
}

LoftqResult run_loftq(LinalgBackend& be, const std::string& name, const float* w, int64_t rows,
                      int64_t cols, const LoftqOptions& opt) {
    return run_loftq_sharded(be, nullptr, ShardLayout::single(rows), name, {ShardInput{0, rows, w}},
                             rows, cols, opt);
}

LoftqResult run_loftq_sharded(LinalgBackend& be, Communicator* comm, const ShardLayout& layout,
                              const std::string& name, const std::vector<ShardInput>& local,
                              int64_t rows, int64_t cols, const LoftqOptions& opt) {
    if (opt.iters < 1) LOFTQ_THROW_SETTING("iters", "LoftQ needs at least 1 iteration, got ", opt.iters);
    const bool sharded = layout.count() > 1 || (comm && comm->size() > 1);
    if (sharded && opt.quant.double_quant)
        LOFTQ_THROW(NotImplemented, "'", name, "': double quantization of a split matrix (raise the split "
                    "threshold so that it runs whole)");

    LoftqResult out;
    ShardSum shard_sum(be, comm, layout);
    LowRankStep low_rank(be, comm, layout, name, rows, cols, opt, sharded);
    out.svd_method = low_rank.method();
    out.sketch = low_rank.sketch_width();
    std::vector<LocalShard> shards = make_shards(be, comm, layout, name, local, cols, opt);
    const auto vt_size = static_cast<size_t>(opt.rank()) * static_cast<size_t>(cols);
    DeviceBuffer vt(be, vt_size), vt_alt(be, vt_size);  // Rt of this iterate and of the best: they swap

    // ||W|| and QLoRA's error (plain quantization of the original weights, as QLoRA loads them).
    auto t0 = Clock::now();
    std::vector<double> w2(shards.size()), q2(shards.size());
    for (size_t i = 0; i < shards.size(); ++i) {
        const double wn = be.norm2(shards[i].n, shards[i].w);
        w2[i] = wn * wn;
        require_norm_in_range(w2[i], name, local[i].row_begin, local[i].row_end);
        q2[i] = shards[i].q->plain_error_squared(shards[i].w);
    }
    out.times.quantize += seconds_since(t0);
    t0 = Clock::now();
    const double wnorm = std::sqrt(shard_sum.sum(w2));
    const double denom = wnorm > 0 ? wnorm : 1.0;
    out.qlora_error = std::sqrt(shard_sum.sum(q2)) / denom;
    out.times.comm += seconds_since(t0);
    require_finite(out.qlora_error, name, "QLoRA's error");

    double best = std::numeric_limits<double>::infinity();
    std::vector<double> e2(shards.size());
    const StoredScaling stored(opt);
    bool done = false;  // the kept iterate is stored and its error as loaded known
    for (int t = 1; t <= opt.iters; ++t) {
        // Q_t = q(W) at t = 1, else q(W - L Rt); then res = W - Q_t.
        t0 = Clock::now();
        for (auto& s : shards) s.q->quantize_residual(be, s.w, t > 1 ? s.res.get() : nullptr, s.res.get());
        be.synchronize();  // so that the phase time is the backend's work
        out.times.quantize += seconds_since(t0);

        t0 = Clock::now();
        // The last step, when the LoRA scaling is compensated, ends as the stored factors and
        // its error is the error as loaded (s f^2 = 1 up to rounding: the iterate is the same).
        const bool last_as_loaded = t == opt.iters && opt.compensate_scaling;
        double captured = 0;
        low_rank.run(shards, vt.get(), e2, captured, last_as_loaded ? &stored : nullptr);
        out.times.svd += seconds_since(t0);
        out.gemm_passes.push_back(low_rank.last_gemm_passes());
        out.gemm_columns.push_back(low_rank.last_gemm_columns());
        t0 = Clock::now();
        const double err = std::sqrt(std::max(shard_sum.sum(e2) - captured, 0.0)) / denom;
        out.times.comm += seconds_since(t0);
        out.iteration_error.push_back(err);
        require_finite(err, name, "the error of iteration " + std::to_string(t));

        if (!opt.keep_best || err < best) {  // keep this iterate: swap, copy nothing
            best = err;
            out.chosen_iteration = t;
            done = last_as_loaded;
            if (done) out.loaded_error = err;
            for (auto& s : shards) {
                s.q->keep_current();
                std::swap(s.u, s.u_alt);
            }
            std::swap(vt, vt_alt);
        }
    }

    t0 = Clock::now();
    finish(be, shards, vt_alt.get(), cols, stored, done, shard_sum, denom, name, out);
    out.times.svd += seconds_since(t0);
    return out;
}

}  // namespace loftq
