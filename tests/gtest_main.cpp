// main() of the one-process GoogleTest executables. GoogleTest exits 0 when every test skipped
// (GTEST_SKIP), which ctest would report as Passed; a binary that checked nothing must read
// Skipped instead (tests/CMakeLists.txt sets SKIP_RETURN_CODE 77). So: any failure -> 1, nothing
// passed but something skipped (GPU tests without a device, CUDA tests in a CPU-only build) -> 77,
// else 0. A binary in which some tests passed and others skipped exits 0: that is why GPU cases
// live in GPU-only binaries (test_<unit>_cuda.cpp / test_<unit>_gpu.cpp), apart from CPU ones.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    const int rc = RUN_ALL_TESTS();
    const auto& run = *::testing::UnitTest::GetInstance();
    if (rc == 0 && run.successful_test_count() == 0 && run.skipped_test_count() > 0) return 77;
    return rc;
}
