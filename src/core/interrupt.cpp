#include "core/interrupt.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "core/error.hpp"

namespace loftq {
namespace {

constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGUSR1};

// Written only by the handler (async-signal-safe: one store of a sig_atomic_t).
volatile sig_atomic_t g_signal = 0;
int g_depth = 0;  // InterruptScopes alive (main thread only)
struct sigaction g_previous[sizeof(kStopSignals) / sizeof(kStopSignals[0])];

// remove_on_stop_signal's path: complete before g_remove is set, read only while it is.
char g_remove_path[4096];
volatile sig_atomic_t g_remove = 0;

extern "C" void record_stop_signal(int signal_number) {
    if (g_signal == 0) g_signal = signal_number;
    if (g_remove) ::unlink(g_remove_path);
}

}  // namespace

InterruptScope::InterruptScope() {
    if (g_depth++ > 0) return;
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = record_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // blocking calls (MPI, file I/O) continue; the job polls the flag
    for (size_t i = 0; i < sizeof(kStopSignals) / sizeof(kStopSignals[0]); ++i)
        sigaction(kStopSignals[i], &sa, &g_previous[i]);
}

InterruptScope::~InterruptScope() {
    if (--g_depth > 0) return;
    for (size_t i = 0; i < sizeof(kStopSignals) / sizeof(kStopSignals[0]); ++i)
        sigaction(kStopSignals[i], &g_previous[i], nullptr);
}

int interrupt_signal() { return g_signal; }

void throw_if_interrupted(const std::string& what) {
    if (g_signal != 0) LOFTQ_THROW(Error, "interrupted by ", interrupt_signal_name(g_signal), " during ", what);
}

void remove_on_stop_signal(const char* path) {
    g_remove = 0;
    if (path == nullptr || std::strlen(path) >= sizeof g_remove_path) return;
    std::memcpy(g_remove_path, path, std::strlen(path) + 1);
    g_remove = 1;
}

const char* interrupt_signal_name(int signal_number) {
    switch (signal_number) {
        case SIGTERM: return "SIGTERM";
        case SIGINT: return "SIGINT";
        case SIGUSR1: return "SIGUSR1";
        default: break;
    }
    static thread_local char text[32];
    std::snprintf(text, sizeof text, "signal %d", signal_number);
    return text;
}

}  // namespace loftq
