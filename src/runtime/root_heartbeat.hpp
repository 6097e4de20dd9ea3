// --watchdog across ranks, for rank 0 itself. Rank 0 judges every other rank's progress (it
// receives their records: runtime/progress.hpp), so while the others wait for the job's end their
// own watchdogs would rest and a frozen rank 0 (SIGSTOP, a hung file system) would hang the job.
// With a watchdog on, rank 0 sends a heartbeat, one empty message, to every other rank from each
// progress poll (at most every `interval`); a waiting rank restarts its watchdog on each heartbeat,
// so when rank 0 stops polling for the watchdog's limit, that rank ends the job naming rank 0.
// Rank 0 polls between its matrices and while it waits, so (as for every rank) the limit must
// exceed the longest matrix.
//
// No MPI call from a thread (MPI_THREAD_FUNNELED): send / take run on the job's thread.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <vector>

namespace loftq {

class RootHeartbeat {
public:
    // Off (every call does nothing) when watchdog_seconds <= 0 or comm has one rank.
    RootHeartbeat(MPI_Comm comm, double watchdog_seconds);
    bool on() const { return on_; }
    // Rank 0: one heartbeat to every other rank when `interval` has passed since the last.
    void send();
    // Other ranks: receive the heartbeats that arrived (non-blocking); true if there was one.
    bool take();
    // Collective: rank 0 stops sending and says how many it sent; the other ranks receive the
    // rest, so no message is left unmatched; rank 0's sends complete.
    void finish();

private:
    MPI_Comm comm_;
    int rank_ = 0, size_ = 1;
    bool on_ = false;
    std::chrono::duration<double> interval_{1.0};
    std::chrono::steady_clock::time_point last_sent_{};
    int64_t count_ = 0;  // sent (rank 0) or received (others)
    std::vector<MPI_Request> sends_;
};

}  // namespace loftq
