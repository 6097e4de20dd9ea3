#include "runtime/root_heartbeat.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace loftq {
namespace {

constexpr int kTagHeartbeat = 7302;
char g_empty = 0;  // the buffer of every heartbeat (zero elements)

}  // namespace

RootHeartbeat::RootHeartbeat(MPI_Comm comm, double watchdog_seconds) : comm_(comm) {
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
    on_ = watchdog_seconds > 0 && size_ > 1;
    interval_ = std::chrono::duration<double>(std::min(1.0, watchdog_seconds / 4));
}

void RootHeartbeat::send() {
    if (!on_ || rank_ != 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (count_ > 0 && now - last_sent_ < interval_) return;
    last_sent_ = now;
    ++count_;
    for (int r = 1; r < size_; ++r) {
        sends_.emplace_back();
        MPI_CHECK(MPI_Isend(&g_empty, 0, MPI_CHAR, r, kTagHeartbeat, comm_, &sends_.back()));
    }
    // Completed sends are dropped as they go (tiny messages complete at once).
    int done = 0;
    MPI_CHECK(MPI_Testall(static_cast<int>(sends_.size()), sends_.data(), &done, MPI_STATUSES_IGNORE));
    if (done) sends_.clear();
}

bool RootHeartbeat::take() {
    if (!on_ || rank_ == 0) return false;
    bool any = false;
    for (;;) {
        int flag = 0;
        MPI_CHECK(MPI_Iprobe(0, kTagHeartbeat, comm_, &flag, MPI_STATUS_IGNORE));
        if (!flag) return any;
        MPI_CHECK(MPI_Recv(&g_empty, 0, MPI_CHAR, 0, kTagHeartbeat, comm_, MPI_STATUS_IGNORE));
        ++count_;
        any = true;
    }
}

void RootHeartbeat::finish() {
    if (!on_) return;
    int64_t sent = count_;
    MPI_CHECK(MPI_Bcast(&sent, 1, MPI_INT64_T, 0, comm_));
    if (rank_ == 0) {
        MPI_CHECK(MPI_Waitall(static_cast<int>(sends_.size()), sends_.data(), MPI_STATUSES_IGNORE));
        sends_.clear();
    } else {
        for (; count_ < sent; ++count_)
            MPI_CHECK(MPI_Recv(&g_empty, 0, MPI_CHAR, 0, kTagHeartbeat, comm_, MPI_STATUS_IGNORE));
    }
    on_ = false;
}

}  // namespace loftq
