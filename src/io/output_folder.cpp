#include "io/output_folder.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
    std::string h(buf);
    for (auto& c : h)
        if (c == '/' || c == '-') c = '_';
    return h.empty() ? "host" : h;
}

// The folder's name without trailing slashes: "out/" and "out" are the same output.
fs::path normalized(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return fs::path(p);
}

// Temporary siblings ".<name>.tmp-<host>-<pid>" of an earlier export on this host whose process
// is gone (killed outright): nothing else will ever remove them.
void remove_stale_siblings(const fs::path& parent, const std::string& name, const std::string& host) {
    const std::string prefix = cat(".", name, ".tmp-", host, "-");
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(parent.empty() ? fs::path(".") : parent, ec)) {
        const std::string n = e.path().filename().string();
        if (n.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string pid_text = n.substr(prefix.size());
        if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
        const long pid = std::stol(pid_text);
        if (pid == static_cast<long>(::getpid())) continue;
        if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) continue;  // still running
        std::error_code rm;
        fs::remove_all(e.path(), rm);
    }
}

}  // namespace

OutputFolder::OutputFolder(const std::string& final_path, bool overwrite) : overwrite_(overwrite) {
    const fs::path target = normalized(final_path);
    if (target.empty() || target.filename().empty() || target.filename() == "." || target.filename() == "..")
        LOFTQ_THROW_SETTING("output", "'", final_path, "' does not name a folder");
    final_ = target.string();
    std::error_code ec;
    const fs::path parent = target.parent_path();
    if (!parent.empty() && !fs::is_directory(parent, ec))
        LOFTQ_THROW_SETTING("output", "parent folder '", parent.string(), "' does not exist");
    if (fs::exists(fs::symlink_status(target, ec)) && !overwrite)
        LOFTQ_THROW_SETTING("output", "'", final_, "' exists; it is replaced only when overwriting is asked for");
    const std::string host = host_name();
    remove_stale_siblings(parent, target.filename().string(), host);
    temp_ = (parent / cat(".", target.filename().string(), ".tmp-", host, "-", static_cast<long>(::getpid()))).string();
    fs::remove_all(temp_, ec);
    if (!fs::create_directory(temp_, ec))
        LOFTQ_THROW(Error, "cannot create ", temp_, ": ", ec.message());
}

OutputFolder::~OutputFolder() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(temp_, ec);
}

void OutputFolder::commit() {
    LOFTQ_CHECK(!committed_, "OutputFolder::commit twice");
    sync_folder(temp_);
    std::error_code ec;
    const fs::path target(final_);
    std::string old;
    if (fs::exists(fs::symlink_status(target, ec))) {
        if (!overwrite_)  // appeared while we were writing
            LOFTQ_THROW_SETTING("output", "'", final_, "' exists; it is replaced only when overwriting is asked for");
        old = (target.parent_path() / cat(".", target.filename().string(), ".old-", static_cast<long>(::getpid()))).string();
        fs::remove_all(old, ec);
        if (std::rename(final_.c_str(), old.c_str()) != 0)
            LOFTQ_THROW(Error, "cannot move the old ", final_, " aside: ", std::strerror(errno));
    }
    if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        if (!old.empty()) std::rename(old.c_str(), final_.c_str());
        LOFTQ_THROW(Error, "cannot rename ", temp_, " to ", final_, ": ", why);
    }
    committed_ = true;
    if (!old.empty()) fs::remove_all(old, ec);
    sync_folder(target.parent_path().empty() ? std::string(".") : target.parent_path().string());
}

// A file-level temporary inside the temporary folder costs one rename, and keeps one code path
// for writing and syncing output files.
void write_file_synced(const std::string& path, const std::string& bytes) { write_file_atomically(path, bytes); }

void copy_file_synced(const std::string& from, const std::string& to) {
    std::ifstream in(from, std::ios::binary);
    if (!in) LOFTQ_THROW(InputError, "cannot read ", from);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) LOFTQ_THROW(InputError, "cannot read ", from);
    write_file_synced(to, bytes);
}

}  // namespace loftq
