// core/file_lock: one holder at a time, the refused caller learns who holds it, the lock file is
// gone after release, and a holder that dies (the kernel drops flock) leaves no stale lock.
#include "core/file_lock.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/error.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using loftq::testing::TempDir;

namespace loftq {
namespace {

TEST(FileLock, SecondHolderIsRefusedAndToldWhoHoldsIt) {
    TempDir dir;
    const std::string path = dir / "run.h5";
    std::string holder;
    auto first = FileLock::try_acquire(path, &holder);
    ASSERT_TRUE(first.has_value());
    EXPECT_TRUE(fs::exists(path + ".lock"));
    // flock locks belong to the open file description: a second open in this process conflicts.
    auto second = FileLock::try_acquire(path, &holder);
    EXPECT_FALSE(second.has_value());
    EXPECT_EQ(holder, this_process_owner());
    first.reset();
    EXPECT_FALSE(fs::exists(path + ".lock"));
    auto third = FileLock::try_acquire(path, &holder);
    EXPECT_TRUE(third.has_value());
}

TEST(FileLock, ADeadHolderLeavesNoLock) {
    TempDir dir;
    const std::string path = dir / "run.h5";
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::string h;
        auto lock = FileLock::try_acquire(path, &h);
        _exit(lock ? 0 : 1);  // dies holding it: no destructor runs, the lock file stays
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_TRUE(fs::exists(path + ".lock"));
    std::string holder;
    EXPECT_TRUE(FileLock::try_acquire(path, &holder).has_value());
}

TEST(FileLock, WaitsForAHolderThatGoesAway) {
    TempDir dir;
    const std::string path = dir / "run.h5";
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {  // holds the lock for 0.5 s, then dies with it (a job killed mid-way)
        std::string h;
        auto lock = FileLock::try_acquire(path, &h);
        const char c = lock ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1) _exit(2);
        usleep(500000);
        _exit(0);
    }
    char c = 0;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    ASSERT_EQ(c, 'y');
    std::string holder;
    EXPECT_FALSE(FileLock::try_acquire(path, &holder, 0.0).has_value());
    EXPECT_EQ(holder.rfind(cat("pid ", child, " on host "), 0), 0u) << holder;
    EXPECT_TRUE(FileLock::try_acquire(path, &holder, 10.0).has_value());
    int status = 0;
    waitpid(child, &status, 0);
    close(ready[0]);
    close(ready[1]);
}

TEST(FileLock, AMissingFolderIsAnErrorNamingTheLockFile) {
    TempDir dir;
    std::string holder;
    try {
        FileLock::try_acquire(dir / "no/run.h5", &holder);
        FAIL() << "no error";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("run.h5.lock"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace loftq
