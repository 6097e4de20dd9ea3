// An output folder that appears complete or not at all: everything is written into a temporary
// sibling ".<name>.tmp-<host>-<pid>" and renamed to the final path by commit().
//
// Guarantees: the final path is never created before commit(); an existing final path is
// refused (ConfigError naming --output) unless overwrite, and then replaced only after the new
// folder is complete (old folder renamed aside, new one renamed in, old one removed). The
// destructor removes an uncommitted temporary folder (any exception on the way out). A process
// killed outright leaves only its temporary sibling; the next OutputFolder for the same path on
// the same host removes such siblings whose process is gone.
#pragma once

#include <string>

namespace loftq {

class OutputFolder {
public:
    // Checks the final path (refused if it exists and !overwrite, or if its parent is missing)
    // and creates the temporary folder.
    OutputFolder(const std::string& final_path, bool overwrite);
    ~OutputFolder();
    OutputFolder(const OutputFolder&) = delete;
    OutputFolder& operator=(const OutputFolder&) = delete;

    const std::string& temp_path() const { return temp_; }
    const std::string& final_path() const { return final_; }
    // temp_path() + "/" + relative
    std::string operator/(const std::string& relative) const { return temp_ + "/" + relative; }

    // Rename into place (each file was synced by its writer), then sync the parent folder.
    void commit();

private:
    std::string final_;
    std::string temp_;
    bool overwrite_ = false;
    bool committed_ = false;
};

// Write and fsync a file inside the temporary folder: write_file_atomically (core/atomic_file.hpp),
// so a failure leaves no half-written file even before the folder is removed. Error naming the
// file on any failure. A file outside any OutputFolder uses write_file_atomically directly.
void write_file_synced(const std::string& path, const std::string& bytes);
void copy_file_synced(const std::string& from, const std::string& to);

}  // namespace loftq
