// `loftq synth`: write a synthetic Llama-shaped checkpoint (io/synth.hpp) from a preset.
// Rank 0 writes; other ranks of a launcher have nothing to do and return at once.
#include <cstdio>

#include "cli/commands.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/synth.hpp"

namespace loftq {

int cmd_synth(const Config& cfg) {
    if (process_rank() != 0) return 0;
    SynthOptions o;
    o.preset = cfg.preset;
    o.layers = cfg.layers;
    o.seed = cfg.seed;
    o.dtype = cfg.synth_dtype == "fp32" ? DType::F32 : cfg.synth_dtype == "fp16" ? DType::F16 : DType::BF16;
    o.max_shard_size = cfg.max_shard_size;
    const SynthSummary s = write_synthetic_checkpoint(cfg.output_dir, o);
    std::printf("loftq synth: %s, %lld layers, %zu tensors, %.3f GB in %zu file(s) -> %s\n", cfg.preset.c_str(),
                static_cast<long long>(s.model.num_hidden_layers), s.tensors, s.total_bytes / 1e9,
                s.files.size(), cfg.output_dir.c_str());
    return 0;
}

}  // namespace loftq
