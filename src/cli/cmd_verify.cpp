// `loftq verify --model DIR --output DIR [--json F]`: the per-matrix table of errors as loaded
// (runtime/verify_job.hpp) on rank 0; exit status 1 when LoftQ as loaded is worse than QLoRA on
// any matrix, so scripts and Slurm see it. Every rank returns the same status.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/path_guard.hpp"
#include "runtime/collective.hpp"
#include "runtime/verify_job.hpp"

namespace loftq {

int cmd_verify(const Config& cfg) {
    // The report may not replace a file of what it verifies (the model or the output folder).
    if (!cfg.json_path.empty())
        root_computes(MPI_COMM_WORLD, 0, [&] {
            for (const auto& [option, folder] : {std::pair<const char*, std::string>{"model", cfg.model_dir},
                                                 {"output", cfg.exp.output_dir}})
                if (path_is_within(cfg.json_path, folder))
                    LOFTQ_THROW(ConfigError, "option --json: '", cfg.json_path, "' is inside --", option, " '",
                                folder, "'");
            return std::string();
        });
    const std::string worse = root_computes(MPI_COMM_WORLD, 0, [&] {
        const VerifyReport rep = verify_output(cfg.model_dir, cfg.exp.output_dir);
        const std::string table = rep.table();
        std::fwrite(table.data(), 1, table.size(), stdout);
        std::fflush(stdout);
        if (!cfg.json_path.empty()) write_file_atomically(cfg.json_path, rep.to_json().dump(2) + "\n");
        return std::to_string(rep.worse_than_qlora());
    });
    return worse == "0" ? 0 : 1;
}

}  // namespace loftq
