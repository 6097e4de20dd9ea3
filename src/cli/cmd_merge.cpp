// `loftq merge`: the paths checked by identity before anything is created (the output and the
// work folder may neither be, hold nor lie inside the base or the adapter; the work folder not
// inside the output), the work folder locked against a second job, then the job
// (runtime/merge_job.hpp).
#include <string>

#include "cli/commands.hpp"
#include "cli/job_guard.hpp"
#include "core/error.hpp"
#include "io/path_guard.hpp"
#include "plan/model_config.hpp"
#include "runtime/collective.hpp"
#include "runtime/merge_job.hpp"

namespace loftq {

int cmd_merge(const Config& cfg) {
    const MergeOptions& m = cfg.merge;
    const std::string work = m.work_dir.empty() ? default_merge_work_path(m.output_dir) : m.work_dir;
    root_computes(MPI_COMM_WORLD, 0, [&] {
        require_model_folder(m.base_dir);
        for (const auto& [input, option] : {std::pair{m.base_dir, "base"}, std::pair{m.adapter_dir, "adapter"}}) {
            JobPaths paths;
            paths.model = input;
            paths.work = work;
            paths.output = m.output_dir;
            if (const auto c = find_path_conflict(paths))
                LOFTQ_THROW(ConfigError, "option --", c->setting, ": '", c->path, "' ", c->relation, " of --",
                            c->other == "model" ? option : c->other, " '", c->other_path, "'");
        }
        return std::string();
    });
    const auto lock = lock_run_file(work, false);
    run_merge(m);
    return 0;
}

}  // namespace loftq
