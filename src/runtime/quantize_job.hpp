// `loftq quantize`: the whole job over MPI_COMM_WORLD. Rank 0 builds the plan from the checkpoint
// and broadcasts it; every rank derives the same distribution (plan/distribution.hpp), opens the
// run file (created, or resumed with --resume), runs LoftQ on its work items in assignment order
// (split matrices with their group), writes each result into the run file and marks it complete;
// rank 0 prints progress and, at the end, the summary table.
#pragma once

#include <string>

#include "cli/config.hpp"

namespace loftq {

// Collective over MPI_COMM_WORLD. `work_path` is the run file (cfg.work_path for quantize).
void run_quantize(const Config& cfg, const std::string& work_path);

// Rank 0: the per-matrix table (QLoRA error vs LoftQ error as loaded) and totals of a run file.
void print_run_summary(const std::string& work_path);

}  // namespace loftq
