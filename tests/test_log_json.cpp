// `loftq quantize --log-json FILE` on stories260K (runtime/progress.hpp documents the record):
// - one process and 2 ranks under mpirun: FILE has one JSON object per line, exactly one per
//   matrix of the plan (the run file's layout: same names, indices, shapes), each with exactly the
//   documented keys, consistent with what the run file stores for that matrix (loaded error,
//   chosen iteration), and records of both ranks arrive in rank 0's file;
// - written atomically: no temporary of FILE after a successful run, and after a run that fails midway
//   (a NaN in one weight) neither FILE nor a temporary of it exists when rank 0 is the one that fails.
//   When another rank fails, FILE and its temporary are absent too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "io/runfile.hpp"
#include "lowrank/truncated_svd.hpp"
#include "support/paths.hpp"

namespace loftq {
namespace {

// Names in the log's folder that are a temporary of it (core/atomic_file.hpp writes
// ".<name>.tmp-<pid>" beside the target; any other spelling with the name counts too).
std::string temporaries_of(const std::string& log) {
    const std::filesystem::path p(log);
    std::string found;
    for (const auto& e : std::filesystem::directory_iterator(p.parent_path())) {
        const std::string n = e.path().filename().string();
        if (n != p.filename().string() && n.find(p.filename().string()) != std::string::npos) found += n + " ";
    }
    return found;
}


using testing::TempDir;
namespace fs = std::filesystem;

constexpr int kIters = 2;

const std::set<std::string> kRecordKeys{"matrix", "index",  "rank",   "group",       "rows",
                                        "cols",   "row_begin", "row_end", "bits",     "format",
                                        "svd",    "backend", "bytes",  "times",       "qlora_error",
                                        "errors", "chosen_iteration", "loaded_error", "sketch",
                                        "gemm_passes", "gemm_columns"};
const std::set<std::string> kTimeKeys{"read", "quantize", "svd", "comm", "write", "total"};

std::set<std::string> keys_of(const nlohmann::json& j) {
    std::set<std::string> k;
    for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
    return k;
}

testing::CommandResult quantize(const std::string& model, const std::string& work, const std::string& log,
                                int ranks, const std::string& extra = "") {
    std::string launcher;
    if (ranks > 1) launcher = testing::mpiexec() + " -np " + std::to_string(ranks) + " ";
    return testing::run_command(launcher + testing::loftq_binary() + " quantize --model " + model + " --work " +
                                work + " --rank 8 --iters " + std::to_string(kIters) + " --log-json " + log + extra);
}

void check_log(const std::string& work, const std::string& log, int ranks) {
    ASSERT_TRUE(fs::exists(log)) << log;
    EXPECT_EQ(temporaries_of(log), "") << "temporary log left behind";
    const RunFile run = RunFile::open_read(work);
    const RunLayout& layout = run.layout();
    ASSERT_GT(layout.size(), 0u);

    std::istringstream lines(testing::read_file(log));
    std::string line;
    std::map<std::string, int> seen;
    std::set<int> record_ranks;
    int n = 0;
    while (std::getline(lines, line)) {
        ++n;
        SCOPED_TRACE("line " + std::to_string(n) + ": " + line.substr(0, 120));
        nlohmann::json r;
        ASSERT_NO_THROW(r = nlohmann::json::parse(line)) << "not valid JSON";
        ASSERT_TRUE(r.is_object());
        EXPECT_EQ(keys_of(r), kRecordKeys);
        ASSERT_TRUE(r["times"].is_object());
        EXPECT_EQ(keys_of(r["times"]), kTimeKeys);
        const std::string name = r["matrix"].get<std::string>();
        ++seen[name];
        const int64_t index = r["index"].get<int64_t>();
        ASSERT_GE(index, 0);
        ASSERT_LT(index, static_cast<int64_t>(layout.size()));
        const MatrixLayout& m = layout[static_cast<size_t>(index)];
        EXPECT_EQ(name, m.name) << "index and name disagree with the plan";
        EXPECT_EQ(r["rows"].get<int64_t>(), m.rows);
        EXPECT_EQ(r["cols"].get<int64_t>(), m.cols);
        // stories260K is far below the split threshold: every record covers the whole matrix.
        EXPECT_EQ(r["row_begin"].get<int64_t>(), 0);
        EXPECT_EQ(r["row_end"].get<int64_t>(), m.rows);
        EXPECT_EQ(r["bytes"].get<double>(), 4.0 * static_cast<double>(m.rows * m.cols));
        EXPECT_EQ(r["bits"].get<int>(), m.bits);
        EXPECT_EQ(r["format"].get<std::string>(), m.format);
        EXPECT_EQ(r["errors"].size(), static_cast<size_t>(kIters));
        // The GEMM passes over the residual per iteration: 2q + 2, q fresh at t = 1, warm after.
        if (r["svd"] == "randomized") {
            const SvdOptions defaults;
            ASSERT_EQ(r["gemm_passes"].size(), static_cast<size_t>(kIters));
            for (int t = 0; t < kIters; ++t)
                EXPECT_EQ(r["gemm_passes"][t].get<int>(),
                          2 * (t == 0 ? defaults.power_iters : defaults.warm_power_iters) + 2);
            const int k = 8 + defaults.oversample;  // --rank 8
            EXPECT_EQ(r["sketch"].get<int>(), k);
            // The columns those passes multiply: k each, and on the fresh step the projection on
            // all q + 1 Krylov blocks (they fit: every stories260K side is >= 32 >= 3 k).
            ASSERT_EQ(defaults.scheme, PowerScheme::krylov);
            ASSERT_EQ(r["gemm_columns"].size(), static_cast<size_t>(kIters));
            const int q = defaults.power_iters, wq = defaults.warm_power_iters;
            EXPECT_EQ(r["gemm_columns"][0].get<int>(), (2 * q + 1) * k + (q + 1) * k);
            for (int t = 1; t < kIters; ++t) EXPECT_EQ(r["gemm_columns"][t].get<int>(), (2 * wq + 2) * k);
        } else {
            EXPECT_TRUE(r["gemm_columns"].is_null());
            EXPECT_TRUE(r["gemm_passes"].is_null());
            EXPECT_TRUE(r["sketch"].is_null());
        }
        const int rank = r["rank"].get<int>();
        EXPECT_GE(rank, 0);
        EXPECT_LT(rank, ranks);
        record_ranks.insert(rank);
        // The record describes the result the run file holds for that matrix.
        const MatrixRecord stored = run.read_matrix(static_cast<size_t>(index));
        EXPECT_EQ(r["chosen_iteration"].get<int>(), stored.chosen_iteration);
        EXPECT_EQ(r["loaded_error"].get<double>(), stored.loaded_error);
        EXPECT_EQ(r["qlora_error"].get<double>(), stored.qlora_error);
    }
    EXPECT_EQ(n, static_cast<int>(layout.size())) << "one record per matrix of the plan";
    for (const MatrixLayout& m : layout) EXPECT_EQ(seen[m.name], 1) << m.name;
    // Ranks other than 0 send their records to rank 0, which alone writes the file.
    EXPECT_EQ(static_cast<int>(record_ranks.size()), ranks) << "records from only some ranks";
}

TEST(LogJson, OneRecordPerPlannedMatrixOneProcess) {
    TempDir dir;
    const auto r = quantize(testing::stories_dir(), dir / "run.h5", dir / "log.jsonl", 1);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    check_log(dir / "run.h5", dir / "log.jsonl", 1);
}

TEST(LogJson, OneRecordPerPlannedMatrixTwoRanks) {  // with the randomized SVD: its passes are logged
    TempDir dir;
    const auto r = quantize(testing::stories_dir(), dir / "run.h5", dir / "log.jsonl", 2, " --svd randomized");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    check_log(dir / "run.h5", dir / "log.jsonl", 2);
}

// A copy of stories260K with one element of `tensor` set to NaN: the loop rejects that matrix
// after the log was opened and other matrices may have been logged.
std::string model_with_nan(const TempDir& dir, const std::string& tensor = "model.layers.3.mlp.up_proj.weight") {
    const std::string model = dir / "nan_model";
    fs::copy(testing::stories_dir(), model, fs::copy_options::recursive);
    const std::string path = model + "/model.safetensors";
    std::string bytes = testing::read_file(path);
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);  // little-endian u64 (x86)
    const auto header = nlohmann::json::parse(bytes.substr(8, header_len));
    const auto& t = header.at(tensor);
    EXPECT_EQ(t.at("dtype"), "F32");
    const size_t offset = 8 + header_len + t.at("data_offsets")[0].get<size_t>() + 4 * 77;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(&bytes[offset], &nan, 4);
    testing::write_file(path, bytes);
    return model;
}

TEST(LogJson, FailedRunLeavesNoLog) {
    TempDir dir;
    const std::string model = model_with_nan(dir);
    for (int ranks : {1, 2}) {
        const std::string log = dir / ("log" + std::to_string(ranks) + ".jsonl");
        const auto r = quantize(model, dir / ("run" + std::to_string(ranks) + ".h5"), log, ranks);
        EXPECT_NE(r.exit_code, 0) << r.output;
        EXPECT_NE(r.output.find("model.layers.3.mlp.up_proj.weight"), std::string::npos) << r.output;
        EXPECT_FALSE(fs::exists(log)) << "a failed run left " << log;
        EXPECT_EQ(temporaries_of(log), "") << "a failed run left a temporary of " << log;
    }
}

// A matrix that rank `rank` of a 2-rank run holds, from the log of a successful run (the plan's
// assignment is not hard-coded here).
std::string matrix_held_by(int rank) {
    TempDir dir;
    const auto r = quantize(testing::stories_dir(), dir / "run.h5", dir / "log.jsonl", 2);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::istringstream lines(testing::read_file(dir / "log.jsonl"));
    std::string line;
    while (std::getline(lines, line)) {
        const auto j = nlohmann::json::parse(line);
        if (j["rank"].get<int>() == rank) return j["matrix"].get<std::string>();
    }
    ADD_FAILURE() << "no matrix on rank " << rank;
    return "";
}

// Rank 1 fails: the whole job aborts and no log appears under the final name.
void fail_on_rank_1(const TempDir& dir, const std::string& log) {
    const std::string tensor = matrix_held_by(1);
    ASSERT_FALSE(tensor.empty());
    const auto r = quantize(model_with_nan(dir, tensor), dir / "run.h5", log, 2);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(tensor), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(log)) << "a failed run left " << log;
}

TEST(LogJson, NonZeroRankFailureLeavesNoLog) {
    TempDir dir;
    fail_on_rank_1(dir, dir / "log.jsonl");
}

// Rank 1 fails: Open MPI's abort sends rank 0 SIGTERM first, which it handles (runtime
// interrupt) and unwinds, so its temporary log is removed too.
TEST(LogJson, NonZeroRankFailureLeavesNoTmp) {
    TempDir dir;
    fail_on_rank_1(dir, dir / "log.jsonl");
    EXPECT_EQ(temporaries_of(dir / "log.jsonl"), "") << "a failed run left the temporary log";
}

}  // namespace
}  // namespace loftq
