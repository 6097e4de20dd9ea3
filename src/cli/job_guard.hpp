// What `quantize`, `export` and `run` check before they create or delete anything: that no path
// they write can destroy a path they read or write (io/path_guard.hpp), and that no other job is
// using the run file (an advisory lock, core/file_lock.hpp). Rank 0 decides and every rank raises
// the same one-line ConfigError (collective), so the job ends with exit 2 and no MPI_Abort.
#pragma once

#include <optional>
#include <string>

#include "cli/config.hpp"
#include "core/file_lock.hpp"

namespace loftq {

// Collective over MPI_COMM_WORLD. Throws ConfigError naming both options and the path on a
// conflict. work: the run file this command uses (run: its default beside the output).
void check_job_paths(const Config& cfg, const std::string& work);

// Collective over MPI_COMM_WORLD: rank 0 takes the run file's lock and holds it in the returned
// object until it is destroyed (other ranks get nullopt). Throws ConfigError "run file X is in
// use by another job (pid N on host H)" on every rank when another job holds it. No lock is
// taken where the run file's folder is missing (the job refuses that itself, creating nothing),
// nor, for a job that only reads the run file (reader), where its folder is not writable.
std::optional<FileLock> lock_run_file(const std::string& work, bool reader);

}  // namespace loftq
