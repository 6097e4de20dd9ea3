// Typed errors and the check-macro family used by every layer.
//
// Every failure becomes one exception carrying one line of text: what failed, where (file:line),
// and which process (rank@host). `main` prints that line, and under MPI calls MPI_Abort so that
// no other rank waits forever in a collective (STYLE.md 9, 18).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace loftq {

// Base of every error the tool raises on purpose.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
    // A collective error is raised identically on every rank (e.g. rank 0 found a bad file and
    // told the others): main lets rank 0 print it once and every rank exit without MPI_Abort.
    bool collective() const { return collective_; }
    void set_collective() { collective_ = true; }

private:
    bool collective_ = false;
};

// A malformed file, tensor or checkpoint: the message names the file and tensor.
class InputError : public Error {
public:
    using Error::Error;
};

// A bad setting or combination of settings. Layers below the command line name the setting in
// their own words ("rank 80 exceeds min(rows, cols) = 64 of ...") and tag it with its key
// (`setting`: "rank", "blocksize", "backbone", ...); only the CLI maps a key to the option that
// carries it ("option --rank: ..."). Errors the CLI raises itself name the option in the text.
class ConfigError : public Error {
public:
    explicit ConfigError(const std::string& what, std::string setting = {})
        : Error(what), setting_(std::move(setting)) {}
    const std::string& setting() const { return setting_; }

private:
    std::string setting_;
};

// A library call failed (LAPACK, HDF5, CUDA, cuBLAS, cuSOLVER, NCCL, MPI).
class BackendError : public Error {
public:
    using Error::Error;
};

// A combination that is not implemented (never a silent fallback, STYLE.md 2).
class NotImplemented : public Error {
public:
    using Error::Error;
};

// Concatenate anything streamable into one string.
template <typename... Args>
std::string cat(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

// An untrusted name (a tensor or matrix name read from a file) fit for a one-line message:
// control characters (bytes < 0x20 and 0x7f) written as \xNN, everything else unchanged.
std::string printable(const std::string& text);

// "rank 3@node12" once set_process_context ran, "rank ?@host" before.
std::string process_tag();
void set_process_context(int rank, int size);
int process_rank();   // 0 before MPI is up
int process_count();  // 1 before MPI is up

// Build "<call> failed (<detail>) at file:line [rank r@host]".
std::string call_failure(const char* call, const std::string& detail, const char* file, int line);

}  // namespace loftq

#define LOFTQ_THROW(Type, ...) throw Type(::loftq::cat(__VA_ARGS__))
// A ConfigError about one setting (see ConfigError): LOFTQ_THROW_SETTING("rank", "rank ", r, ...).
#define LOFTQ_THROW_SETTING(setting, ...) throw ::loftq::ConfigError(::loftq::cat(__VA_ARGS__), setting)

// Internal invariant or argument check: throws loftq::Error with the condition text.
#define LOFTQ_CHECK(cond, ...)                                                              \
    do {                                                                                    \
        if (!(cond))                                                                        \
            throw ::loftq::Error(::loftq::call_failure(#cond, ::loftq::cat(__VA_ARGS__),    \
                                                       __FILE__, __LINE__));                \
    } while (0)

// LAPACK(E) returns info: < 0 a bad argument, > 0 no convergence.
#define LAPACK_CHECK(call)                                                                  \
    do {                                                                                    \
        const long long loftq_info_ = static_cast<long long>(call);                         \
        if (loftq_info_ != 0)                                                               \
            throw ::loftq::BackendError(::loftq::call_failure(                              \
                #call, ::loftq::cat("info ", loftq_info_), __FILE__, __LINE__));            \
    } while (0)

// HDF5 returns a negative herr_t / hid_t on failure.
#define HDF5_CHECK(call)                                                                    \
    ([&]() {                                                                                \
        auto loftq_h5_ = (call);                                                            \
        if (loftq_h5_ < 0)                                                                  \
            throw ::loftq::BackendError(                                                    \
                ::loftq::call_failure(#call, "negative return", __FILE__, __LINE__));       \
        return loftq_h5_;                                                                   \
    }())

// MPI returns MPI_SUCCESS (0) or an error class.
#define MPI_CHECK(call)                                                                     \
    do {                                                                                    \
        const int loftq_mpi_ = (call);                                                      \
        if (loftq_mpi_ != 0)                                                                \
            throw ::loftq::BackendError(::loftq::call_failure(                              \
                #call, ::loftq::mpi_error_string(loftq_mpi_), __FILE__, __LINE__));         \
    } while (0)

namespace loftq {
std::string mpi_error_string(int code);
}
