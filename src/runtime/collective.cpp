#include "runtime/collective.hpp"

#include <cstdint>
#include <cstdio>
#include <vector>

#include "core/error.hpp"

namespace loftq {
namespace {

enum ErrorKind : int32_t { kNone = 0, kError, kInput, kConfig, kBackend, kNotImplemented, kOther };

struct Outcome {
    int32_t kind = kNone;
    std::string text;     // result on success, message on failure
    std::string setting;  // ConfigError::setting()
};

Outcome run_capturing(const std::function<std::string()>& fn) {
    try {
        return {kNone, fn(), {}};
    } catch (const InputError& e) {
        return {kInput, e.what(), {}};
    } catch (const ConfigError& e) {
        return {kConfig, e.what(), e.setting()};
    } catch (const BackendError& e) {
        return {kBackend, e.what(), {}};
    } catch (const NotImplemented& e) {
        return {kNotImplemented, e.what(), {}};
    } catch (const Error& e) {
        return {kError, e.what(), {}};
    } catch (const std::exception& e) {
        return {kOther, e.what(), {}};
    }
}

template <typename E>
[[noreturn]] void raise_collective(E error) {
    error.set_collective();
    throw error;
}

[[noreturn]] void rethrow_collective(const Outcome& o) {
    const int32_t kind = o.kind;
    const std::string& message = o.text;
    if (kind == kInput) raise_collective(InputError(message));
    if (kind == kConfig) raise_collective(ConfigError(message, o.setting));
    if (kind == kBackend) raise_collective(BackendError(message));
    if (kind == kNotImplemented) raise_collective(NotImplemented(message));
    raise_collective(Error(message));
}

void broadcast_outcome(MPI_Comm comm, int root, Outcome& o) {
    if (o.kind == kConfig) o.text = o.setting + '\n' + o.text;  // travels in one string
    int64_t size = static_cast<int64_t>(o.text.size());
    MPI_CHECK(MPI_Bcast(&o.kind, 1, MPI_INT32_T, root, comm));
    MPI_CHECK(MPI_Bcast(&size, 1, MPI_INT64_T, root, comm));
    o.text.resize(static_cast<size_t>(size));
    // Chunks below 2^31 bytes (MPI counts are int).
    for (int64_t off = 0; off < size; off += (int64_t{1} << 30)) {
        const int n = static_cast<int>(std::min<int64_t>(size - off, int64_t{1} << 30));
        MPI_CHECK(MPI_Bcast(o.text.data() + off, n, MPI_CHAR, root, comm));
    }
    if (o.kind == kConfig) {
        const size_t cut = o.text.find('\n');
        o.setting = o.text.substr(0, cut);
        o.text.erase(0, cut + 1);
    }
}

}  // namespace

std::string root_computes(MPI_Comm comm, int root, const std::function<std::string()>& fn) {
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    Outcome o;
    if (rank == root) o = run_capturing(fn);
    broadcast_outcome(comm, root, o);
    if (o.kind != kNone) rethrow_collective(o);
    return o.text;
}

void all_or_none(MPI_Comm comm, const std::function<void()>& fn) {
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    Outcome mine = run_capturing([&] {
        fn();
        return std::string();
    });
    // The lowest failing rank speaks for all.
    int failing = mine.kind != kNone ? rank : INT32_MAX;
    int first = INT32_MAX;
    MPI_CHECK(MPI_Allreduce(&failing, &first, 1, MPI_INT, MPI_MIN, comm));
    if (first == INT32_MAX) return;
    broadcast_outcome(comm, first, mine);
    rethrow_collective(mine);
}

void abort_on_error(const std::function<void()>& fn) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size == 1) return fn();  // nothing to hang on: let main report it
    try {
        fn();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loftq: error: %s\n", e.what());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

}  // namespace loftq
