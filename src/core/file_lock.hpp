// An advisory lock that one job holds on a file for as long as it uses it: flock(2) on a
// "<path>.lock" beside it, which records "pid N on host H" of the holder so that a refused job
// can say who has it. flock is released by the kernel when the holder dies (SIGKILL included),
// so a crashed job never leaves a stale lock; the lock file itself is removed by its holder.
#pragma once

#include <optional>
#include <string>

namespace loftq {

class FileLock {
public:
    // Takes the lock on `<path>.lock`, waiting at most wait_seconds for it: a job killed with
    // SIGKILL holds it until the kernel has torn it down, which can take a moment after its
    // launcher returned (a resume right after a kill must not be refused). Returns nullopt when
    // another process still holds it then, with *holder set to what that process recorded ("pid N on host H"; "unknown" if it has
    // not written it yet). Throws InputError naming the lock file when it cannot be created. On a
    // file system without flock (e.g. Lustre mounted without -o flock) the lock is not held:
    // held() is false, and the job runs unprotected rather than not at all.
    static std::optional<FileLock> try_acquire(const std::string& path, std::string* holder,
                                               double wait_seconds = 0);

    FileLock(FileLock&& other) noexcept;
    FileLock& operator=(FileLock&& other) noexcept;
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    ~FileLock();  // removes the lock file, then releases the lock

    const std::string& lock_path() const { return lock_path_; }
    bool held() const { return fd_ >= 0; }

private:
    FileLock() = default;
    void release() noexcept;
    std::string lock_path_;
    int fd_ = -1;
};

// "pid N on host H" of this process.
std::string this_process_owner();

}  // namespace loftq
