// The configuration of one loftq invocation, filled by the command line (cli.cpp) and checked by
// validate() before any work starts (STYLE.md 8). Every rank parses the same command line, so
// every rank holds the same Config.
//
// Config holds the structs of the layers it drives, each setting in exactly one field: what a
// run computes (RunSpec, the plan layer's), how a quantize job runs (QuantizeOptions), how an
// export writes (ExportOptions), what synth makes (SynthOptions). Boost binds each option straight
// to its field; nothing is copied field by field.
#pragma once

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>

#include "plan/run_spec.hpp"
#include "runtime/export_job.hpp"
#include "runtime/merge_job.hpp"
#include "runtime/quantize_job.hpp"
#include "runtime/synth.hpp"

namespace loftq {

struct Config {
    std::string command;  // quantize | export | run | verify | inspect | synth | merge

    // Paths that several commands share (the output folder is export.output_dir).
    std::string model_dir;     // --model: input checkpoint folder
    std::string work_path;     // --work: HDF5 run file (run: default <output>.run.h5)
    std::string inspect_path;  // positional PATH of `inspect`
    std::string json_path;     // --json (verify)

    RunSpec spec;              // quantize, run
    QuantizeOptions quantize;  // quantize, run
    ExportOptions exp;         // export, run (output_dir: also verify, synth)
    SynthOptions synth;        // synth
    MergeOptions merge;        // merge (its own paths: --base, --adapter, --output, --work)

    // Throws ConfigError naming the first bad option (RunSpec errors carry their setting).
    void validate() const;
};

// Parse `loftq <command> [options]` (argv[0] is the program). Prints --help and returns false
// when help was asked for; throws ConfigError on unknown or malformed options.
bool parse_command_line(int argc, const char* const* argv, Config& cfg);

// The list of subcommands with one line each (for `loftq --help`).
std::string usage_text();

// ConfigError "option --<option>: '<value>' is not one of a|b|c" unless value is allowed.
void require_one_of(const std::string& option, const std::string& value,
                    std::initializer_list<const char*> allowed);

// The one line an error is reported as: a ConfigError tagged with a setting names the option that
// carries it ("option --rank: ..."); any other error is its own text.
std::string error_line(const std::exception& e);

}  // namespace loftq
