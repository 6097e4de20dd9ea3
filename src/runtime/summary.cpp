// The summary table a quantize run ends with, read back from the run file (so a resumed run
// reports every matrix, including those finished by an earlier job).
#include <cmath>
#include <cstdio>

#include "io/runfile.hpp"
#include "runtime/quantize_job.hpp"

namespace loftq {

void print_run_summary(const std::string& work_path) {
    RunFile run = RunFile::open_read(work_path);
    const auto& layout = run.layout();
    const auto complete = run.complete_flags();
    std::printf("\n%-52s %13s %4s %10s %10s %7s %4s\n", "matrix", "shape", "bits", "QLoRA err", "LoftQ err",
                "gain", "iter");
    double q_sum = 0, l_sum = 0, q_sq = 0, l_sq = 0, w_sq = 0;
    int worse = 0, done = 0;
    for (size_t i = 0; i < layout.size(); ++i) {
        if (!complete[i]) {
            std::printf("%-52s %13s   (not complete)\n", layout[i].name.c_str(), "");
            continue;
        }
        const MatrixRecord r = run.read_matrix(i);
        char shape[32];
        std::snprintf(shape, sizeof shape, "%lldx%lld", static_cast<long long>(r.rows), static_cast<long long>(r.cols));
        const double gain = r.qlora_error > 0 ? 100.0 * (1.0 - r.loaded_error / r.qlora_error) : 0.0;
        std::printf("%-52s %13s %4d %10.6f %10.6f %6.1f%% %4d%s\n", r.name.c_str(), shape, r.bits, r.qlora_error,
                    r.loaded_error, gain, r.chosen_iteration, r.loaded_error > r.qlora_error ? "  WORSE" : "");
        // Totals weight every matrix by its size (the relative errors of equal-norm-per-element
        // matrices add like squared norms): sum of squares of errors times element counts.
        const double n = static_cast<double>(r.rows * r.cols);
        q_sum += r.qlora_error;
        l_sum += r.loaded_error;
        q_sq += r.qlora_error * r.qlora_error * n;
        l_sq += r.loaded_error * r.loaded_error * n;
        w_sq += n;
        worse += r.loaded_error > r.qlora_error ? 1 : 0;
        ++done;
    }
    if (done == 0) return;
    std::printf("%-52s %13s %4s %10.6f %10.6f %6.1f%%\n", "mean over matrices", "", "", q_sum / done, l_sum / done,
                100.0 * (1.0 - l_sum / q_sum));
    std::printf("%-52s %13s %4s %10.6f %10.6f %6.1f%%\n", "RMS weighted by size", "", "", std::sqrt(q_sq / w_sq),
                std::sqrt(l_sq / w_sq), 100.0 * (1.0 - std::sqrt(l_sq / q_sq)));
    std::printf("%d of %zu matrices complete; LoftQ (as loaded) is worse than QLoRA on %d\n", done, layout.size(),
                worse);
    std::fflush(stdout);
}

}  // namespace loftq
