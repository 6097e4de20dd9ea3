// `loftq quantize`: the whole job over MPI_COMM_WORLD. Rank 0 builds the plan from the checkpoint
// and broadcasts it; every rank derives the same distribution (plan/distribution.hpp), opens the
// run file (created, or resumed with --resume), runs LoftQ on its work items in assignment order
// (split matrices with their group), writes each result into the run file and marks it complete;
// rank 0 prints progress and, at the end, the summary table.
#pragma once

#include <string>

#include "plan/run_spec.hpp"

namespace loftq {

enum class IoMode { direct, scatter };  // every rank reads its own rows | rank 0 reads and serves

// How a quantize job runs, beside what it computes (the RunSpec): nothing here changes a number,
// so a --resume may change any of it.
struct QuantizeOptions {
    bool resume = false;          // continue an existing run file
    IoMode io = IoMode::direct;
    std::string device = "auto";  // auto | cpu | cuda
    std::string log_json;         // one JSON record per matrix; empty: none
    double watchdog = 0;          // seconds without progress that end the job; 0 = off (watchdog.hpp)
};

// Collective over MPI_COMM_WORLD: LoftQ on the checkpoint in `model_dir` into the run file
// `work_path`. `spec` must be validated. A stop signal during the loop (core/interrupt.hpp) ends
// it after the current matrices with the run file closed and a collective Error on every rank:
// "interrupted by SIGTERM after N of M matrices; resume with --resume".
void run_quantize(const std::string& model_dir, const std::string& work_path, const RunSpec& spec,
                  const QuantizeOptions& opt);

// Rank 0: the per-matrix table (QLoRA error vs LoftQ error as loaded) and totals of a run file.
void print_run_summary(const std::string& work_path);

}  // namespace loftq
