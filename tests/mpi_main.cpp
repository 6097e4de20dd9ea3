// main() of the MPI GoogleTest executables: MPI up, the process context set, tests run on every
// rank (only rank 0 prints), and the exit status is the same on every rank: failed anywhere ->
// non-zero everywhere, so mpirun reports it; nothing passed anywhere but something skipped (GPU
// tests without a device per rank) -> 77 everywhere, which ctest reports as Skipped (as
// tests/gtest_main.cpp does for one process).
#include <gtest/gtest.h>
#include <mpi.h>

#include "core/error.hpp"

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    loftq::set_process_context(rank, size);
    ::testing::InitGoogleTest(&argc, argv);
    if (rank != 0) {
        auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
    }
    int local = RUN_ALL_TESTS();
    int global = 0;
    MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    const auto& run = *::testing::UnitTest::GetInstance();
    const int local_passed = run.successful_test_count(), local_skipped = run.skipped_test_count();
    int passed = 0, skipped = 0;
    MPI_Allreduce(&local_passed, &passed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&local_skipped, &skipped, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (global == 0 && passed == 0 && skipped > 0) global = 77;
    if (rank != 0 && local != 0) std::fprintf(stderr, "rank %d: tests failed\n", rank);
    MPI_Finalize();
    return global;
}
