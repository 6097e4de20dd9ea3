// The one configuration struct of a loftq invocation, filled by the command line (cli.cpp) and
// checked by validate() before any work starts (STYLE.md 8). Every rank parses the same command
// line, so every rank holds the same Config.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loftq {

struct Config {
    std::string command;  // quantize | export | run | verify | inspect | synth

    // Paths.
    std::string model_dir;     // --model: input checkpoint folder
    std::string work_path;     // --work: HDF5 run file (run: default <output>.run.h5)
    std::string output_dir;    // --output: exported folder (export, run, verify, synth)
    std::string inspect_path;  // positional PATH of `inspect`
    std::string json_path;     // --json (verify)
    std::string log_json;      // --log-json: one record per matrix

    // LoftQ.
    double bits = 4;                 // 2, 4, 8, or mixed 2.25 / 2.5 / 3
    std::string quant = "nf";        // nf | fp4 | uniform
    int blocksize = 64;
    int rank = 64;
    int iters = 5;
    std::vector<std::string> targets;  // empty = all-linear
    std::string svd = "auto";          // auto | exact | randomized
    int oversample = 16;
    int power_iters = 2;
    uint64_t seed = 0;
    double lora_alpha = 16;
    bool rslora = false;
    bool double_quant = false;
    bool keep_best = true;            // --no-keep-best: PEFT's "last iterate"
    bool compensate_scaling = true;   // --no-scale-compensation: PEFT's uncompensated A, B
    bool resume = false;
    uint64_t split_threshold = 0;     // bytes of float32 matrix; 0 = never split
    std::string io = "direct";        // direct | scatter
    std::string device = "auto";      // auto | cpu | cuda

    // Export.
    std::string backbone = "bf16";        // bf16 | fp16 | fp32 | bnb4 (export: "" = the run file's)
    uint64_t max_shard_size = 5000000000ULL;
    std::string adapter_dtype = "float32";  // float32 | bfloat16 | float16
    bool overwrite = false;

    // Synth.
    std::string preset = "tiny";
    int layers = 0;  // 0 = the preset's depth
    std::string synth_dtype = "bf16";

    // Throws ConfigError naming the first bad option.
    void validate() const;

    // Mixed precision is expressed by a non-integer bits value.
    bool mixed_bits() const { return bits != 2 && bits != 4 && bits != 8; }
    bool all_linear() const { return targets.empty(); }
};

// Parse `loftq <command> [options]` (argv[0] is the program). Prints --help and returns false
// when help was asked for; throws ConfigError on unknown or malformed options.
bool parse_command_line(int argc, const char* const* argv, Config& cfg);

// The list of subcommands with one line each (for `loftq --help`).
std::string usage_text();

}  // namespace loftq
