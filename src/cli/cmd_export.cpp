// `loftq export` (a complete run file -> the output folder) and `loftq run` (quantize into the
// run file, then export, then the summary). Export runs on rank 0; the other ranks wait for it
// and share its error, so no rank hangs and every rank exits the same way.
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/job_guard.hpp"
#include "core/error.hpp"
#include "runtime/collective.hpp"
#include "runtime/export_job.hpp"
#include "runtime/quantize_job.hpp"

namespace loftq {

int cmd_export(const Config& cfg) {
    check_job_paths(cfg, cfg.work_path);
    const auto lock = lock_run_file(cfg.work_path, true);
    run_export({cfg.work_path, cfg.model_dir, cfg.exp});
    return 0;
}

int cmd_run(const Config& cfg) {
    check_run_backbone(cfg.spec);  // the same on every rank: fails before any work
    const std::string work = cfg.work_path.empty() ? default_work_path(cfg.exp.output_dir) : cfg.work_path;
    check_job_paths(cfg, work);
    root_computes(MPI_COMM_WORLD, 0, [&] {  // and so does an existing output folder
        std::error_code ec;
        const std::string& out = cfg.exp.output_dir;
        if (!cfg.exp.overwrite && std::filesystem::exists(std::filesystem::symlink_status(out, ec)))
            LOFTQ_THROW(ConfigError, "option --output: '", out, "' exists; add --overwrite to replace it");
        return std::string();
    });
    const auto lock = lock_run_file(work, false);  // held through quantize and export
    run_quantize(cfg.model_dir, work, cfg.spec, cfg.quantize);
    if (process_rank() == 0) print_run_summary(work);
    run_export({work, cfg.model_dir, cfg.exp});
    return 0;
}

}  // namespace loftq
