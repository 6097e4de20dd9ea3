// `loftq quantize`: LoftQ into the run file, then the summary on rank 0.

#include "cli/commands.hpp"
#include "cli/job_guard.hpp"
#include "core/error.hpp"
#include "runtime/quantize_job.hpp"

namespace loftq {

int cmd_quantize(const Config& cfg) {
    check_job_paths(cfg, cfg.work_path);
    const auto lock = lock_run_file(cfg.work_path, false);
    run_quantize(cfg.model_dir, cfg.work_path, cfg.spec, cfg.quantize);
    if (process_rank() == 0) print_run_summary(cfg.work_path);
    return 0;
}

}  // namespace loftq
