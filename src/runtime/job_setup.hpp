// From the validated Config and the Plan to what the quantize job needs: the LoftQ options of
// each matrix, the run-file layout, and the options JSON a run file is created with (and a
// resume must match).
#pragma once

#include <string>

#include "cli/config.hpp"
#include "io/runfile.hpp"
#include "loftq/loftq_loop.hpp"
#include "plan/plan.hpp"

namespace loftq {

// The LoftQ options of one matrix of the plan (its bits pick the format; its name keys the sketch).
LoftqOptions loftq_options_for(const Config& cfg, const MatrixPlan& m);

// One MatrixLayout per plan matrix, in plan order.
RunLayout make_run_layout(const Config& cfg, const Plan& plan);

// The options that change results, as a flat JSON object (keys without "--"). Rank count, --io,
// --device, paths, --resume and --log-json are left out: a resume may change them.
std::string run_options_json(const Config& cfg);

}  // namespace loftq
