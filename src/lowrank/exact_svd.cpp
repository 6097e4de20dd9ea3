#include "lowrank/exact_svd.hpp"

#include <algorithm>
#include "core/error.hpp"

namespace loftq {

ExactSvd::ExactSvd(LinalgBackend& be, int64_t rows, int64_t cols, int rank)
    : be_(be), m_(rows), n_(cols), p_(std::min(rows, cols)), r_(rank),
      signs_(be, nullptr, ShardLayout::single(std::max<int64_t>(rows, 1))) {
    if (rows < 1 || cols < 1) LOFTQ_THROW(ConfigError, "exact SVD: empty matrix ", rows, " x ", cols);
    if (rank < 1 || rank > p_)
        LOFTQ_THROW_SETTING("rank", "rank ", rank, " is outside [1, ", p_, "] for a ", rows, " x ",
                            cols, " matrix");
    a_copy_ = DeviceBuffer(be, static_cast<size_t>(m_ * n_));
    u_full_ = DeviceBuffer(be, static_cast<size_t>(m_ * p_));
    s_full_ = DeviceBuffer(be, static_cast<size_t>(p_));
    vt_full_ = DeviceBuffer(be, static_cast<size_t>(p_ * n_));
    work_ = DeviceBuffer(be, be.svd_work(m_, n_));
    scratch_ = DeviceBuffer(be, static_cast<size_t>(r_));
}

void ExactSvd::compute(const float* a, float* u, float* s, float* vt) {
    be_.copy(a_copy_.get(), a, static_cast<size_t>(m_ * n_));
    be_.svd(m_, n_, a_copy_.get(), u_full_.get(), s_full_.get(), vt_full_.get(), work_.get());
    be_.copy_matrix(m_, r_, u_full_.get(), p_, u, r_);
    be_.copy(s, s_full_.get(), static_cast<size_t>(r_));
    be_.copy(vt, vt_full_.get(), static_cast<size_t>(r_) * n_);
    signs_.canonical_signs({u}, r_, vt, n_, scratch_.get());
}

std::vector<float> ExactSvd::all_singular_values() const {
    std::vector<float> out(static_cast<size_t>(p_));
    be_.download(out.data(), s_full_.get(), out.size());
    return out;
}

}  // namespace loftq
