#include "runtime/watchdog.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace loftq {

Watchdog::Watchdog(double seconds, int rank) : seconds_(seconds), rank_(rank), last_(std::chrono::steady_clock::now()) {
    if (seconds_ > 0) thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    stop_cv_.notify_all();
    thread_.join();
}

void Watchdog::beat(const std::string& doing) {
    if (!thread_.joinable()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    last_ = std::chrono::steady_clock::now();
    doing_ = doing;
    paused_ = false;
}

void Watchdog::pause() {
    if (!thread_.joinable()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    paused_ = true;
}

void Watchdog::watch() {
    // Checked a few times per period, at most once a second: the line comes within ~1 s of expiry.
    const auto step = std::chrono::duration<double>(std::min(1.0, seconds_ / 4));
    std::unique_lock<std::mutex> lock(mutex_);
    auto woke = std::chrono::steady_clock::now();
    while (!stop_cv_.wait_for(lock, step, [this] { return stop_; })) {
        const auto now = std::chrono::steady_clock::now();
        // Woken far later than asked: this process was stopped (SIGSTOP, a frozen node). That time
        // is not its own lack of progress: the other ranks judge it; on SIGCONT it does not fire
        // a second line while the launcher ends the job.
        const auto late = now - woke - std::chrono::duration_cast<std::chrono::steady_clock::duration>(step);
        if (late > std::chrono::seconds(1)) last_ += late;
        woke = now;
        const double idle = std::chrono::duration<double>(now - last_).count();
        if (paused_ || idle < seconds_) continue;
        std::fprintf(stderr, "loftq: error: watchdog: rank %d made no progress for %.0f s (%s); ending the job\n",
                     rank_, idle, doing_.c_str());
        std::fflush(stderr);
        ::_exit(1);
    }
}

}  // namespace loftq
