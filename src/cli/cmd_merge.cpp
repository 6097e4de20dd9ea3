// `loftq merge`: the paths checked by identity before anything is created (no output, work folder
// or run file may be, hold or lie inside the base or the adapter; none inside the output), the
// work folder (and run file) locked against a second job, then the job (runtime/merge_job.hpp).
//
// --to loftq (refresh) is three steps, each resumable: the merge into a bf16 model beside the
// output ("<output>.merged"), LoftQ on it into the run file ("<output>.run.h5", the RunSpec of the
// LoftQ options), and the export into --output (backbone + loftq_init, report.json with QLoRA's
// error, i.e. bnb4 re-quantization of the merged weights, beside LoftQ's per matrix). Both
// intermediates are removed once the output is committed.
#include <filesystem>
#include <string>

#include "cli/commands.hpp"
#include "cli/job_guard.hpp"
#include "core/error.hpp"
#include "io/path_guard.hpp"
#include "plan/model_config.hpp"
#include "runtime/collective.hpp"
#include "runtime/export_job.hpp"
#include "runtime/merge_job.hpp"
#include "runtime/quantize_job.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

// Rank 0 for all: the base is a model folder; output, work and run file clear of the inputs.
void check_merge_paths(const MergeOptions& m, const std::string& work, const std::string& run_file,
                       const std::string& log) {
    root_computes(MPI_COMM_WORLD, 0, [&] {
        require_model_folder(m.base_dir);
        for (const auto& [input, option] : {std::pair{m.base_dir, "base"}, std::pair{m.adapter_dir, "adapter"}})
            for (const std::string& w : {work, run_file}) {
                if (w.empty()) continue;
                JobPaths paths;
                paths.model = input;
                paths.work = w;
                paths.output = m.output_dir;
                paths.log = log;
                if (const auto c = find_path_conflict(paths))
                    LOFTQ_THROW(ConfigError, "option --", c->setting, ": '", c->path, "' ", c->relation, " of --",
                                c->other == "model" ? option : c->other, " '", c->other_path, "'");
            }
        if (!m.overwrite && fs::exists(fs::symlink_status(m.output_dir)))
            LOFTQ_THROW_SETTING("output", "'", m.output_dir, "' exists; add --overwrite to replace it");
        return std::string();
    });
}

}  // namespace

int cmd_merge(const Config& cfg) {
    MergeOptions m = cfg.merge;
    m.output_dir = cfg.exp.output_dir;
    m.max_shard_size = cfg.exp.max_shard_size;
    m.resume = cfg.quantize.resume;
    m.overwrite = cfg.exp.overwrite;
    if (m.to != "loftq") {
        m.log_json = cfg.quantize.log_json;
        const std::string work = m.work_dir.empty() ? default_merge_work_path(m.output_dir) : m.work_dir;
        check_merge_paths(m, work, "", m.log_json);
        const auto lock = lock_run_file(work, false);
        run_merge(m);
        return 0;
    }

    check_run_backbone(cfg.spec);
    MergeOptions first = m;
    first.to = "bf16";
    first.output_dir = default_refresh_merged_path(m.output_dir);
    first.overwrite = false;
    const std::string work = m.work_dir.empty() ? default_merge_work_path(first.output_dir) : m.work_dir;
    const std::string run_file = default_work_path(m.output_dir);
    check_merge_paths(m, work, run_file, cfg.quantize.log_json);
    const auto lock = lock_run_file(run_file, false);
    const bool merged = root_computes(MPI_COMM_WORLD, 0, [&] {
                            if (!fs::exists(first.output_dir)) return std::string("0");
                            if (!m.resume)
                                LOFTQ_THROW_SETTING("output", "'", first.output_dir, "' (the merged model of an earlier "
                                                    "refresh) exists; add --resume to continue from it, or remove it");
                            return std::string("1");
                        }) == "1";
    if (!merged) run_merge(first);
    QuantizeOptions q = cfg.quantize;
    q.resume = root_computes(MPI_COMM_WORLD, 0, [&] { return std::string(fs::exists(run_file) ? "1" : "0"); }) == "1";
    if (q.resume && !m.resume)
        LOFTQ_THROW_SETTING("output", "run file '", run_file, "' exists; add --resume to continue it, or remove it");
    run_quantize(first.output_dir, run_file, cfg.spec, q);
    if (process_rank() == 0) print_run_summary(run_file);
    run_export({run_file, first.output_dir, cfg.exp});
    root_computes(MPI_COMM_WORLD, 0, [&] {
        fs::remove_all(first.output_dir);
        fs::remove(run_file);
        return std::string();
    });
    return 0;
}

}  // namespace loftq
