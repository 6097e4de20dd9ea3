#include "cli/job_guard.hpp"

#include <mpi.h>

#include <cstdio>
#include <filesystem>

#include "core/error.hpp"
#include "io/path_guard.hpp"
#include "runtime/collective.hpp"

namespace loftq {

// How long a job waits for the run file's lock: enough for a job just killed to be torn down.
constexpr double kLockWaitSeconds = 3.0;

void check_job_paths(const Config& cfg, const std::string& work) {
    JobPaths paths;
    paths.model = cfg.model_dir;
    paths.work = work;
    if (cfg.command == "quantize" || cfg.command == "run") paths.log = cfg.quantize.log_json;
    if (cfg.command == "export" || cfg.command == "run") paths.output = cfg.exp.output_dir;
    root_computes(MPI_COMM_WORLD, 0, [&] {
        if (const auto c = find_path_conflict(paths))
            LOFTQ_THROW(ConfigError, "option --", c->setting, ": '", c->path, "' ", c->relation, " of --",
                        c->other, " '", c->other_path, "'");
        return std::string();
    });
}

std::optional<FileLock> lock_run_file(const std::string& work, bool reader) {
    std::optional<FileLock> lock;
    root_computes(MPI_COMM_WORLD, 0, [&] {
        std::error_code ec;
        if (!std::filesystem::is_directory(std::filesystem::absolute(work).parent_path(), ec)) return std::string();
        std::string holder;
        try {
            lock = FileLock::try_acquire(work, &holder, kLockWaitSeconds);
        } catch (const InputError&) {
            if (reader) return std::string();  // a run file in a read-only place: export may still read it
            throw;
        }
        if (!lock) LOFTQ_THROW(ConfigError, "run file ", work, " is in use by another job (", holder, ")");
        if (!lock->held())
            std::fprintf(stderr, "loftq: warning: the file system of %s has no flock: the run file is not locked "
                                 "against a second job\n", work.c_str());
        return std::string();
    });
    return lock;
}

}  // namespace loftq
