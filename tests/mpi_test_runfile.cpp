// The run file under 1, 2 and 4 ranks: created collectively, each matrix written by its owner
// (one written in row shards by every rank), read back bit-exact and byte-identical to data
// that depends only on the matrix index (so identical for every rank count); --resume
// validation; damaged and foreign files refused with the file named.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "io/runfile.hpp"
#include "support/runfile_data.hpp"

namespace loftq {
namespace {

using namespace loftq::testing;

int world_rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}
int world_size() {
    int s = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
}

// A scratch folder shared by all ranks (made by rank 0), removed at the end.
class SharedDir {
public:
    SharedDir() {
        std::string p;
        if (world_rank() == 0) {
            const char* tmp = std::getenv("TMPDIR");
            std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/loftq_runfile_XXXXXX";
            p = mkdtemp(tmpl.data());
        }
        int len = static_cast<int>(p.size());
        MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
        p.resize(len);
        MPI_Bcast(p.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
        path_ = p;
    }
    ~SharedDir() {
        MPI_Barrier(MPI_COMM_WORLD);
        if (world_rank() == 0) std::filesystem::remove_all(path_);
    }
    std::string operator/(const std::string& n) const { return path_ + "/" + n; }

private:
    std::string path_;
};

// Row shards of the split matrix: one block row per row, so any row is a valid boundary.
std::pair<int64_t, int64_t> shard_rows(int64_t rows, int part, int parts) {
    return {rows * part / parts, rows * (part + 1) / parts};
}

// Writes the test data the way the driver will: round-robin owners, the split matrix in row
// shards by every rank with rank 0 writing its common part; `only` limits which are written.
void write_test_matrices(RunFile& f, const std::vector<bool>& only) {
    const int rank = world_rank(), size = world_size();
    const RunLayout& layout = f.layout();
    for (size_t i = 0; i < layout.size(); ++i) {
        if (!only[i]) continue;
        MatrixRecord rec = runfile_test_record(layout[i], i);
        if (i == kSplitMatrix) {
            rec.owner_first = 0;
            rec.owner_count = size;
            const auto [r0, r1] = shard_rows(rec.layout.rows, rank, size);
            uint64_t part = f.write_matrix_rows(i, runfile_rows(rec, r0, r1));
            if (rank == 0) part += f.write_matrix_common(i, rec);
            // Every shard written before the mark; the checksum's parts add up over the ranks.
            MPI_Allreduce(MPI_IN_PLACE, &part, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
            if (rank == 0) {
                f.write_matrix_identity(i, rec.fingerprint, part);
                f.mark_complete(i);
            }
        } else if (static_cast<int>(i % size) == rank) {
            rec.owner_first = rank;
            rec.timings = {0.5 * rank, 1.0, 2.0, 3.0, 4.0};
            f.write_matrix(i, rec);
            f.mark_complete(i);
        }
    }
}

void expect_matrix(const RunFile& f, size_t i) {
    const MatrixRecord want = runfile_test_record(f.layout()[i], i);
    const MatrixRecord got = f.read_matrix(i);
    EXPECT_EQ(runfile_bytes(got.codes), runfile_bytes(want.codes)) << want.layout.name;
    EXPECT_EQ(runfile_bytes(got.absmax), runfile_bytes(want.absmax)) << want.layout.name;
    EXPECT_EQ(got.absmax_codes, want.absmax_codes) << want.layout.name;
    EXPECT_EQ(runfile_bytes(got.nested_absmax), runfile_bytes(want.nested_absmax)) << want.layout.name;
    EXPECT_EQ(got.nested_offset, want.nested_offset) << want.layout.name;
    EXPECT_EQ(runfile_bytes(got.A), runfile_bytes(want.A)) << want.layout.name;
    EXPECT_EQ(runfile_bytes(got.B), runfile_bytes(want.B)) << want.layout.name;
    EXPECT_EQ(got.qlora_error, want.qlora_error) << want.layout.name;
    // The checksum of row shards written by any number of ranks is that of the whole record.
    EXPECT_EQ(got.fingerprint, want.fingerprint) << want.layout.name;
    EXPECT_EQ(got.checksum, record_checksum(want)) << want.layout.name;
    EXPECT_EQ(record_checksum(got), got.checksum) << want.layout.name;
    EXPECT_EQ(got.iteration_error, want.iteration_error) << want.layout.name;
    EXPECT_EQ(got.chosen_iteration, want.chosen_iteration) << want.layout.name;
}

TEST(RunFileMpi, WrittenByOwnersReadsBackBitExactForAnyRankCount) {
    SharedDir dir;
    const std::string path = dir / "RUN.h5";
    const RunLayout layout = runfile_test_layout();
    RunFile f = RunFile::create(MPI_COMM_WORLD, path, runfile_test_options(), layout);
    EXPECT_EQ(f.complete_flags(), std::vector<bool>(layout.size(), false));
    MPI_Barrier(MPI_COMM_WORLD);  // everyone looked before anyone writes
    write_test_matrices(f, std::vector<bool>(layout.size(), true));
    MPI_Barrier(MPI_COMM_WORLD);
    EXPECT_EQ(f.complete_flags(), std::vector<bool>(layout.size(), true));
    f.close();
    // Rank 0's temporary (named with its pid, so list the folder) was renamed: RUN.h5 alone.
    const std::filesystem::path folder = std::filesystem::path(path).parent_path();
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(folder), std::filesystem::directory_iterator()), 1);

    if (world_rank() == 0) {
        RunFile r = RunFile::open_read(path);
        EXPECT_EQ(r.layout(), layout);
        EXPECT_EQ(r.options_json(), runfile_test_options());
        for (size_t i = 0; i < layout.size(); ++i) {
            EXPECT_TRUE(r.is_complete(i));
            expect_matrix(r, i);
        }
        const MatrixRecord split = r.read_matrix(kSplitMatrix);
        EXPECT_EQ(split.owner_count, world_size());
        // Raw stored bytes, the form the resume / rank-count comparisons use.
        const MatrixRecord want = runfile_test_record(layout[0], 0);
        EXPECT_EQ(read_dataset_bytes(path, layout[0].name, "B"), runfile_bytes(want.B));
        EXPECT_EQ(read_dataset_bytes(path, layout[0].name, "codes"), want.codes);
        EXPECT_EQ(read_dataset_bytes(path, "", "complete"),
                  std::vector<uint8_t>(layout.size(), 1));
    }
}

TEST(RunFileMpi, ResumeSeesCompleteMatricesAndRefusesOtherOptions) {
    SharedDir dir;
    const std::string path = dir / "RUN.h5";
    const RunLayout layout = runfile_test_layout();
    std::vector<bool> first(layout.size(), false);
    first[0] = first[kSplitMatrix] = first[3] = true;
    {
        RunFile f = RunFile::create(MPI_COMM_WORLD, path, runfile_test_options(64), layout);
        write_test_matrices(f, first);
        f.close();
    }
    {
        RunFile f = RunFile::open_existing(MPI_COMM_WORLD, path, runfile_test_options(64), layout);
        EXPECT_EQ(f.complete_flags(), first);
        MPI_Barrier(MPI_COMM_WORLD);
        std::vector<bool> rest(layout.size());
        for (size_t i = 0; i < rest.size(); ++i) rest[i] = !first[i];
        write_test_matrices(f, rest);
        MPI_Barrier(MPI_COMM_WORLD);
        EXPECT_EQ(f.complete_flags(), std::vector<bool>(layout.size(), true));
        for (size_t i = 0; i < layout.size(); ++i) expect_matrix(f, i);
        f.close();
    }
    try {
        RunFile::open_existing(MPI_COMM_WORLD, path, runfile_test_options(32), layout);
        ADD_FAILURE() << "different --rank accepted";
    } catch (const ConfigError& e) {
        const std::string msg = e.what();
        EXPECT_EQ(e.setting(), "rank") << msg;  // the command line names it --rank
        EXPECT_NE(msg.find("has 64, this run has 32"), std::string::npos) << msg;
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
    }
    RunLayout other = layout;
    other[1].rank = 8;
    try {
        RunFile::open_existing(MPI_COMM_WORLD, path, runfile_test_options(64), other);
        ADD_FAILURE() << "different layout accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find(layout[1].name), std::string::npos) << e.what();
    }
}

TEST(RunFileMpi, ForeignAndTruncatedFilesAreRefusedNamingTheFile) {
    SharedDir dir;
    const std::string path = dir / "RUN.h5";
    const RunLayout layout = runfile_test_layout();
    {
        RunFile f = RunFile::create(MPI_COMM_WORLD, path, runfile_test_options(), layout);
        f.close();
    }
    const std::string text = dir / "notes.h5", cut = dir / "cut.h5";
    if (world_rank() == 0) {
        std::ofstream(text) << "this is not an HDF5 file\n";
        std::filesystem::copy_file(path, cut);
        std::filesystem::resize_file(cut, std::filesystem::file_size(path) / 2);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    for (const std::string& bad : {text, cut, dir / "missing.h5"}) {
        try {
            RunFile::open_existing(MPI_COMM_WORLD, bad, runfile_test_options(), layout);
            ADD_FAILURE() << bad << " accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
}

// Creating the file writes metadata only: a 640 MiB run file costs almost no disk or time.
TEST(RunFileMpi, CreateLeavesDataSpaceSparse) {
    SharedDir dir;
    const std::string path = dir / "RUN.h5";
    const RunLayout layout = {runfile_matrix("huge.weight", 32768, 32768, 64, false, 1, 1)};
    RunFile f = RunFile::create(MPI_COMM_WORLD, path, runfile_test_options(), layout);
    f.close();
    if (world_rank() == 0) {
        struct stat st {};
        ASSERT_EQ(stat(path.c_str(), &st), 0);
        EXPECT_GE(st.st_size, int64_t{512} << 20);
        EXPECT_LT(int64_t(st.st_blocks) * 512, int64_t{4} << 20) << "create filled the data";
        EXPECT_EQ(RunFile::open_read(path).complete_flags(), std::vector<bool>{false});
    }
}

TEST(RunFileMpi, BadLayoutIsAConfigErrorOnEveryRank) {
    SharedDir dir;
    RunLayout layout = runfile_test_layout();
    layout[1].name = layout[0].name;
    EXPECT_THROW(RunFile::create(MPI_COMM_WORLD, dir / "RUN.h5", runfile_test_options(), layout),
                 ConfigError);
    layout = runfile_test_layout();
    layout[3].name = "a/b";
    EXPECT_THROW(RunFile::create(MPI_COMM_WORLD, dir / "RUN.h5", runfile_test_options(), layout),
                 ConfigError);
}

}  // namespace
}  // namespace loftq
