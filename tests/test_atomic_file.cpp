// core/atomic_file: the target is replaced whole or not at all, no temporary survives a failure,
// and every error names the target and the OS reason.
#include "core/atomic_file.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using loftq::testing::read_file;
using loftq::testing::TempDir;
using loftq::testing::write_file;

namespace loftq {
namespace {

std::vector<std::string> entries(const std::string& folder) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(folder)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Every byte value twice (NUL and 0xff included): the content must come back exact.
std::string all_bytes() {
    std::string s;
    for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
    return s + s;
}

TEST(AtomicFile, TempIsAHiddenSiblingNamedWithThePid) {
    EXPECT_EQ(atomic_temp_path("/a/b/c.json"), "/a/b/.c.json.tmp-" + std::to_string(::getpid()));
    EXPECT_EQ(atomic_temp_path("c.json"), ".c.json.tmp-" + std::to_string(::getpid()));
}

TEST(AtomicFile, WritesExactBytesAndReplacesTheTarget) {
    TempDir dir;
    const std::string target = dir / "out.bin";
    write_file(target, "old contents, longer than the new ones");
    write_file_atomically(target, all_bytes());
    EXPECT_EQ(read_file(target), all_bytes());
    write_file_atomically(target, "");
    EXPECT_EQ(read_file(target), "");
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, ReplacementIsARenameNotAnInPlaceRewrite) {
    // A reader holding the old file keeps the old bytes: the new file is a new inode.
    TempDir dir;
    const std::string target = dir / "x.json";
    write_file(target, "old");
    FILE* reader = std::fopen(target.c_str(), "rb");
    ASSERT_NE(reader, nullptr);
    write_file_atomically(target, "new bytes");
    char buf[16] = {};
    const size_t n = std::fread(buf, 1, sizeof buf, reader);
    std::fclose(reader);
    EXPECT_EQ(std::string(buf, n), "old");
    EXPECT_EQ(read_file(target), "new bytes");
}

TEST(AtomicFile, MissingFolderNamesTargetAndReason) {
    TempDir dir;
    const std::string target = dir / "no/such/folder/x.json";
    const std::string msg = message_of([&] { write_file_atomically(target, "x"); });
    EXPECT_NE(msg.find(target), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(AtomicFile, TargetThatIsAFolderLeavesNoTemporary) {
    TempDir dir;
    const std::string target = dir / "taken";
    fs::create_directory(target);
    write_file(target + "/inside", "keep");
    const std::string msg = message_of([&] { write_file_atomically(target, "x"); });
    EXPECT_NE(msg.find(target), std::string::npos) << msg;
    EXPECT_NE(msg.find("Is a directory"), std::string::npos) << msg;
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"taken"});
    EXPECT_EQ(read_file(target + "/inside"), "keep");
}

// A real OS write failure: RLIMIT_FSIZE makes write() fail with EFBIG once the file would pass it
// (SIGXFSZ ignored, so the process is not killed). Restored before the checks.
TEST(AtomicFile, WriteFailureKeepsTheOldTargetAndRemovesTheTemporary) {
    TempDir dir;
    const std::string target = dir / "big.bin";
    write_file(target, "old");
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    auto* const old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = saved;
    small.rlim_cur = 4096;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    const std::string msg = message_of([&] { write_file_atomically(target, std::string(100000, 'x')); });
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    EXPECT_NE(msg.find(target), std::string::npos) << msg;
    EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
    EXPECT_EQ(read_file(target), "old");
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"big.bin"});
}

TEST(AtomicFile, ExceptionBetweenWritesRemovesTheTemporary) {
    TempDir dir;
    const std::string target = dir / "stream.bin";
    try {
        AtomicFileWriter w(target);
        w.write("first part");
        EXPECT_TRUE(fs::exists(w.temp_path()));
        EXPECT_FALSE(fs::exists(target));  // nothing under the final name before commit
        throw std::runtime_error("producer failed");
    } catch (const std::runtime_error&) {
    }
    EXPECT_TRUE(entries(dir.path()).empty());
}

TEST(AtomicFile, StreamingCommitAfterCloseAndAbandon) {
    TempDir dir;
    {
        AtomicFileWriter w(dir / "a.bin");
        const std::string bytes = all_bytes();
        w.write(bytes.data(), 100);
        w.write(bytes.data() + 100, bytes.size() - 100);
        w.close();  // still under the temporary name
        EXPECT_FALSE(fs::exists(dir / "a.bin"));
        w.commit();
        EXPECT_THROW(w.write("late"), Error);
    }
    EXPECT_EQ(read_file(dir / "a.bin"), all_bytes());
    {
        AtomicFileWriter w(dir / "b.bin");
        w.write("x");
        w.abandon();
        EXPECT_FALSE(fs::exists(w.temp_path()));
    }
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"a.bin"});
}

TEST(AtomicFile, StagedFileCommitsWhatAnotherWriterPutUnderTheTemporary) {
    TempDir dir;
    const std::string target = dir / "run.h5";
    {
        StagedFile staged(target);
        write_file(staged.temp_path(), "built by a library");
        staged.commit();
    }
    EXPECT_EQ(read_file(target), "built by a library");
    {
        StagedFile staged(dir / "other.h5");
        write_file(staged.temp_path(), "never committed");
    }
    EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"run.h5"});
    // Nothing written under the temporary: commit fails naming the target, and leaves nothing.
    StagedFile empty(dir / "missing.h5");
    const std::string msg = message_of([&] { empty.commit(); });
    EXPECT_NE(msg.find(dir / "missing.h5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
}

// A run file's creation killed outright (SIGKILL) left ".run.h5.tmp-<pid>"; the next creator of
// run.h5 (holding its lock) removes every such temporary but its own, and nothing else.
TEST(AtomicFile, RemovesTheTemporariesOfAKilledWriter) {
    TempDir dir;
    const std::string target = dir / "run.h5";
    for (const char* name : {".run.h5.tmp-4242", ".run.h5.tmp-1", ".run.h5.tmp-x1", ".other.h5.tmp-4242", "run.h5"})
        write_file(dir / name, "left");
    StagedFile mine(target);
    write_file(mine.temp_path(), "mine");
    EXPECT_EQ(remove_abandoned_temporaries(target), 2);
    std::vector<std::string> want{".other.h5.tmp-4242", ".run.h5.tmp-x1", fs::path(mine.temp_path()).filename().string(),
                                  "run.h5"};
    std::sort(want.begin(), want.end());
    EXPECT_EQ(entries(dir.path()), want);
}

}  // namespace
}  // namespace loftq
