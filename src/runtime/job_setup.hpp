// The run file's layout of a plan: one MatrixLayout per matrix (its format, block size, rank, ...),
// fixed before any matrix is computed (io/runfile.hpp).
#pragma once

#include "io/runfile.hpp"
#include "plan/plan.hpp"

namespace loftq {

// One MatrixLayout per plan matrix, in plan order.
RunLayout make_run_layout(const Plan& plan);

}  // namespace loftq
