// Stop requests by signal (SIGTERM, SIGINT, SIGUSR1: a user's Ctrl-C, `kill`, Slurm's signal
// before the time limit, slurm/loftq.sbatch's LOFTQ_STOP_SIGNAL). While an InterruptScope is
// alive a handler only records the signal; the job polls `interrupt_signal()` at points where it
// can stop cleanly (between matrices), agrees with the other ranks, flushes and exits non-zero
// with one line. Outside a scope the signals keep their default action (terminate). `main` holds
// a scope around the commands that write (quantize, run, export), so that a signal in any of
// their phases (plan, run file creation, the loop, export) ends them cleanly: a signal before the
// loop stops the loop before its first matrix, one during export abandons the output folder
// (throw_if_interrupted), one after the last matrix or the export's last write stops nothing.
#pragma once

#include <string>

namespace loftq {

// Installs the handlers for its lifetime and restores the previous actions after. Nested scopes
// share the outermost one (its signal, its handlers).
class InterruptScope {
public:
    InterruptScope();
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;
};

// The first stop signal received in the current scope, or 0.
int interrupt_signal();

// Throws loftq::Error "interrupted by SIGTERM during <what>" once a stop signal was received.
void throw_if_interrupted(const std::string& what);

// A file the handler removes (unlink, async-signal-safe) when a stop signal arrives: the
// temporary of an output a stopped job never commits, which a process killed right after the
// signal (Open MPI ends the other ranks of an aborted job with SIGTERM, then SIGKILL) would
// otherwise leave behind. One at a time; nullptr forgets it. Paths over 4095 bytes are ignored.
void remove_on_stop_signal(const char* path);

// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
const char* interrupt_signal_name(int signal_number);

}  // namespace loftq
