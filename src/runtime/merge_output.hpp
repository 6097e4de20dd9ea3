// The files of `loftq merge` (rank 0 only): the work folder it writes into and resumes from, and
// the output folder it becomes (runtime/merge_job.hpp describes both).
#pragma once

#include <string>
#include <vector>

#include "runtime/merge_job.hpp"
#include "runtime/merge_plan.hpp"

namespace loftq {

// Creates the work folder for `plan` (shard files at their final size with their headers, the
// completion bytes and the checksums (runtime/merge_job.cpp), then plan.json, last, so that a folder with plan.json is whole), or with
// resume reopens an existing one. ConfigError (setting "work") when it exists without --resume,
// holds no plan.json, or was made for another plan (other inputs or options); InputError when its
// files do not have their sizes. Returns the completion byte of every item.
std::vector<unsigned char> prepare_work_folder(const std::string& work, const MergePlan& plan, bool resume);

// Every item complete: moves the shards into a new output folder with config.json (the base's,
// without quantization_config, torch_dtype the --to dtype), model.safetensors.index.json when
// sharded, the base's tokenizer and generation files and merge_report.json; commits it and
// removes the work folder. InputError when an item is not complete.
void finish_merge_output(const MergeOptions& opt, const std::string& work, const MergePlan& plan, double seconds);

}  // namespace loftq
