#include "runtime/quantize_job.hpp"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "comm/communicator.hpp"
#include "core/buffer_cache.hpp"
#include "core/error.hpp"
#include "core/interrupt.hpp"
#include "io/checkpoint.hpp"
#include "io/fingerprint.hpp"
#include "io/runfile.hpp"
#include "linalg/backend.hpp"
#include "plan/checkpoint_layout.hpp"
#include "plan/distribution.hpp"
#include "plan/model_config.hpp"
#include "runtime/collective.hpp"
#include "runtime/job_setup.hpp"
#include "runtime/progress.hpp"
#include "runtime/root_heartbeat.hpp"
#include "runtime/tensor_source.hpp"
#include "runtime/watchdog.hpp"

namespace loftq {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::unique_ptr<LinalgBackend> rank_backend(const std::string& device_name) {
    const int gpus = cuda_device_count();
    const int device = gpus > 0 ? gpu_for_local_rank(local_rank_from_env(), gpus) : 0;
    return make_backend(device_name, device);
}

std::unique_ptr<Communicator> group_communicator(LinalgBackend& be, MPI_Comm comm) {
    if (be.kind() == BackendKind::cuda) return make_nccl_communicator(comm, cuda_backend_stream(be));
    return make_mpi_communicator(comm);
}

// The ranks of one matrix's group: an MPI communicator and the backend's Communicator over it,
// created only for a group of more than one rank (a group of one has every shard here). The
// Communicator (NCCL on GPUs: costly to set up) comes with connect(), once the group has agreed
// to run the matrix (any()).
class GroupComm {
public:
    GroupComm(const std::vector<int>& world_ranks, int tag) {
        if (world_ranks.size() < 2) return;
        MPI_Group world_group, group;
        MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
        MPI_CHECK(MPI_Group_incl(world_group, static_cast<int>(world_ranks.size()), world_ranks.data(), &group));
        MPI_CHECK(MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &mpi_));
        MPI_Group_free(&group);
        MPI_Group_free(&world_group);
    }
    void connect(LinalgBackend& be) {
        if (mpi_ != MPI_COMM_NULL) comm_ = group_communicator(be, mpi_);
    }
    ~GroupComm() { close(); }
    GroupComm(const GroupComm&) = delete;
    GroupComm& operator=(const GroupComm&) = delete;

    Communicator* communicator() const { return comm_.get(); }  // nullptr for a group of one
    // Sums v[0..n) over the group, modulo 2^64 (the fingerprint's and checksum's parts). Like a
    // barrier, it returns only after every member called it.
    void sum(uint64_t* v, int n) {
        if (mpi_ != MPI_COMM_NULL) MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_UINT64_T, MPI_SUM, mpi_));
    }
    // 1 if `flag` is 1 on any member (a group of one: flag itself).
    int any(int flag) {
        int result = flag;
        if (mpi_ != MPI_COMM_NULL) MPI_CHECK(MPI_Allreduce(&flag, &result, 1, MPI_INT, MPI_MAX, mpi_));
        return result;
    }
    // The Communicator goes before the MPI communicator it runs on.
    void close() {
        comm_.reset();
        if (mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
    }

private:
    MPI_Comm mpi_ = MPI_COMM_NULL;
    std::unique_ptr<Communicator> comm_;
};

// Everything one rank needs while it works through its items.
struct Worker {
    const Plan& plan;
    const Distribution& dist;
    const RunLayout& layout;
    RunFile& run;
    TensorSource& source;
    LinalgBackend& be;
    ProgressReporter& progress;
    int world_rank;
    int first_worker;  // world rank of worker 0 (1 under --io scatter with several ranks)
    Watchdog& watchdog;

    nlohmann::json log_record(const MatrixPlan& m, const LoftqResult& r, const PhaseTimes& t,
                              const std::vector<int>& group, int64_t row_begin, int64_t row_end) const {
        nlohmann::json j;
        j["matrix"] = m.tensor;
        j["index"] = m.index;
        j["rank"] = world_rank;
        j["group"] = group;
        j["rows"] = m.rows;
        j["cols"] = m.cols;
        j["row_begin"] = row_begin;
        j["row_end"] = row_end;
        j["bits"] = m.bits;
        j["format"] = layout[static_cast<size_t>(m.index)].format;
        j["svd"] = r.svd_method;
        if (r.svd_method == "randomized") {
            j["sketch"] = r.sketch;
            j["gemm_passes"] = r.gemm_passes;
            j["gemm_columns"] = r.gemm_columns;
        } else {
            j["sketch"] = nullptr;
            j["gemm_passes"] = nullptr;
            j["gemm_columns"] = nullptr;
        }
        j["backend"] = be.name();
        j["bytes"] = static_cast<double>((row_end - row_begin) * m.cols) * 4.0;
        j["times"] = {{"read", t.read},   {"quantize", t.quantize},
                      {"svd", t.svd},     {"comm", t.comm},
                      {"write", t.write}, {"total", t.read + t.quantize + t.svd + t.comm + t.write}};
        j["qlora_error"] = r.qlora_error;
        j["errors"] = r.iteration_error;
        j["chosen_iteration"] = r.chosen_iteration;
        j["loaded_error"] = r.loaded_error;
        return j;
    }

    MatrixRecord common_record(const MatrixPlan& m, const LoftqResult& r, const PhaseTimes& t,
                               int owner_first, int owner_count) const {
        MatrixRecord rec;
        rec.layout = layout[static_cast<size_t>(m.index)];
        rec.A = r.A;
        rec.qlora_error = r.qlora_error;
        rec.iteration_error = r.iteration_error;
        rec.chosen_iteration = r.chosen_iteration;
        rec.loaded_error = r.loaded_error;
        rec.timings = t.as_array();
        rec.owner_first = owner_first;
        rec.owner_count = owner_count;
        const QuantizedTensor& q = r.q.front();
        if (q.double_quant) {
            rec.nested_absmax = q.nested.nested_absmax;
            rec.nested_offset = q.nested.offset;
        }
        return rec;
    }

    // One work item: the rows [row_begin, row_end) of one matrix, as shards of a group of ranks.
    // A whole matrix is the case of one shard and a group of one; a group of one (also a split
    // matrix on a single rank) needs no communicator: every shard of it is here.
    //
    // Stopping (a stop signal, interrupt.hpp): the item is skipped once this rank is `stopping`.
    // A group agrees first: every member reaches this point for the item (items run in one
    // order), so no member waits in a group collective for one that stopped; a member that learns
    // of a stop here stops too. `completed` counts the matrices this rank marked complete.
    void run_item(const WorkItem& item, bool& stopping, int64_t& completed) {
        const MatrixPlan& m = plan.matrices[static_cast<size_t>(item.matrix)];
        const MatrixAssignment& a = dist.matrices[static_cast<size_t>(item.matrix)];
        std::vector<int> ranks;
        for (int g : a.group) ranks.push_back(g + first_worker);
        const int me = static_cast<int>(std::find(ranks.begin(), ranks.end(), world_rank) - ranks.begin());
        GroupComm group(ranks, m.index);
        if (group.any(stopping || interrupt_signal() != 0 ? 1 : 0)) {
            stopping = true;
            return;
        }
        group.connect(be);
        std::string with;  // a split matrix waits on its group: the line names the group
        for (size_t j = 0; ranks.size() > 1 && j < ranks.size(); ++j)
            with += (j ? "," : " with ranks ") + std::to_string(ranks[j]);
        watchdog.beat("on matrix " + m.tensor + with);

        ShardLayout shards;
        shards.row_offsets = a.bounds;
        shards.owner.assign(static_cast<size_t>(a.shards), 0);
        for (size_t j = 0; j < a.group.size(); ++j)
            for (int s = a.member_shard_begin[j]; s < a.member_shard_end[j]; ++s)
                shards.owner[static_cast<size_t>(s)] = static_cast<int>(j);

        PhaseTimes t;
        auto t0 = Clock::now();
        // Not value-initialised: the read writes every element (zeroing 4 bytes per weight first
        // was a single-threaded pass over fresh pages). From the buffer cache: the previous
        // matrix's pages, not fresh ones (core/buffer_cache.hpp).
        const CachedFloats w(static_cast<size_t>((item.row_end - item.row_begin) * m.cols));
        source.read_rows(m, item.row_begin, item.row_end, w.get());
        // parts[0]: this member's rows of the model tensor's fingerprint; parts[1]: its part of the
        // checksum of what it writes. Summed over the group, they are the same for any split.
        uint64_t parts[2] = {fingerprint_rows(w.get(), item.row_begin, item.row_end - item.row_begin, m.cols), 0};
        t.read = since(t0);
        std::vector<ShardInput> inputs;
        for (int s = item.shard_begin; s < item.shard_end; ++s)
            inputs.push_back({a.bounds[static_cast<size_t>(s)], a.bounds[static_cast<size_t>(s) + 1],
                              w.get() + (a.bounds[static_cast<size_t>(s)] - item.row_begin) * m.cols});
        LoftqOptions options = plan.spec.for_matrix(m.tensor, m.bits, m.cols);
        options.svd_options.rank = m.rank;  // the plan's: min(--rank, rows, cols)
        LoftqResult r = run_loftq_sharded(be, group.communicator(), shards, m.tensor, inputs, m.rows, m.cols, options);
        t.quantize = r.times.quantize;
        t.svd = r.times.svd;
        t.comm = r.times.comm;

        t0 = Clock::now();
        for (size_t i = 0; i < inputs.size(); ++i) {
            MatrixRows rows;
            rows.row_begin = inputs[i].row_begin;
            rows.row_end = inputs[i].row_end;
            rows.codes = r.q[i].packed;
            if (r.q[i].double_quant)
                rows.absmax_codes = r.q[i].nested.codes;
            else
                rows.absmax = r.q[i].absmax;
            rows.B = r.B[i];
            parts[1] += run.write_matrix_rows(static_cast<size_t>(m.index), rows);
        }
        if (me == 0)
            parts[1] += run.write_matrix_common(static_cast<size_t>(m.index),
                                                common_record(m, r, t, ranks.front(), static_cast<int>(ranks.size())));
        group.sum(parts, 2);  // also the barrier: every member's rows are written before the mark
        if (me == 0) {
            const uint64_t fingerprint = parts[0] + fingerprint_header(m.tensor, m.dtype, m.rows, m.cols);
            run.write_matrix_identity(static_cast<size_t>(m.index), fingerprint, parts[1]);
            run.mark_complete(static_cast<size_t>(m.index));
            ++completed;
        }
        t.write = since(t0);
        group.close();
        watchdog.beat("after matrix " + m.tensor);
        progress.matrix_done(static_cast<double>((item.row_end - item.row_begin) * m.cols) * 4.0, me == 0,
                             log_record(m, r, t, ranks, item.row_begin, item.row_end).dump());
    }
};

// On --resume, before any work: every complete matrix is checked. One that fails its checksum is
// damaged and redone (its flag cleared here), because the model it came from is at hand and resume
// exists to make the run file whole; one whose model tensor differs is refused, as nothing here can
// tell which of the two models the user meant. The first `checkers` ranks share the matrices (all
// ranks under --io direct; rank 0 alone under --io scatter, where only it may read the model), so
// the check costs one pass over the complete tensors spread over the job. Collective over world.
void check_complete_matrices(MPI_Comm world, int checkers, const std::string& model_dir, const Plan& plan,
                             const RunFile& run, std::vector<bool>& complete) {
    enum : uint8_t { kGood = 0, kDamaged = 1, kOtherModel = 2 };
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(world, &rank));
    std::vector<uint8_t> verdict(plan.matrices.size(), kGood);
    all_or_none(world, [&] {
        if (rank >= checkers) return;
        std::optional<Checkpoint> ck;
        for (const auto& m : plan.matrices) {
            const auto i = static_cast<size_t>(m.index);
            if (!complete[i] || static_cast<int>(i % static_cast<size_t>(checkers)) != rank) continue;
            const MatrixRecord rec = run.read_matrix(i);
            if (record_checksum(rec) != rec.checksum) {
                verdict[i] = kDamaged;
                continue;
            }
            if (!ck) ck.emplace(model_dir);
            if (tensor_fingerprint(*ck, m.tensor) != rec.fingerprint) verdict[i] = kOtherModel;
        }
    });
    if (!verdict.empty())
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, verdict.data(), static_cast<int>(verdict.size()), MPI_UINT8_T,
                                MPI_MAX, world));
    for (const auto& m : plan.matrices) {
        if (verdict[static_cast<size_t>(m.index)] != kOtherModel) continue;
        ConfigError e(cat("run file ", run.path(), " was made from another model: tensor ", m.tensor,
                          " differs from the one in ", model_dir));
        e.set_collective();
        throw e;
    }
    for (const auto& m : plan.matrices) {
        if (verdict[static_cast<size_t>(m.index)] != kDamaged) continue;
        complete[static_cast<size_t>(m.index)] = false;
        if (rank == 0)
            std::printf("[loftq] run file %s: matrix %s fails its checksum; redoing it\n", run.path().c_str(),
                        m.tensor.c_str());
    }
    std::fflush(stdout);
}

}  // namespace

void run_quantize(const std::string& model_dir, const std::string& work_path, const RunSpec& spec,
                  const QuantizeOptions& opt) {
    MPI_Comm world = MPI_COMM_WORLD;
    int rank = 0, size = 1;
    MPI_CHECK(MPI_Comm_rank(world, &rank));
    MPI_CHECK(MPI_Comm_size(world, &size));

    // Rank 0 reads config.json and the tensor index, validates and plans; everyone gets the plan.
    std::string kept_line;  // rank 0: what stays 16-bit, as the clients hold it
    const Plan plan = Plan::from_json(root_computes(world, 0, [&] {
        Checkpoint ck(model_dir);
        const ModelConfig mc = read_model_config(model_dir);
        const TensorCatalogue catalogue = read_catalogue(ck);
        const KeptSummary kept = kept_in_16bit(catalogue);
        if (kept.has_moe()) kept_line = kept.text();
        return build_plan(mc, catalogue, spec).to_json();
    }));
    const bool scatter = opt.io == IoMode::scatter && size > 1;
    const int workers = scatter ? size - 1 : size;
    const int first_worker = scatter ? 1 : 0;
    const Distribution dist = distribute(plan, workers);
    const RunLayout layout = make_run_layout(plan);
    const std::string options = plan.spec.to_json();

    const bool exists = root_computes(world, 0, [&] {
                            return std::string(std::filesystem::exists(work_path) ? "1" : "0");
                        }) == "1";
    // The run file and the log are created later; a folder of theirs that is missing is refused
    // now, on rank 0 for all (collective), so that nothing is created for a job that cannot finish.
    const auto require_folder_of = [&](const std::string& path, const char* setting, const char* what) {
        root_computes(world, 0, [&] {
            const std::filesystem::path parent = std::filesystem::absolute(path).parent_path();
            if (!std::filesystem::is_directory(parent))
                LOFTQ_THROW_SETTING(setting, "folder '", parent.string(), "' of the ", what, " does not exist");
            return std::string();
        });
    };
    if (!exists) require_folder_of(work_path, "work", "run file");
    if (!opt.log_json.empty()) require_folder_of(opt.log_json, "log-json", "log");
    if (exists && !opt.resume) {
        ConfigError e(cat("run file '", work_path, "' exists; add --resume to continue it, or remove it"), "work");
        e.set_collective();
        throw e;
    }
    std::optional<RunFile> run;
    all_or_none(world, [&] {
        run.emplace(exists ? RunFile::open_existing(world, work_path, options, layout)
                           : RunFile::create(world, work_path, options, layout));
    });
    std::vector<bool> complete = run->complete_flags();
    if (exists) check_complete_matrices(world, scatter ? 1 : size, model_dir, plan, *run, complete);

    const auto matrices = static_cast<int64_t>(plan.matrices.size());
    int64_t skipped = 0, expected_records = 0;
    double total_bytes = 0, skipped_bytes = 0;
    for (const auto& m : plan.matrices) {
        const double bytes = static_cast<double>(m.rows * m.cols) * 4.0;
        total_bytes += bytes;
        if (complete[static_cast<size_t>(m.index)]) {
            ++skipped;
            skipped_bytes += bytes;
        } else {
            expected_records +=
                static_cast<int64_t>(dist.matrices[static_cast<size_t>(m.index)].group.size());
        }
    }

    std::unique_ptr<LinalgBackend> be;  // none on a --io scatter reader: it computes nothing
    all_or_none(world, [&] {
        if (!(scatter && rank == 0)) be = rank_backend(opt.device);
    });
    if (rank == 0) {
        int64_t split = 0;
        for (const auto& a : dist.matrices) split += a.shards > 1 ? 1 : 0;
        std::printf(
            "[loftq] quantize %s: %zu matrices (%.3f GB float32), %g-bit %s, r=%d, T=%d, svd %s, "
            "%d rank(s)%s, backend %s, %lld split\n",
            model_dir.c_str(), plan.matrices.size(), total_bytes / 1e9, spec.bits, spec.quant.c_str(),
            spec.loftq.svd_options.rank, spec.loftq.iters, svd_choice_name(spec.loftq.svd), size,
            scatter ? " (rank 0 reads, --io scatter)" : "", be ? be->name().c_str() : "none on rank 0",
            static_cast<long long>(split));
        if (!kept_line.empty())
            std::printf("[loftq] kept in 16-bit, as transformers + bitsandbytes hold them: %s\n", kept_line.c_str());
        int64_t clipped = 0;
        for (const auto& m : plan.matrices) clipped += m.rank < spec.loftq.svd_options.rank ? 1 : 0;
        if (clipped > 0)
            std::printf("[loftq] %lld matrices have a side below r=%d: their rank is min(rows, cols) "
                        "(adapter_config.json rank_pattern)\n", static_cast<long long>(clipped), spec.loftq.svd_options.rank);
        if (exists)
            std::printf("[loftq] resuming %s: %lld of %zu matrices already complete\n", work_path.c_str(),
                        static_cast<long long>(skipped), plan.matrices.size());
        std::fflush(stdout);
    }

    // From here SIGTERM / SIGINT / SIGUSR1 only ask to stop: each rank finishes the matrix it is
    // on, skips the rest, and all agree below; the run file is flushed and closed as usual, so a
    // --resume continues it. main's scope (core/interrupt.hpp) already records a signal from the
    // plan or the run file's creation: the loop then stops before its first matrix.
    InterruptScope interrupts;
    int64_t stopped_ranks = 0, completed_total = 0;
    int stop_signal = 0;
    abort_on_error([&] {
        Watchdog watchdog(opt.watchdog, rank);
        RootHeartbeat heartbeat(world, opt.watchdog);
        ProgressReporter progress(world, matrices, total_bytes, expected_records, skipped,
                                  skipped_bytes, opt.log_json);
        progress.set_root_heartbeat(&heartbeat);
        if (rank == 0) {
            std::vector<int64_t> expected_per_rank(static_cast<size_t>(size), 0);
            for (const auto& m : plan.matrices)
                if (!complete[static_cast<size_t>(m.index)])
                    for (int g : dist.matrices[static_cast<size_t>(m.index)].group)
                        ++expected_per_rank[static_cast<size_t>(g + first_worker)];
            progress.set_watchdog(&watchdog, std::move(expected_per_rank));
        }
        bool stopping = false;
        int64_t completed = 0;
        if (scatter && rank == 0) {
            serve_scatter(world, model_dir, plan, workers, progress);
        } else {
            auto source = scatter ? make_scatter_client(world) : make_direct_source(model_dir);
            Worker worker{plan, dist, layout, *run, *source, *be, progress, rank, first_worker, watchdog};
            for (const WorkItem& item : dist.work[static_cast<size_t>(rank - first_worker)]) {
                if (complete[static_cast<size_t>(item.matrix)]) continue;
                worker.run_item(item, stopping, completed);
                progress.poll();
            }
            source->finish();
        }
        // Every rank reaches this point: did any skip a matrix? A signal that came after a rank's
        // last matrix stops nothing (the job completes). While the others work, rank 0 takes in
        // their records (its watchdog judges the wait and names the rank that is silent); the
        // other ranks' watchdogs rest.
        const int64_t mine[2] = {stopping ? 1 : 0, completed};
        int64_t sums[2] = {0, 0};
        MPI_Request agreed = MPI_REQUEST_NULL;
        MPI_CHECK(MPI_Iallreduce(mine, sums, 2, MPI_INT64_T, MPI_SUM, world, &agreed));
        if (rank == 0) {
            progress.beat_waiting();
            for (int done = 0; !done;) {
                MPI_CHECK(MPI_Test(&agreed, &done, MPI_STATUS_IGNORE));
                if (!done) {
                    progress.poll();
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
            }
        } else if (heartbeat.on()) {
            // Rank 0 judges the others; it is judged here by its heartbeats (root_heartbeat.hpp).
            const char* doing = "waiting for rank 0, which has sent no heartbeat for that long";
            watchdog.beat(doing);
            for (int done = 0; !done;) {
                MPI_CHECK(MPI_Test(&agreed, &done, MPI_STATUS_IGNORE));
                if (!done) {
                    if (heartbeat.take()) watchdog.beat(doing);
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
            }
            watchdog.pause();  // the end (flush, close) is judged by rank 0 as before
        } else {
            watchdog.pause();
            MPI_CHECK(MPI_Wait(&agreed, MPI_STATUS_IGNORE));
        }
        stopped_ranks = sums[0];
        completed_total = sums[1];
        const int my_signal = interrupt_signal();
        MPI_CHECK(MPI_Allreduce(&my_signal, &stop_signal, 1, MPI_INT, MPI_MAX, world));
        progress.finish(stopped_ranks > 0);
        run->flush();
        run->close();
    });
    if (stopped_ranks > 0) {
        // The same text on every rank: main prints it once.
        Error e(cat("interrupted by ", stop_signal ? interrupt_signal_name(stop_signal) : "a stop signal",
                    " after ", skipped + completed_total, " of ", matrices, " matrices; resume with --resume"));
        e.set_collective();
        throw e;
    }
}

}  // namespace loftq
