// The subcommands of `loftq`. Each takes a validated Config and returns the process exit code.
// MPI is initialised before any of them runs; each is collective over MPI_COMM_WORLD.
#pragma once

#include "cli/config.hpp"

namespace loftq {

int cmd_quantize(const Config& cfg);
int cmd_export(const Config& cfg);
int cmd_run(const Config& cfg);
int cmd_verify(const Config& cfg);
int cmd_inspect(const Config& cfg);
int cmd_synth(const Config& cfg);
int cmd_merge(const Config& cfg);

}  // namespace loftq
