// Shared by the libFuzzer harnesses of fuzz/: the input as a file (every reader under test
// takes a path, as the tool does), and the oracle. An input must end in success or in one
// refusal, an InputError or ConfigError of one line; anything else escapes to libFuzzer and is a
// finding: an internal check (loftq::Error), an HDF5/MPI call failure text (BackendError), an
// exception of the standard library or nlohmann, a sanitizer report, a hang, a crash.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.hpp"

namespace loftq::fuzz {

// A folder of this process under $TMPDIR (or /tmp), created on first use and removed at exit.
const std::string& scratch_dir();

// Writes data[0, size) to <scratch_dir()>/<name>, replacing what is there; returns its path.
std::string write_file(const std::string& name, const uint8_t* data, size_t size);

// Calls f(); an InputError or ConfigError whose message is one line is the expected refusal.
template <typename F>
void refuse_or_accept(F&& f) {
    try {
        f();
    } catch (const InputError& e) {
        if (std::string(e.what()).find('\n') != std::string::npos) std::abort();
    } catch (const ConfigError& e) {
        if (std::string(e.what()).find('\n') != std::string::npos) std::abort();
    }
}

}  // namespace loftq::fuzz
