// The LoftQ loop and the backend's quantize-as-loaded slots on the CPU backend: the "cpu"
// instantiation of the suite shared with the CUDA backend (support/loftq_backend_suite.hpp).
#include "support/loftq_backend_suite.hpp"

namespace loftq {
namespace {

INSTANTIATE_TEST_SUITE_P(Backends, LoftqBackend, ::testing::Values("cpu"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace loftq
