#include "lowrank/distributed_svd.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace loftq {

int64_t ShardLayout::max_rows() const {
    int64_t m = 0;
    for (int s = 0; s < count(); ++s) m = std::max(m, rows(s));
    return m;
}

std::vector<int> ShardLayout::local_shards(int group_rank) const {
    std::vector<int> out;
    for (int s = 0; s < count(); ++s)
        if (owner[s] == group_rank) out.push_back(s);
    return out;
}

void ShardLayout::validate(int64_t rows, int group_size) const {
    LOFTQ_CHECK(!owner.empty() && row_offsets.size() == owner.size() + 1,
                "shard layout needs S >= 1 owners and S + 1 row offsets");
    LOFTQ_CHECK(row_offsets.front() == 0 && row_offsets.back() == rows,
                "shard offsets must cover rows [0, ", rows, ")");
    for (int s = 0; s < count(); ++s) {
        LOFTQ_CHECK(row_offsets[s] < row_offsets[s + 1], "shard ", s, " is empty");
        LOFTQ_CHECK(owner[s] >= 0 && owner[s] < group_size, "shard ", s, " owner ", owner[s],
                    " outside the group of ", group_size);
    }
}

ShardExchange::ShardExchange(LinalgBackend& be, Communicator* comm, ShardLayout layout)
    : be_(be), comm_(comm), layout_(std::move(layout)) {
    const int gs = group_size();
    layout_.validate(layout_.row_offsets.back(), gs);
    if (comm_) {
        const bool want_device = be_.kind() == BackendKind::cuda;
        if (comm_->device_buffers() != want_device)
            LOFTQ_THROW(NotImplemented, "shard exchange: a ", be_.name(), " backend needs a ",
                        want_device ? "device (NCCL)" : "host (MPI)", " communicator");
    }
    local_ = layout_.local_shards(comm_ ? comm_->rank() : 0);
}

void ShardExchange::share_slots(float* slots, size_t count, size_t stride) {
    if (group_size() == 1) return;
    comm_->group_start();
    for (int s = 0; s < layout_.count(); ++s)
        comm_->broadcast(slots + s * stride, count, layout_.owner[s]);
    comm_->group_end();
    comm_->synchronize();
}

void ShardExchange::sum_slots(float* slots, size_t count, size_t stride, float* out) {
    be_.copy(out, slots, count);
    for (int s = 1; s < layout_.count(); ++s) be_.axpy(count, 1.0f, slots + s * stride, out);
}

void ShardExchange::canonical_signs(const std::vector<float*>& u_local, int64_t r, float* vt,
                                    int64_t n, float* scratch) {
    const int S = layout_.count();
    for (size_t i = 0; i < local_.size(); ++i)
        be_.column_absmax(layout_.rows(local_[i]), r, u_local[i], r, scratch + local_[i] * r);
    share_slots(scratch, static_cast<size_t>(r), static_cast<size_t>(r));
    std::vector<float> peaks(static_cast<size_t>(S * r));
    be_.download(peaks.data(), scratch, peaks.size());
    std::vector<float> sign(static_cast<size_t>(r), 1.0f);
    bool any = false;
    for (int64_t j = 0; j < r; ++j) {
        float best = 0.0f;
        for (int s = 0; s < S; ++s)
            if (std::fabs(peaks[s * r + j]) > std::fabs(best)) best = peaks[s * r + j];
        if (best < 0) { sign[j] = -1.0f; any = true; }
    }
    if (!any) return;
    for (size_t i = 0; i < local_.size(); ++i)
        be_.scale_columns(layout_.rows(local_[i]), r, u_local[i], r, sign.data());
    be_.scale_rows(r, n, vt, n, sign.data());
}

}  // namespace loftq
