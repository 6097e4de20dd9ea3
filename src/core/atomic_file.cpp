#include "core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

std::string os_reason(int err) { return std::strerror(err); }

std::string folder_of(const std::string& path) {
    const std::string parent = fs::path(path).parent_path().string();
    return parent.empty() ? "." : parent;
}

// fsync then close `fd` (closed in every case); 0 or the first errno. close() failing after a
// good fsync is still a failure: NFS reports a lost write there.
int sync_and_close(int fd) {
    int err = ::fsync(fd) != 0 ? errno : 0;
    if (::close(fd) != 0 && err == 0) err = errno;
    return err;
}

}  // namespace

std::string atomic_temp_path(const std::string& path) {
    const fs::path p(path);
    return (p.parent_path() / cat(".", p.filename().string(), ".tmp-", static_cast<long>(::getpid()))).string();
}

int remove_abandoned_temporaries(const std::string& path) {
    const fs::path p(path);
    const std::string prefix = cat(".", p.filename().string(), ".tmp-");
    const std::string mine = fs::path(atomic_temp_path(path)).filename().string();
    std::error_code ec;
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(p.parent_path().empty() ? fs::path(".") : p.parent_path(), ec)) {
        const std::string n = e.path().filename().string();
        const std::string pid = n.compare(0, prefix.size(), prefix) == 0 ? n.substr(prefix.size()) : "";
        if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos && n != mine)
            found.push_back(e.path());
    }
    int removed = 0;
    for (const auto& f : found) removed += fs::remove(f, ec) ? 1 : 0;
    return removed;
}

void sync_folder(const std::string& folder) {
    const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
    AtomicFileWriter w(path);
    w.write(bytes);
    w.commit();
}

// ---------------------------------------------------------------------------------------------

StagedFile::StagedFile(std::string path) : path_(std::move(path)), temp_path_(atomic_temp_path(path_)) {
    if (fs::path(path_).filename().empty()) LOFTQ_THROW(Error, "cannot write '", path_, "': not a file name");
}

StagedFile::~StagedFile() { abandon(); }

void StagedFile::abandon() {
    if (!committed_) ::unlink(temp_path_.c_str());
}

void StagedFile::commit() {
    if (committed_) return;
    // fsync before rename: otherwise a crash can leave the new name pointing at empty blocks.
    const int fd = ::open(temp_path_.c_str(), O_RDONLY | O_CLOEXEC);
    const int err = fd < 0 ? errno : sync_and_close(fd);
    if (err != 0) {
        const std::string why = os_reason(err);
        abandon();
        LOFTQ_THROW(Error, "cannot write ", path_, ": ", why);
    }
    if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
        const std::string why = os_reason(errno);
        abandon();
        LOFTQ_THROW(Error, "cannot write ", path_, ": rename from its temporary failed: ", why);
    }
    committed_ = true;
    sync_folder(folder_of(path_));
}

// ---------------------------------------------------------------------------------------------

AtomicFileWriter::AtomicFileWriter(std::string path) : staged_(std::move(path)) {
    // O_TRUNC, not O_EXCL: a leftover of an earlier process with our pid is ours to replace.
    fd_ = ::open(temp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) LOFTQ_THROW(Error, "cannot create ", this->path(), ": ", os_reason(errno));
}

AtomicFileWriter::~AtomicFileWriter() { abandon(); }

void AtomicFileWriter::abandon() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    staged_.abandon();
}

void AtomicFileWriter::write(const void* data, size_t nbytes) {
    if (fd_ < 0) LOFTQ_THROW(Error, "cannot write ", path(), ": already closed");
    const auto* p = static_cast<const char*>(data);
    while (nbytes > 0) {
        // Linux writes at most ~2 GiB per call; ask for 1 GiB at a time.
        const size_t chunk = std::min<size_t>(nbytes, size_t{1} << 30);
        const ssize_t w = ::write(fd_, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const std::string why = w < 0 ? os_reason(errno) : "no progress";
            abandon();
            LOFTQ_THROW(Error, "cannot write ", path(), ": ", why);
        }
        p += w;
        nbytes -= static_cast<size_t>(w);
    }
}

void AtomicFileWriter::close() {
    if (fd_ < 0) return;
    const int fd = fd_;
    fd_ = -1;
    if (const int err = sync_and_close(fd); err != 0) {
        const std::string why = os_reason(err);
        staged_.abandon();
        LOFTQ_THROW(Error, "cannot write ", path(), ": ", why);
    }
}

void AtomicFileWriter::commit() {
    if (staged_.committed()) return;
    close();
    staged_.commit();
}

}  // namespace loftq
