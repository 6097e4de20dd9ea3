// Test helpers: where things are, scratch folders, running the `loftq` binary.
#pragma once

#include <string>

namespace loftq::testing {

std::string source_dir();     // repository root
std::string test_data_dir();  // tests/data (stories260K lives under it)
std::string stories_dir();    // tests/data/stories260K
std::string loftq_binary();   // the built `loftq` executable
std::string mpiexec();        // mpirun of the build

// A fresh folder under $TMPDIR, removed with everything in it on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

struct CommandResult {
    int exit_code = -1;  // the command's exit status (128 + signal if killed)
    std::string output;  // stdout and stderr together
};

// Run a shell command line, capturing stdout and stderr.
CommandResult run_command(const std::string& command_line);

// Read a whole file (throws if it cannot be read).
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

// Number of non-empty lines in `text`.
int count_lines(const std::string& text);

}  // namespace loftq::testing
