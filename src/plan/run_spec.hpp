// RunSpec: everything that decides the numbers of a LoftQ run, in one typed value. The command
// line fills it once (cli), validate() checks it once, the run file stores it once (to_json, the
// run file's "options" attribute), and export / verify / --resume read it back with from_json,
// which refuses a missing or unknown key by name: nothing falls back to a default.
//
// Each setting lives in exactly one field: the LoftQ loop's own options (`loftq`, whose quant
// format and sketch name are per matrix: for_matrix) and what only the plan needs (bits per
// layer, quantizer family, targets, split threshold). Rank count, I/O mode, device, paths and
// logging are not here: they may change between a run and its resume without changing a number.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loftq/loftq_loop.hpp"

namespace loftq {

// Bounds of validate(), documented with the options (README).
constexpr int kMaxRank = 65536;
constexpr int kMaxIters = 1000;
constexpr int kMaxOversample = 4096;
constexpr int kMaxPowerIters = 64;
constexpr double kMinLoraScaling = 1e-6;  // lora-alpha / r (rslora: / sqrt(r))
constexpr double kMaxLoraScaling = 1e6;

struct RunSpec {
    double bits = 4;                   // 2, 4, 8, or mixed 2.25 / 2.5 / 3 (per layer: bits_for_layer)
    std::string quant = "nf";          // quantizer family: nf | fp4 | uniform | int8 (LLM.int8, 8 bits)
    std::vector<std::string> targets;  // empty = all-linear; else module names (q_proj, mlp.up_proj, ...)
    uint64_t split_threshold = 0;      // float32 bytes above which a matrix is row-sharded; 0 = never
    LoftqOptions loftq;                // quant.format unset here (for_matrix sets it from the bits)

    bool mixed_bits() const { return bits != 2 && bits != 4 && bits != 8; }
    // Throws ConfigError tagged with the first bad setting's key (the keys of to_json).
    void validate() const;
    // The LoftQ options of one matrix: its format from (quant, bits), its blocksize (blocksize_for),
    // its name keys the sketch.
    LoftqOptions for_matrix(const std::string& tensor, int bits, int64_t cols) const;
    // The quantization blocksize of a matrix: --blocksize, or its row length for int8.
    int blocksize_for(int bits, int64_t cols) const;

    // A flat JSON object; keys: bits quant blocksize rank iters targets svd oversample
    // power-iters warm-power-iters power-scheme seed lora-alpha rslora double-quant keep-best scale-compensation backbone
    // split-threshold ("targets": "all-linear" or a list).
    std::string to_json() const;
    // The inverse of to_json, then validate(); InputError naming `what` and the key for a missing,
    // unknown or mistyped key.
    static RunSpec from_json(const std::string& text, const std::string& what);
};

}  // namespace loftq
