// The summary table a quantize run ends with, read back from the run file (so a resumed run
// reports every matrix, including those finished by an earlier job).
#include <cstdio>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/runfile.hpp"
#include "plan/run_spec.hpp"
#include "quant/format.hpp"
#include "runtime/export_job.hpp"
#include "runtime/quantize_job.hpp"

namespace loftq {
namespace {

// One line per kind of matrix: how the exported folder (in the run's own backbone) loads.
void print_how_it_loads(const RunLayout& layout, Backbone bb) {
    std::set<std::string> lines;
    for (const auto& m : layout) {
        const QuantFormat& f = *find_format(m.format);
        if (f.is_row_wise())
            lines.insert(bb == Backbone::INT8 ? "int8: from_pretrained(out) as is (int8 weight + SCB, load_in_8bit config)"
                                              : "int8: load with BitsAndBytesConfig(load_in_8bit=True)");
        else if (f.is_bnb() || f.loads_through_nf4())
            lines.insert(cat(f.name, bb == Backbone::BNB4 ? ": from_pretrained(out) as is (bnb4)"
                                                          : ": load with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"",
                             bb == Backbone::BNB4 ? "" : (f.is_bnb() ? f.name : "nf4"), bb == Backbone::BNB4 ? "" : "\")",
                             f.loads_through_nf4() ? " (NF2 values are NF4 values)" : ""));
        else
            lines.insert(cat(f.name, ": loads only as stored (dequantized, no quantization_config: no memory saved)",
                             f.bits == 8 ? "; load_in_8bit would re-quantize it worse than plain load_in_8bit: "
                                           "use --quant int8 for that"
                                         : ""));
    }
    for (const auto& l : lines) std::printf("loads as optimised: %s\n", l.c_str());
}

}  // namespace

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
    print_how_it_loads(layout, RunSpec::from_json(run.options_json(), work_path).loftq.backbone);
    std::fflush(stdout);
}

}  // namespace loftq
