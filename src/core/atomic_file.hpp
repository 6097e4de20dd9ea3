// Files that appear complete or not at all (DESIGN.md: "every output file is written to a
// temporary name and renamed when complete"). The one place that names temporaries, syncs and
// renames; every writer of an output file goes through it.
//
// The temporary is ".<name>.tmp-<pid>" in the target's own folder, so the rename never crosses
// a file system and a reader listing the folder skips it (hidden). On commit the file is
// fsynced, renamed over the target (atomic: a reader sees the old file or the new one), and the
// folder is fsynced where the file system allows it. Until commit, the target is untouched; the
// temporary is removed on every failure and by the destructor of an uncommitted object, so an
// exception anywhere on the way out leaves nothing behind. Errors are Error of one line naming
// the target and the OS reason, e.g. "cannot write out/x.json: No space left on device".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace loftq {

// ".<name>.tmp-<pid>" beside `path`.
std::string atomic_temp_path(const std::string& path);

// Removes every ".<name>.tmp-<pid>" beside `path` but this process's: what writers of `path`
// killed outright (SIGKILL, a lost node) left. Only for a caller that is the one writer of
// `path` now (it holds the file's lock, e.g. the run file's): the pid of another host's writer
// could not be checked. Best effort; returns how many it removed.
int remove_abandoned_temporaries(const std::string& path);

// fsync a folder so a rename inside it survives a crash; best effort (some file systems refuse
// to open or sync a folder, and the data files themselves were synced).
void sync_folder(const std::string& folder);

// Write `bytes` to `path` as one atomic replacement (temporary, fsync, rename, folder fsync).
void write_file_atomically(const std::string& path, std::string_view bytes);

// The temporary name of a file that another library writes by name (HDF5): reserves nothing on
// disk, removes the temporary unless committed, and commit() syncs and renames it.
class StagedFile {
public:
    explicit StagedFile(std::string path);
    ~StagedFile();  // removes the temporary unless committed; never throws
    StagedFile(const StagedFile&) = delete;
    StagedFile& operator=(const StagedFile&) = delete;

    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return temp_path_; }
    // fsync the temporary, rename it over path(), fsync the folder. Error naming path() (the
    // temporary is removed) if any step fails.
    void commit();
    void abandon();  // remove the temporary now (idempotent)
    bool committed() const { return committed_; }

private:
    std::string path_;
    std::string temp_path_;
    bool committed_ = false;
};

// A big file written in pieces: the constructor creates the temporary, write() appends,
// close() fsyncs and closes it (still under the temporary name), commit() renames it into place.
// Writers that must commit several files together (shards, then their index) close each one
// first and commit them all at the end.
class AtomicFileWriter {
public:
    explicit AtomicFileWriter(std::string path);
    ~AtomicFileWriter();  // closes and removes the temporary unless committed; never throws
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

    void write(const void* data, size_t nbytes);
    void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
    void close();   // fsync and close; idempotent
    void commit();  // close() if open, then rename over path() and fsync the folder
    void abandon();  // close and remove the temporary now (idempotent, never throws)

    const std::string& path() const { return staged_.path(); }
    const std::string& temp_path() const { return staged_.temp_path(); }
    bool is_open() const { return fd_ >= 0; }

private:
    StagedFile staged_;
    int fd_ = -1;
};

}  // namespace loftq
