// io/path_guard: every way a written path can destroy a read (or another written) path is found,
// by identity (symlinks, "..", hard links, trailing '/'), and harmless layouts pass.
#include "io/path_guard.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "support/paths.hpp"

namespace fs = std::filesystem;
using loftq::testing::TempDir;
using loftq::testing::write_file;

namespace loftq {
namespace {

// A model folder "m" with two files, under a fresh temp dir; run from inside it for relative paths.
struct Fixture {
    TempDir dir;
    std::string model = dir / "m";
    Fixture() {
        fs::create_directories(model);
        write_file(model + "/config.json", "{}");
        write_file(model + "/model.safetensors", "x");
    }
};

std::string describe(const std::optional<PathConflict>& c) {
    if (!c) return "none";
    return c->setting + " " + c->relation + " " + c->other;
}

TEST(PathGuard, IndependentPathsPass) {
    Fixture f;
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "run.h5", f.dir / "log.jsonl", f.dir / "out"})), "none");
    // The default run file of `run` is a sibling "<out>.run.h5", and "out2" only shares a prefix.
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "out.run.h5", "", f.dir / "out"})), "none");
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "m2/run.h5", "", f.dir / "m2x"})), "none");
}

TEST(PathGuard, OutputEqualInsideOrContainingTheModelIsRefused) {
    Fixture f;
    EXPECT_EQ(describe(find_path_conflict({f.model, "", "", f.model})), "output is the model folder model");
    EXPECT_EQ(describe(find_path_conflict({f.model, "", "", f.model + "/"})), "output is the model folder model");
    EXPECT_EQ(describe(find_path_conflict({f.model, "", "", f.dir / "m/../m"})), "output is the model folder model");
    EXPECT_EQ(describe(find_path_conflict({f.model, "", "", f.model + "/sub"})),
              "output is inside the model folder model");
    EXPECT_EQ(describe(find_path_conflict({f.model, "", "", f.dir.path()})), "output contains the model folder model");
}

TEST(PathGuard, SymlinkToTheModelAsOutputIsRefused) {
    Fixture f;
    fs::create_directory_symlink(f.model, f.dir / "link");
    EXPECT_EQ(describe(find_path_conflict({f.dir / "link", "", "", f.model})), "output is the model folder model");
    EXPECT_EQ(describe(find_path_conflict({f.model, "", "", f.dir / "link"})), "output is the model folder model");
    // A model whose files link elsewhere (a Hugging Face cache): the output must not hold the blobs.
    Fixture g;
    fs::create_directories(g.dir / "blobs");
    write_file(g.dir / "blobs/abc", "w");
    fs::create_directories(g.dir / "snap");
    fs::create_symlink(g.dir / "blobs/abc", g.dir / "snap/model.safetensors");
    EXPECT_EQ(describe(find_path_conflict({g.dir / "snap", "", "", g.dir / "blobs"})),
              "output contains a file of the model folder model");
}

TEST(PathGuard, WorkInsideTheModelOrTheOutputIsRefused) {
    Fixture f;
    EXPECT_EQ(describe(find_path_conflict({f.model, f.model + "/run.h5", "", ""})), "work is inside the model folder model");
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "out/run.h5", "", f.dir / "out"})),
              "work is inside the output folder output");
    // A hard link to a model file is that file.
    ASSERT_EQ(::link((f.model + "/model.safetensors").c_str(), (f.dir / "hard.h5").c_str()), 0);
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "hard.h5", "", ""})), "work is a file of the model folder model");
}

TEST(PathGuard, LogEqualToWorkInsideOutputOrModelIsRefused) {
    Fixture f;
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "run.h5", f.dir / "./run.h5", ""})), "log-json is the run file work");
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "run.h5", f.dir / "out/log", f.dir / "out"})),
              "log-json is inside the output folder output");
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "run.h5", f.dir / "out", f.dir / "out"})),
              "log-json is inside the output folder output");
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "run.h5", f.model + "/config.json", ""})),
              "log-json is inside the model folder model");
    fs::create_symlink(f.model + "/config.json", f.dir / "cfg-link");
    EXPECT_EQ(describe(find_path_conflict({f.model, f.dir / "run.h5", f.dir / "cfg-link", ""})),
              "log-json is inside the model folder model");
}

TEST(PathGuard, RelativePathsAreResolvedFromTheWorkingDirectory) {
    Fixture f;
    const fs::path cwd = fs::current_path();
    fs::current_path(f.dir.path());
    const auto c = find_path_conflict({"m", "", "", "."});
    fs::current_path(cwd);
    EXPECT_EQ(describe(c), "output contains the model folder model");
    EXPECT_TRUE(path_is_within(f.model + "/a/b", f.model));
    EXPECT_FALSE(path_is_within(f.model + "x", f.model));
}

}  // namespace
}  // namespace loftq
