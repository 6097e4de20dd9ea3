// The LoftQ loop and the backend's quantize-as-loaded slots on the CUDA backend against the CPU
// functions: the "cuda" instantiation of the suite shared with the CPU backend
// (support/loftq_backend_suite.hpp). GPU-only (ctest label gpu): Skipped without a CUDA device.
#include "support/loftq_backend_suite.hpp"

namespace loftq {
namespace {

INSTANTIATE_TEST_SUITE_P(Backends, LoftqBackend, ::testing::Values("cuda"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace loftq
