// `loftq export` (and the export step of `loftq run`): a complete run file + the input model ->
// the folder transformers + PEFT load (spec/FORMATS.md 2, 4, 5):
//   config.json                 the input's; bnb4: + quantization_config (compute dtype = the
//                               input's torch_dtype); bf16/fp16/fp32: torch_dtype kept when it
//                               holds the backbone dtype exactly (the same, or float32), else set
//                               to the backbone dtype, so that the cast transformers makes at
//                               load keeps the stored values, which re-quantize to the optimised Q
//   model[-0000i-of-0000K].safetensors (+ model.safetensors.index.json when K > 1)
//                               every tensor of the input in name order; targets as the backbone
//                               form stores them, every other tensor copied bit for bit
//   tokenizer / generation files of the input folder, copied
//   loftq_init/adapter_model.safetensors, loftq_init/adapter_config.json
//   report.json                 options, per-matrix errors and timings, totals, notes, and the
//                               "load" block: how to load the backbone (read by `loftq verify`)
// The folder appears complete or not at all (io/output_folder.hpp). Memory: about one tensor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "plan/run_spec.hpp"

namespace loftq {

// How to export (export, and the export step of run); nothing here changes a stored number.
struct ExportOptions {
    std::string output_dir;
    std::optional<Backbone> backbone;  // none: the run's own (the RunSpec's backbone)
    uint64_t max_shard_size = 5000000000ULL;
    std::string adapter_dtype = "float32";  // float32 | bfloat16 | float16
    bool overwrite = false;
};

struct ExportRequest {
    std::string work_path;  // the complete run file
    std::string model_dir;  // the model it was made from
    ExportOptions options;
};

struct ExportOutcome {
    std::string output_dir;
    std::string backbone;  // "bf16" | "fp16" | "fp32" | "bnb4"
    int matrices = 0;
    int shards = 0;
    double seconds = 0;
};

// One process (no MPI). Throws ConfigError (options, --output exists), InputError (run file
// incomplete or not matching the model, unreadable input) with nothing left at the output path.
ExportOutcome export_run(const ExportRequest& req);

// Collective over MPI_COMM_WORLD: rank 0 exports and prints one line; every rank returns, or
// every rank throws the same error.
void run_export(const ExportRequest& req);

// Totals of a list of {"shape": [rows, cols], "qlora_error", "loftq_error"}: matrices,
// mean_qlora_error, mean_loftq_error, rms_qlora_error / rms_loftq_error (weighted by element
// count: relative errors of matrices add like squared norms), worse_than_qlora.
nlohmann::json error_totals(const nlohmann::json& matrices);

// The tokenizer and generation files of model_dir (what transformers reads besides the weights),
// copied and synced into folder.
void copy_tokenizer_files(const std::string& model_dir, const std::string& folder);

// `loftq run`: the run file beside the output folder when none is named ("<output>.run.h5",
// trailing slashes dropped).
std::string default_work_path(const std::string& output_dir);
// `loftq run`: refuse before any quantization an export form the spec cannot give exactly (the
// checks of resolve_export_backbone that need no run file).
void check_run_backbone(const RunSpec& spec);

}  // namespace loftq
