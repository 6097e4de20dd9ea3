// `loftq synth`: write a synthetic checkpoint (runtime/synth.hpp) from a preset.
// Rank 0 writes; other ranks of a launcher have nothing to do and return at once.
#include <cstdio>

#include "cli/commands.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "runtime/synth.hpp"

namespace loftq {

int cmd_synth(const Config& cfg) {
    if (process_rank() != 0) return 0;
    const SynthSummary s = write_synthetic_checkpoint(cfg.exp.output_dir, cfg.synth);
    std::printf("loftq synth: %s, %lld layers, %zu tensors, %.3f GB in %zu file(s) -> %s\n", cfg.synth.preset.c_str(),
                static_cast<long long>(s.model.num_hidden_layers), s.tensors, s.total_bytes / 1e9,
                s.files.size(), cfg.exp.output_dir.c_str());
    return 0;
}

}  // namespace loftq
