// Entry point: MPI up, parse and validate the command line, run the subcommand. Any error is one
// line on stderr and a non-zero exit; under several ranks MPI_Abort ends every rank so that none
// waits in a collective (STYLE.md 9).
#include <hdf5.h>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "cli/commands.hpp"
#include "cli/config.hpp"
#include "core/error.hpp"
#include "core/interrupt.hpp"
#include "plan/model_config.hpp"
#include "quant/simd_kernels.hpp"
#include "runtime/collective.hpp"

namespace {

int dispatch(const loftq::Config& cfg) {
    using namespace loftq;
    // A model is a folder; a file given as --model would be read as config.json. Checked on rank 0
    // for every rank (collective: one line, no abort) before any command reads it.
    if (cfg.command == "quantize" || cfg.command == "run" || cfg.command == "export" || cfg.command == "verify")
        root_computes(MPI_COMM_WORLD, 0, [&] {
            require_model_folder(cfg.model_dir);
            return std::string();
        });
    if (cfg.command == "quantize") return cmd_quantize(cfg);
    if (cfg.command == "export") return cmd_export(cfg);
    if (cfg.command == "run") return cmd_run(cfg);
    if (cfg.command == "verify") return cmd_verify(cfg);
    if (cfg.command == "inspect") return cmd_inspect(cfg);
    if (cfg.command == "synth") return cmd_synth(cfg);
    if (cfg.command == "merge") return cmd_merge(cfg);
    LOFTQ_THROW(ConfigError, "unknown command '", cfg.command, "'");
}

// A process that no MPI launcher started (no mpirun / srun / PMI environment) is a singleton:
// a world of one. Open MPI then still probes its network transports (UCX, OFI, openib) and
// starts a helper daemon: a process's start-up took 0.36 s here instead of 0.05 s
// (bench/results/cpu_choices.md). A world of one needs none of it, so its defaults become the
// loopback transport, the ob1 messaging layer and an isolated singleton; and hwloc skips the PCI
// devices (its pci and linuxio components read every device's config space: 11-17 ms of each
// start here, `perf stat -r 30 loftq --help`), which only place network and GPU devices for
// ranks that talk to each other. Settings the user exported win
// (setenv does not overwrite), a launched process is left alone, and
// LOFTQ_MPI_SINGLETON_DEFAULTS=0 turns this off.
void singleton_mpi_defaults() {
#ifdef OPEN_MPI
    if (const char* off = std::getenv("LOFTQ_MPI_SINGLETON_DEFAULTS"); off && std::string(off) == "0") return;
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "OMPI_MCA_orte_ess_num_procs"})
        if (std::getenv(v)) return;
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
    setenv("OMPI_MCA_pml", "ob1", 0);
    setenv("OMPI_MCA_btl", "self", 0);
    setenv("HWLOC_COMPONENTS", "-pci,-linuxio", 0);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    singleton_mpi_defaults();
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        std::fprintf(stderr, "loftq: error: MPI_Init_thread failed\n");
        return 2;
    }
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    loftq::set_process_context(rank, size);
    // Every HDF5 call is checked (HDF5_CHECK names the call, file and rank): HDF5's own multi-line
    // error stack on stderr would bury that one line.
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);

    // The command line is the same on every rank, so its errors are too: rank 0 reports them and
    // every rank exits. Errors of the work itself end all ranks through MPI_Abort unless they are
    // collective (raised identically everywhere).
    int code = 0;
    loftq::Config cfg;
    bool go = false;
    try {
        go = loftq::parse_command_line(argc, argv, cfg);
        // LOFTQ_SIMD is read here, with the options: a level that does not exist or that this CPU
        // lacks is one line and exit 2 before anything is written, not an exception inside a
        // parallel loop.
        if (go) loftq::quant_kernels();
    } catch (const std::exception& e) {
        if (rank == 0) std::fprintf(stderr, "loftq: error: %s\n", loftq::error_line(e).c_str());
        code = 2;
        go = false;
    }
    // SIGTERM / SIGINT / SIGUSR1 ask the writing commands to stop at a clean point in any phase
    // (core/interrupt.hpp): one line, a non-zero exit, no partial output, a resumable run file;
    // one that comes after the work (the summary, MPI_Finalize) changes nothing and is ignored.
    // merge handles them in its own phases (runtime/merge_job.cpp). The others (read-only, or
    // synth's removal of a partial folder) keep the default action.
    // The scope is never closed: closing it would restore the default action before the process
    // exits (MPI_Finalize, HDF5's and OpenBLAS's exit handlers), and a signal in that window killed
    // a job whose output was complete (exit 130, found by tests/e2e_faults.sh).
    [[maybe_unused]] static loftq::InterruptScope* interrupts = nullptr;  // deliberately never deleted
    if (go && (cfg.command == "quantize" || cfg.command == "export" || cfg.command == "run" || cfg.command == "merge"))
        interrupts = new loftq::InterruptScope();
    if (go) {
        try {
            code = dispatch(cfg);
        } catch (const loftq::Error& e) {
            const bool usage = dynamic_cast<const loftq::ConfigError*>(&e) ||
                               dynamic_cast<const loftq::NotImplemented*>(&e);
            const std::string line = loftq::error_line(e);
            if (e.collective() || size == 1) {
                if (rank == 0) std::fprintf(stderr, "loftq: error: %s\n", line.c_str());
                code = usage ? 2 : 1;
            } else {
                std::fprintf(stderr, "loftq: error: %s\n", line.c_str());
                std::fflush(stderr);
                MPI_Abort(MPI_COMM_WORLD, usage ? 2 : 1);
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "loftq: error: %s\n", e.what());
            std::fflush(stderr);
            if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
            code = 1;
        }
    }
    MPI_Finalize();
    return code;
}
