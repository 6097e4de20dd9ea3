// The summary table a quantize run ends with, read back from the run file (so a resumed run
// reports every matrix, including those finished by an earlier job).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "io/runfile.hpp"
#include "runtime/export_job.hpp"
#include "runtime/quantize_job.hpp"

namespace loftq {

void print_run_summary(const std::string& work_path) {
    RunFile run = RunFile::open_read(work_path);
    const auto& layout = run.layout();
    const auto complete = run.complete_flags();
    std::printf("\n%-52s %13s %4s %10s %10s %7s %4s\n", "matrix", "shape", "bits", "QLoRA err", "LoftQ err",
                "gain", "iter");
    nlohmann::json done = nlohmann::json::array();
    for (size_t i = 0; i < layout.size(); ++i) {
        if (!complete[i]) {
            std::printf("%-52s %13s   (not complete)\n", layout[i].name.c_str(), "");
            continue;
        }
        const MatrixRecord r = run.read_matrix(i);
        char shape[32];
        std::snprintf(shape, sizeof shape, "%lldx%lld", static_cast<long long>(r.layout.rows), static_cast<long long>(r.layout.cols));
        const double gain = r.qlora_error > 0 ? 100.0 * (1.0 - r.loaded_error / r.qlora_error) : 0.0;
        std::printf("%-52s %13s %4d %10.6f %10.6f %6.1f%% %4d%s\n", r.layout.name.c_str(), shape, r.layout.bits, r.qlora_error,
                    r.loaded_error, gain, r.chosen_iteration, r.loaded_error > r.qlora_error ? "  WORSE" : "");
        done.push_back({{"shape", {r.layout.rows, r.layout.cols}}, {"qlora_error", r.qlora_error}, {"loftq_error", r.loaded_error}});
    }
    if (done.empty()) return;
    // The same totals as export's report.json and verify: the mean, and the RMS weighted by size.
    const nlohmann::json t = error_totals(done);
    const double qm = t["mean_qlora_error"], lm = t["mean_loftq_error"], qr = t["rms_qlora_error"],
                 lr = t["rms_loftq_error"];
    std::printf("%-52s %13s %4s %10.6f %10.6f %6.1f%%\n", "mean over matrices", "", "", qm, lm, 100.0 * (1.0 - lm / qm));
    std::printf("%-52s %13s %4s %10.6f %10.6f %6.1f%%\n", "RMS weighted by size", "", "", qr, lr, 100.0 * (1.0 - lr / qr));
    std::printf("%zu of %zu matrices complete; LoftQ (as loaded) is worse than QLoRA on %d\n", done.size(), layout.size(),
                t["worse_than_qlora"].get<int>());
    std::fflush(stdout);
}

}  // namespace loftq
