// The run file in one process: a writer SIGKILLed mid-matrix leaves a file that opens, whose
// complete flags name exactly the matrices fully written, and that `--resume` finishes into
// datasets byte-identical to an uninterrupted run; read-only opens refuse bad files naming them.
//
// The writers run as child processes (this executable re-run with a filter and an environment
// variable), each with its own MPI_Init, so this process never touches MPI and nothing forks
// after MPI is up.
#include <gtest/gtest.h>
#include <mpi.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "core/error.hpp"
#include "io/runfile.hpp"
#include "io/runfile_schema.hpp"
#include "support/paths.hpp"
#include "support/runfile_data.hpp"

namespace loftq {
namespace {

using namespace loftq::testing;

constexpr const char* kChildVar = "LOFTQ_RUNFILE_CHILD";

void write_one(RunFile& f, size_t i) {
    f.write_matrix(i, runfile_test_record(f.layout()[i], i));
    f.mark_complete(i);
}

// The child: "full PATH" writes everything, "kill PATH K" writes matrices before K, half of K,
// then SIGKILLs itself, "resume PATH" finishes what is not complete.
TEST(RunFileChild, Worker) {
    const char* job = std::getenv(kChildVar);
    if (!job) GTEST_SKIP() << "only run as a child of the crash test";
    std::istringstream in(job);
    std::string mode, path;
    size_t kill_at = 0;
    in >> mode >> path >> kill_at;
    MPI_Init(nullptr, nullptr);
    const RunLayout layout = runfile_test_layout();
    if (mode == "resume") {
        RunFile f = RunFile::open_existing(MPI_COMM_WORLD, path, runfile_test_options(), layout);
        const std::vector<bool> done = f.complete_flags();
        for (size_t i = 0; i < layout.size(); ++i)
            if (!done[i]) write_one(f, i);
        f.close();
    } else {
        RunFile f = RunFile::create(MPI_COMM_WORLD, path, runfile_test_options(), layout);
        for (size_t i = 0; i < layout.size(); ++i) {
            if (mode == "kill" && i == kill_at) {
                const MatrixRecord rec = runfile_test_record(layout[i], i);
                f.write_matrix_rows(i, runfile_rows(rec, 0, rec.layout.rows / 2));
                f.write_matrix_common(i, rec);
                raise(SIGKILL);
            }
            write_one(f, i);
            if (i == 1) f.flush();  // a flush must not change a byte of the file either
        }
        f.close();
    }
    MPI_Finalize();
}

// Runs this executable's child test with `job`; returns the raw wait status.
int run_child(const std::string& job) {
    const pid_t pid = fork();
    if (pid == 0) {
        setenv(kChildVar, job.c_str(), 1);
        execl("/proc/self/exe", "test_runfile", "--gtest_filter=RunFileChild.Worker", nullptr);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(RunFile, SigkilledWriterResumesToByteIdenticalDatasets) {
    if (std::getenv(kChildVar)) GTEST_SKIP();
    TempDir dir;
    const std::string whole = dir / "whole.h5", crashed = dir / "crashed.h5";
    const RunLayout layout = runfile_test_layout();
    int status = run_child("full " + whole);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

    const size_t kill_at = 2;  // 128 rows: the half is on a block boundary
    status = run_child("kill " + crashed + " " + std::to_string(kill_at));
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    {
        RunFile f = RunFile::open_read(crashed);
        std::vector<bool> expect(layout.size(), false);
        for (size_t i = 0; i < kill_at; ++i) expect[i] = true;
        EXPECT_EQ(f.complete_flags(), expect);
        for (size_t i = 0; i < kill_at; ++i) {
            const MatrixRecord want = runfile_test_record(layout[i], i);
            const MatrixRecord got = f.read_matrix(i);
            EXPECT_EQ(got.codes, want.codes);
            EXPECT_EQ(runfile_bytes(got.B), runfile_bytes(want.B));
        }
    }
    status = run_child("resume " + crashed);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

    EXPECT_EQ(read_dataset_bytes(crashed, "", "complete"), std::vector<uint8_t>(layout.size(), 1));
    for (const MatrixLayout& m : layout)
        for (const char* ds : kDeterministicDatasets) {
            if (!m.double_quant && std::string(ds).rfind("nested", 0) == 0) continue;
            EXPECT_EQ(read_dataset_bytes(crashed, m.name, ds), read_dataset_bytes(whole, m.name, ds))
                << m.name << "/" << ds;
        }
    // Nothing in the file depends on the history: not even the metadata bytes.
    EXPECT_TRUE(file_bytes(crashed) == file_bytes(whole));
}

void expect_refused(const std::string& path) {
    try {
        RunFile::open_read(path);
        ADD_FAILURE() << path << " accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
}

TEST(RunFile, ReadOnlyOpenRefusesForeignDamagedAndMissingFiles) {
    if (std::getenv(kChildVar)) GTEST_SKIP();
    TempDir dir;
    const std::string good = dir / "good.h5";
    int status = run_child("full " + good);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    EXPECT_EQ(RunFile::open_read(good).layout(), runfile_test_layout());

    const std::string text = dir / "text.h5", cut = dir / "cut.h5", plain = dir / "plain.h5";
    std::ofstream(text) << "{\"not\": \"hdf5\"}\n";
    std::filesystem::copy_file(good, cut);
    std::filesystem::resize_file(cut, std::filesystem::file_size(good) - 100);
    const hid_t h = H5Fcreate(plain.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(h, 0);
    H5Fclose(h);
    for (const std::string& bad : {text, cut, plain, dir / "missing.h5"}) expect_refused(bad);
    EXPECT_THROW(RunFile::open_read(good).index_of("no.such.weight"), InputError);
}

// Damage inside the HDF5 structure (bytes of the attribute messages of a real run file, as libFuzzer
// found): open_read and the reads either work or throw one InputError naming the file and saying
// it is damaged, never an HDF5 call's text ("H5Aexists(obj, name) failed ... at h5_attr.cpp").
TEST(RunFile, DamagedStructureIsNamedNotAnHdf5Call) {
    if (std::getenv(kChildVar)) GTEST_SKIP();
    TempDir dir;
    const std::string base = file_bytes(source_dir() + "/fuzz/data/run_tiny.h5");
    int refused = 0;
    for (const char* attr : {"loftq_run_format", "options", "codes_bytes", "nblocks", "double_quant"}) {
        const size_t at = base.find(std::string(attr) + '\0');
        ASSERT_NE(at, std::string::npos) << attr;
        for (int variant = 0; variant < 4; ++variant) {
            std::string bytes = base;
            const size_t from = variant < 2 ? at - 8 : at + std::strlen(attr) + 1;
            for (size_t k = 0; k < 8; ++k) bytes[from + k] = variant % 2 ? '\xff' : '\x7f';
            const std::string path = dir / cat(attr, variant, ".h5");
            std::ofstream(path, std::ios::binary) << bytes;
            try {
                const RunFile f = RunFile::open_read(path);
                for (size_t i = 0; i < f.layout().size(); ++i)
                    if (f.complete_flags()[i]) check_record_integrity(f.read_matrix(i), path);
            } catch (const InputError& e) {
                ++refused;
                const std::string msg = e.what();
                EXPECT_NE(msg.find("run file " + path), std::string::npos) << msg;
                EXPECT_EQ(msg.find("failed ("), std::string::npos) << msg;
            }
        }
    }
    EXPECT_GT(refused, 0);
}

// A matrix name with a control character (libFuzzer's fuzz_runfile wrote one with newlines into a
// run file's layout) is refused in one line, the name escaped: never a message broken over lines.
TEST(RunFile, LayoutNameWithControlCharactersIsRefusedInOneLine) {
    if (std::getenv(kChildVar)) GTEST_SKIP();
    RunLayout layout = runfile_test_layout();
    layout[0].name = "model.layers.0\n\nforged line\x1b[2J";
    try {
        runfile_schema::validate_layout(layout);
        FAIL() << "accepted a name with control characters";
    } catch (const ConfigError& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\x1b'), std::string::npos) << msg;
        EXPECT_NE(msg.find("model.layers.0\\x0a\\x0aforged line\\x1b[2J"), std::string::npos) << msg;
    }
    EXPECT_EQ(printable("q_proj.weight"), "q_proj.weight");
}

}  // namespace
}  // namespace loftq
