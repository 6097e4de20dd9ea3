#include "loftq/loftq_loop.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "core/error.hpp"
#include "loftq/device_quant.hpp"
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

// Host float32 data of a backend buffer: the pointer itself on the CPU backend, a staged copy
// otherwise.
class HostView {
public:
    HostView(LinalgBackend& be, size_t n) : be_(be), n_(n) {
        if (be_.kind() != BackendKind::cpu) stage_.resize(n);
    }
    const float* read(const float* dev) {
        if (stage_.empty()) return dev;
        be_.download(stage_.data(), dev, n_);
        return stage_.data();
    }
    float* target(float* dev) { return stage_.empty() ? dev : stage_.data(); }
    void commit(float* dev) {
        if (!stage_.empty()) be_.upload(dev, stage_.data(), n_);
    }

private:
    LinalgBackend& be_;
    size_t n_;
    std::vector<float> stage_;
};

struct LocalShard {
    int64_t rows = 0;
    size_t n = 0;               // rows * cols
    const float* w_host = nullptr;
    DeviceBuffer w_dev;         // only for non-CPU backends (the CPU backend reads w_host)
    const float* w = nullptr;   // W in backend memory
    DeviceBuffer res, low, u;   // residual, Q or L Rt, U (rows x r)
    QuantizedTensor q_cur, q_best;
    std::vector<float> l_best;  // rows x r (host)
    // Device-resident path only: codes and Q of the current and best iterate, and a second U
    // so that the best L stays on the device (u_alt and u swap when an iterate is kept).
    std::unique_ptr<DeviceQuantSlots> dq;
    DeviceBuffer u_alt;
};

// The device-resident path rejects what the CPU path's input check rejects, from the norms it
// computes anyway: a sum of squares in double is finite iff every float32 term is finite.
void require_finite(double v, const std::string& name, const std::string& what) {
    if (!std::isfinite(v))
        LOFTQ_THROW(InputError, "tensor ", name, ": ", what, " is not finite; weights must be finite "
                    "(and within the backbone's range) to quantize");
}

// The end of the device-resident path: the kept iterate (the slots' best, u_alt, rt_best) becomes
// the stored codes, B and A (scaled by `factor` on the device, as the host path scales them),
// the loaded error is computed on the device, and each result crosses PCIe once.
void finish_on_device(LinalgBackend& be, std::vector<LocalShard>& shards, float* rt_best, int64_t cols,
                      int r, float factor, double scaling, ShardSum& shard_sum, double denom,
                      LoftqResult& out) {
    const auto t0 = Clock::now();
    const std::vector<float> f(static_cast<size_t>(r), factor);
    be.scale_rows(r, cols, rt_best, cols, f.data());
    std::vector<double> e2(shards.size());
    for (size_t i = 0; i < shards.size(); ++i) {
        auto& s = shards[i];
        be.scale_columns(s.rows, r, s.u_alt.get(), r, f.data());
        be.copy(s.res.get(), s.w, s.n);
        be.axpy(s.n, -1.0f, s.dq->best_loaded(), s.res.get());
        be.gemm(Trans::no, Trans::no, s.rows, cols, r, static_cast<float>(-scaling), s.u_alt.get(), r,
                rt_best, cols, 1.0f, s.res.get(), cols);
        const double e = be.norm2(s.n, s.res.get());
        e2[i] = e * e;
    }
    out.loaded_error = std::sqrt(shard_sum.sum(e2)) / denom;
    out.A.resize(static_cast<size_t>(r) * cols);
    be.download(out.A.data(), rt_best, out.A.size());
    for (auto& s : shards) {
        out.B.emplace_back(static_cast<size_t>(s.rows) * r);
        be.download(out.B.back().data(), s.u_alt.get(), out.B.back().size());
        out.q.emplace_back();
        s.dq->download_best(out.q.back());
    }
    out.times.svd += seconds_since(t0);
}

// ||w - dequantize(quantize(w))||^2; `deq` is n floats of host scratch.
double squared_error_of_plain_quantization(const QuantParams& p, const float* w, size_t n, float* deq,
                                           const std::string& name) {
    QuantizedTensor q;
    quantize(p, w, static_cast<int64_t>(n), q, name);
    dequantize(q, deq);
    double acc = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(w[i]) - static_cast<double>(deq[i]);
        acc += d * d;
    }
    return acc;
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
    const int r = opt.rank();
    if (opt.iters < 1) LOFTQ_THROW_SETTING("iters", "LoftQ needs at least 1 iteration, got ", opt.iters);
    SvdOptions svd_opt = opt.svd_options;
    svd_opt.name = name;
    const bool sharded = layout.count() > 1 || (comm && comm->size() > 1);
    // Quantize on the device (nothing staged through the host) where the CUDA op supports the
    // format and backbone; otherwise quantization is staged through the host (HostView).
    const bool on_device = device_quant_supported(be, opt.quant, opt.backbone);
    if (sharded && opt.quant.double_quant)
        LOFTQ_THROW(NotImplemented, "'", name, "': --double-quant on a split matrix (raise --split-threshold)");

    LoftqResult out;
    ShardSum shard_sum(be, comm, layout);

    // The SVD object (workspace sized once for this shape).
    std::unique_ptr<TruncatedSvd> svd;
    RandomizedSvd* rsvd = nullptr;
    if (sharded) {
        if (opt.svd == SvdChoice::exact)
            LOFTQ_THROW_SETTING("svd", "the exact SVD cannot run on '", name, "': it is split over several "
                                "shards (ask for the randomized SVD or raise the split threshold)");
        choose_svd_method(SvdChoice::randomized, rows, cols, svd_opt);  // validates the rank
        auto p = std::make_unique<RandomizedSvd>(be, rows, cols, svd_opt, layout, comm);
        rsvd = p.get();
        svd = std::move(p);
    } else {
        svd = make_truncated_svd(be, choose_svd_method(opt.svd, rows, cols, svd_opt), rows, cols, svd_opt);
    }
    out.svd_method = svd->method();

    // Local shards and their buffers (allocated once).
    std::vector<LocalShard> shards(local.size());
    const std::vector<int> mine = layout.local_shards(comm ? comm->rank() : 0);
    if (mine.size() != local.size()) LOFTQ_THROW(Error, "'", name, "': shard inputs do not match the layout");
    for (size_t i = 0; i < local.size(); ++i) {
        auto& s = shards[i];
        s.rows = local[i].row_end - local[i].row_begin;
        if (local[i].row_begin != layout.row_offsets[mine[i]] || local[i].row_end != layout.row_offsets[mine[i] + 1])
            LOFTQ_THROW(Error, "'", name, "': shard ", i, " rows do not match the layout");
        s.n = static_cast<size_t>(s.rows * cols);
        s.w_host = local[i].w;
        if (local[i].in_backend_memory && be.kind() != BackendKind::cpu && !on_device)
            LOFTQ_THROW(NotImplemented, "'", name, "': weights already on the device need device "
                        "quantization (not available for this format and backbone)");
        if (be.kind() == BackendKind::cpu || local[i].in_backend_memory) {
            s.w = s.w_host;
        } else {
            s.w_dev = DeviceBuffer(be, s.n);
            be.upload(s.w_dev.get(), s.w_host, s.n);
            s.w = s.w_dev.get();
        }
        s.res = DeviceBuffer(be, s.n);
        s.low = DeviceBuffer(be, s.n);
        s.u = DeviceBuffer(be, static_cast<size_t>(s.rows) * r);
        if (on_device) {
            s.dq = std::make_unique<DeviceQuantSlots>(be, opt.quant, opt.backbone, s.n, name);
            s.u_alt = DeviceBuffer(be, static_cast<size_t>(s.rows) * r);
        }
    }
    DeviceBuffer sv(be, static_cast<size_t>(r)), vt(be, static_cast<size_t>(r) * cols), vt_alt;
    if (on_device) vt_alt = DeviceBuffer(be, static_cast<size_t>(r) * cols);
    std::vector<float> s_host(r), vt_best(static_cast<size_t>(r) * cols);

    // ||W|| and QLoRA's error (plain quantization of the original weights, as QLoRA loads them).
    auto t0 = Clock::now();
    std::vector<double> w2(shards.size()), q2(shards.size());
    for (size_t i = 0; i < shards.size(); ++i) {
        auto& s = shards[i];
        if (s.dq) {
            const double wn = be.norm2(s.n, s.w);
            require_finite(wn, name, "||W||");
            s.dq->plain_residual(s.w, s.res.get());
            const double qn = be.norm2(s.n, s.res.get());
            require_finite(qn, name, "||W - q(W)||");
            w2[i] = wn * wn;
            q2[i] = qn * qn;
            continue;
        }
        const double wn = be.norm2(s.n, s.w);
        w2[i] = wn * wn;
        // Host scratch: the (still unused) low-rank buffer on the CPU backend, so that memory stays
        // at three matrices (W, residual, low) plus codes.
        std::vector<float> host_scratch(be.kind() == BackendKind::cpu ? 0 : shards[i].n);
        float* deq = be.kind() == BackendKind::cpu ? shards[i].low.get() : host_scratch.data();
        q2[i] = squared_error_of_plain_quantization(opt.quant, shards[i].w_host, shards[i].n, deq, name);
    }
    out.times.quantize += seconds_since(t0);
    t0 = Clock::now();
    const double wnorm = std::sqrt(shard_sum.sum(w2));
    const double denom = wnorm > 0 ? wnorm : 1.0;
    out.qlora_error = std::sqrt(shard_sum.sum(q2)) / denom;
    out.times.comm += seconds_since(t0);

    double best = std::numeric_limits<double>::infinity();
    std::vector<double> e2(shards.size());
    for (int t = 1; t <= opt.iters; ++t) {
        // Q_t = q(W) at t = 1, else q(W - L Rt); then res = W - Q_t.
        t0 = Clock::now();
        for (auto& s : shards) {
            if (s.dq) {
                const float* x = s.w;
                if (t > 1) {
                    be.copy(s.res.get(), s.w, s.n);
                    be.axpy(s.n, -1.0f, s.low.get(), s.res.get());
                    x = s.res.get();
                }
                s.dq->quantize_current(x);
                be.copy(s.res.get(), s.w, s.n);
                be.axpy(s.n, -1.0f, s.dq->current_loaded(), s.res.get());
                continue;
            }
            HostView in(be, s.n), q_out(be, s.n);
            const float* x = s.w_host;
            if (t > 1) {
                be.copy(s.res.get(), s.w, s.n);
                be.axpy(s.n, -1.0f, s.low.get(), s.res.get());
                x = in.read(s.res.get());
            }
            quantize_as_loaded(opt.quant, opt.backbone, x, static_cast<int64_t>(s.n), s.q_cur,
                               q_out.target(s.low.get()), name);
            q_out.commit(s.low.get());
            be.copy(s.res.get(), s.w, s.n);
            be.axpy(s.n, -1.0f, s.low.get(), s.res.get());
        }
        if (on_device) be.synchronize();  // so that the phase time is the device's work
        out.times.quantize += seconds_since(t0);

        // Rank-r SVD of the residual; L = U sqrt(S), Rt = sqrt(S) Vt; low = L Rt; res -= low.
        t0 = Clock::now();
        if (rsvd) {
            std::vector<const float*> a;
            std::vector<float*> u;
            for (auto& s : shards) {
                a.push_back(s.res.get());
                u.push_back(s.u.get());
            }
            rsvd->compute_shards(a, u, sv.get(), vt.get());
        } else {
            svd->compute(shards[0].res.get(), shards[0].u.get(), sv.get(), vt.get());
        }
        be.download(s_host.data(), sv.get(), s_host.size());
        for (auto& v : s_host) v = std::sqrt(std::max(v, 0.0f));
        be.scale_rows(r, cols, vt.get(), cols, s_host.data());
        for (size_t i = 0; i < shards.size(); ++i) {
            auto& s = shards[i];
            be.scale_columns(s.rows, r, s.u.get(), r, s_host.data());
            be.gemm(Trans::no, Trans::no, s.rows, cols, r, 1.0f, s.u.get(), r, vt.get(), cols, 0.0f,
                    s.low.get(), cols);
            be.axpy(s.n, -1.0f, s.low.get(), s.res.get());
            const double e = be.norm2(s.n, s.res.get());
            e2[i] = e * e;
        }
        out.times.svd += seconds_since(t0);
        t0 = Clock::now();
        const double err = std::sqrt(shard_sum.sum(e2)) / denom;
        out.times.comm += seconds_since(t0);
        out.iteration_error.push_back(err);
        if (on_device) require_finite(err, name, "the error of iteration " + std::to_string(t));

        if (on_device && (!opt.keep_best || err < best)) {
            best = err;
            out.chosen_iteration = t;
            for (auto& s : shards) {  // keep this iterate on the device: swap, copy nothing
                s.dq->keep_current();
                std::swap(s.u, s.u_alt);
            }
            std::swap(vt, vt_alt);
        } else if (!opt.keep_best || err < best) {
            best = err;
            out.chosen_iteration = t;
            for (auto& s : shards) {
                s.q_best = s.q_cur;
                s.l_best.resize(static_cast<size_t>(s.rows) * r);
                be.download(s.l_best.data(), s.u.get(), s.l_best.size());
            }
            be.download(vt_best.data(), vt.get(), vt_best.size());
        }
    }

    // Stored factors: s * B * A = L Rt when compensating the LoRA scaling.
    const double scaling = opt.lora_scaling();
    const float factor = opt.compensate_scaling ? static_cast<float>(1.0 / std::sqrt(scaling)) : 1.0f;
    if (on_device) {
        finish_on_device(be, shards, vt_alt.get(), cols, r, factor, scaling, shard_sum, denom, out);
        return out;
    }
    out.A = vt_best;
    for (auto& v : out.A) v *= factor;
    for (auto& s : shards) {
        out.q.push_back(std::move(s.q_best));
        out.B.push_back(std::move(s.l_best));
        for (auto& v : out.B.back()) v *= factor;
    }

    // The error as loaded: W - Q - s * B * A with exactly what is stored.
    t0 = Clock::now();
    be.upload(vt.get(), out.A.data(), out.A.size());
    for (size_t i = 0; i < shards.size(); ++i) {
        auto& s = shards[i];
        if (be.kind() == BackendKind::cpu) {
            loaded_values(out.q[i], opt.backbone, s.low.get());
        } else {
            std::vector<float> q_loaded(s.n);
            loaded_values(out.q[i], opt.backbone, q_loaded.data());
            be.upload(s.low.get(), q_loaded.data(), s.n);
        }
        be.upload(s.u.get(), out.B[i].data(), out.B[i].size());
        be.copy(s.res.get(), s.w, s.n);
        be.axpy(s.n, -1.0f, s.low.get(), s.res.get());
        be.gemm(Trans::no, Trans::no, s.rows, cols, r, static_cast<float>(-scaling), s.u.get(), r,
                vt.get(), cols, 1.0f, s.res.get(), cols);
        const double e = be.norm2(s.n, s.res.get());
        e2[i] = e * e;
    }
    out.loaded_error = std::sqrt(shard_sum.sum(e2)) / denom;
    out.times.svd += seconds_since(t0);
    return out;
}

}  // namespace loftq
