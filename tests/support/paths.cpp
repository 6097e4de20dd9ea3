#include "support/paths.hpp"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace loftq::testing {

namespace {
// The environment (ctest sets the same values) overrides the build's paths, so that test
// binaries copied to another machine (launch/gpu-bundle.sh) find the data and the binary there.
std::string env_or(const char* name, const char* built) {
    const char* v = std::getenv(name);
    return v && *v ? v : built;
}
}  // namespace

std::string source_dir() { return env_or("LOFTQ_SOURCE_DIR", LOFTQ_SOURCE_DIR); }
std::string test_data_dir() { return env_or("LOFTQ_TEST_DATA", LOFTQ_TEST_DATA); }
std::string stories_dir() { return test_data_dir() + "/stories260K"; }
std::string loftq_binary() { return env_or("LOFTQ_BINARY", LOFTQ_BINARY); }
std::string mpiexec() { return env_or("MPIEXEC", MPIEXEC); }

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/loftq-test-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command_line) {
    CommandResult r;
    const std::string full = command_line + " 2>&1";
    FILE* pipe = popen(full.c_str(), "r");
    if (!pipe) throw std::runtime_error("popen failed: " + command_line);
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
    const int status = pclose(pipe);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) r.exit_code = 128 + WTERMSIG(status);
    return r;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + path);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

int count_lines(const std::string& text) {
    int lines = 0;
    std::istringstream ss(text);
    std::string line;
    while (std::getline(ss, line))
        if (!line.empty()) ++lines;
    return lines;
}

}  // namespace loftq::testing
