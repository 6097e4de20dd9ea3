// A per-rank watchdog (`--watchdog SECONDS`): a rank that reports no progress for that long
// ends the job with one line naming the rank and what it was doing, instead of hanging (a frozen
// or stuck rank, a peer that never reaches a collective). Progress is a `beat`: the start of a
// matrix, its end, the wait for the other ranks. A single matrix that runs longer than the limit
// counts as no progress, so the limit must exceed the longest matrix.
//
// The watchdog thread makes no MPI call (the library runs MPI_THREAD_FUNNELED): it prints the
// line and ends the process with _exit(1); the launcher (mpirun, srun) and MPI's detection of a
// dead peer end the other ranks, as for any rank that dies.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace loftq {

class Watchdog {
public:
    // seconds <= 0: off (no thread).
    Watchdog(double seconds, int rank);
    ~Watchdog();
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    // Progress: the clock restarts; `doing` ("on matrix X") is what the line names if it expires.
    void beat(const std::string& doing);
    // No expiry until the next beat: a wait that another rank's watchdog judges (rank 0 sees
    // every rank's records and names the one that is silent).
    void pause();

private:
    void watch();

    double seconds_;
    int rank_;
    std::mutex mutex_;
    std::condition_variable stop_cv_;
    bool stop_ = false;
    std::chrono::steady_clock::time_point last_;
    std::string doing_ = "starting";
    bool paused_ = false;
    std::thread thread_;
};

}  // namespace loftq
