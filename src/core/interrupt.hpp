// Stop requests by signal (SIGTERM, SIGINT, SIGUSR1: a user's Ctrl-C, `kill`, Slurm's signal
// before the time limit, slurm/loftq.sbatch's LOFTQ_STOP_SIGNAL). While an InterruptScope is
// alive a handler only records the signal; the job polls `interrupt_signal()` at points where it
// can stop cleanly (between matrices), agrees with the other ranks, flushes and exits non-zero
// with one line. Outside a scope the signals keep their default action (terminate).
#pragma once

namespace loftq {

// Installs the handlers for its lifetime and restores the previous actions after. Not nested.
class InterruptScope {
public:
    InterruptScope();
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;
};

// The first stop signal received in the current scope, or 0.
int interrupt_signal();

// A file the handler removes (unlink, async-signal-safe) when a stop signal arrives: the
// temporary of an output a stopped job never commits, which a process killed right after the
// signal (Open MPI ends the other ranks of an aborted job with SIGTERM, then SIGKILL) would
// otherwise leave behind. One at a time; nullptr forgets it. Paths over 4095 bytes are ignored.
void remove_on_stop_signal(const char* path);

// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
const char* interrupt_signal_name(int signal_number);

}  // namespace loftq
