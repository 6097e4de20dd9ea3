// The checks and the plan of `loftq merge` (rank 0): base folder + adapter folder + options ->
// MergePlan, or one InputError / ConfigError line naming the file, tensor or module.
#pragma once

#include "runtime/merge_job.hpp"
#include "runtime/merge_plan.hpp"

namespace loftq {

// Reads config.json (and report.json for --base-load auto), the base's tensor index, the adapter
// (io/peft_adapter.hpp) and checks: every adapter module a 2-D weight of the base with A/B of
// its shape, every module target_modules selects present in the adapter, a supported --base-load
// for this folder. The plan is placed (place_items).
MergePlan plan_merge(const MergeOptions& opt);

}  // namespace loftq
