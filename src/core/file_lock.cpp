#include "core/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>

#include "core/error.hpp"

namespace loftq {

std::string this_process_owner() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
    return cat("pid ", static_cast<long>(getpid()), " on host ", host);
}

std::optional<FileLock> FileLock::try_acquire(const std::string& path, std::string* holder,
                                              double wait_seconds) {
    const std::string lock_path = path + ".lock";
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
    // The holder unlinks the lock file before it lets go, so a lock taken on an inode that is no
    // longer at lock_path is worthless: try again on the file now there.
    for (int attempt = 0; attempt < 100; ++attempt) {
        const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            LOFTQ_THROW(InputError, "cannot create the lock file ", lock_path, ": ", std::strerror(errno));
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            if (err == EWOULDBLOCK && std::chrono::steady_clock::now() < give_up) {
                ::close(fd);
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                --attempt;  // waiting for a holder is not a replaced lock file
                continue;
            }
            if (err == ENOSYS || err == EOPNOTSUPP || err == ENOLCK) {
                ::close(fd);  // the file stays: it may be another job's, holding a lock we cannot see
                FileLock unheld;
                unheld.lock_path_ = lock_path;
                return unheld;
            }
            if (err != EWOULDBLOCK) {
                ::close(fd);
                LOFTQ_THROW(InputError, "cannot lock ", lock_path, ": ", std::strerror(err));
            }
            char buf[512] = {0};
            const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
            ::close(fd);
            std::string who = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
            while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
            if (holder) *holder = who.empty() ? "unknown" : who;
            return std::nullopt;
        }
        struct stat held{}, now{};
        if (::fstat(fd, &held) != 0 || ::stat(lock_path.c_str(), &now) != 0 || held.st_ino != now.st_ino ||
            held.st_dev != now.st_dev) {
            ::close(fd);
            continue;
        }
        const std::string owner = this_process_owner() + "\n";
        if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, owner.data(), owner.size(), 0) < 0) {
            const int err = errno;
            ::unlink(lock_path.c_str());  // held by us (same inode): no one else relies on it
            ::close(fd);
            LOFTQ_THROW(InputError, "cannot write the lock file ", lock_path, ": ", std::strerror(err));
        }
        FileLock lock;
        lock.lock_path_ = lock_path;
        lock.fd_ = fd;
        return lock;
    }
    LOFTQ_THROW(InputError, "cannot lock ", lock_path, ": it keeps being replaced");
}

FileLock::FileLock(FileLock&& o) noexcept { *this = std::move(o); }

FileLock& FileLock::operator=(FileLock&& o) noexcept {
    if (this != &o) {
        release();
        lock_path_ = std::move(o.lock_path_);
        fd_ = o.fd_;
        o.fd_ = -1;
    }
    return *this;
}

FileLock::~FileLock() { release(); }

void FileLock::release() noexcept {
    if (fd_ < 0) return;
    ::unlink(lock_path_.c_str());  // while still held: no one can have locked this inode since
    ::close(fd_);
    fd_ = -1;
}

}  // namespace loftq
