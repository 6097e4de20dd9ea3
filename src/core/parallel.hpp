// When a loop over elements is worth an OpenMP team. Below this size the fork/join costs more
// than the work, and on a busy node (more ranks than cores, or other jobs) a team of threads
// waiting for a descheduled sibling at the barrier costs milliseconds per call: the LoftQ loop
// calls these loops several times per matrix, so small matrices run serially.
#pragma once

#include <cstdint>

namespace loftq {
inline constexpr int64_t kParallelMinElements = int64_t{1} << 18;
}  // namespace loftq
