// Exact truncated SVD: the full thin SVD (LAPACK gesdd on CPU, cuSOLVER gesvd on GPU) cut to the
// leading `rank` triplets. The reference for the randomized path and the --svd exact method.
#pragma once

#include <vector>

#include "lowrank/distributed_svd.hpp"
#include "lowrank/truncated_svd.hpp"

namespace loftq {

class ExactSvd final : public TruncatedSvd {
public:
    // Allocates the workspace for rows x cols once (about (rows + cols) * min(rows, cols) floats
    // plus a copy of A). Throws ConfigError when rank is outside [1, min(rows, cols)].
    ExactSvd(LinalgBackend& be, int64_t rows, int64_t cols, int rank);
    void compute(const float* a, float* u, float* s, float* vt) override;
    std::string method() const override { return "exact"; }

    // All min(rows, cols) singular values of the last compute, on the host (for tests/reports).
    std::vector<float> all_singular_values() const;

private:
    LinalgBackend& be_;
    int64_t m_, n_, p_;
    int r_;
    ShardExchange signs_;
    DeviceBuffer a_copy_, u_full_, s_full_, vt_full_, work_, scratch_;
};

}  // namespace loftq
