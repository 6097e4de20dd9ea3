// Progress and per-matrix logs of a quantize run, aggregated on rank 0 (STYLE.md 18).
//
// Every rank reports each finished matrix as one JSON record (a line of --log-json) through
// `ProgressReporter::matrix_done`. Rank 0 receives the other ranks' records with non-blocking
// probes whenever it calls `poll` (between its own matrices) and `finish` (at the end, blocking
// until every expected record has arrived), prints one progress line at most every
// `print_interval_s` seconds (matrices done/total, GB processed, rate, ETA) and appends the records
// to the JSON-lines log. Other ranks only send: they never print progress.
//
// --log-json FILE: one JSON object per line, one per matrix (per row shard for a split matrix),
// built in runtime/quantize_job.cpp; exactly the keys matrix, index (in the plan), rank (that
// wrote it), group (ranks of the matrix), rows, cols, row_begin, row_end, bits, format, svd,
// backend, bytes (float32 bytes of the rows it covers), times {read, quantize, svd, comm, write,
// total} (seconds), qlora_error, errors (per iteration), chosen_iteration, loaded_error
// (bench/*.py read them; tests/test_log_json.cpp checks them). Written to FILE.tmp and renamed at
// finish(): FILE exists only after a complete run.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/atomic_file.hpp"
#include "runtime/watchdog.hpp"

namespace loftq {

class RootHeartbeat;

class ProgressReporter {
public:
    // total_matrices / total_bytes: the whole plan (float32 bytes of all matrices);
    // expected_records: how many records rank 0 must receive in all (including its own).
    // skipped_*: matrices already complete (resume) count as done from the start.
    ProgressReporter(MPI_Comm comm, int64_t total_matrices, double total_bytes, int64_t expected_records,
                     int64_t skipped_matrices, double skipped_bytes, const std::string& log_json_path,
                     double print_interval_s = 2.0);
    ~ProgressReporter();
    ProgressReporter(const ProgressReporter&) = delete;
    ProgressReporter& operator=(const ProgressReporter&) = delete;

    // A matrix (or this rank's shard of a split matrix: `counts_as_matrix` false for all but the
    // group leader) finished: `bytes` of float32 input processed, `record` one JSON object.
    void matrix_done(double bytes, bool counts_as_matrix, const std::string& record);
    // Rank 0: take in what arrived, maybe print. Other ranks: complete finished sends.
    void poll();
    // Collective over comm: rank 0 waits for every record, prints the final line and commits the
    // log. `interrupted`: ranks skipped matrices, so rank 0 waits for the records that were sent
    // (counted over comm), not those expected, and the log is not committed.
    void finish(bool interrupted = false);

    // Rank 0: records received count as its progress for the watchdog, which then names the rank
    // rank 0 waits for: of those with records outstanding (expected_per_rank[r], by world rank),
    // the one silent longest, with the matrix of its last record.
    void set_watchdog(Watchdog* watchdog, std::vector<int64_t> expected_per_rank);
    // Rank 0: restart the watchdog, naming the rank it now waits for (see set_watchdog).
    void beat_waiting();
    // Every rank, with --watchdog: poll() sends rank 0's heartbeats (rank 0) or takes them in
    // (the others, between their matrices); finish() ends them (runtime/root_heartbeat.hpp).
    void set_root_heartbeat(RootHeartbeat* heartbeat) { heartbeat_ = heartbeat; }

    // "12/35 matrices  0.42/1.04 GB  3.10 GB/s  ETA 0:00:12" (exposed for tests).
    // rate: bytes per second of this run (0 = unknown).
    static std::string format_line(int64_t done, int64_t total, double done_bytes, double total_bytes,
                                   double rate);

private:
    void absorb(int source, double bytes, bool counts_as_matrix, const std::string& record);
    void maybe_print(bool force);

    MPI_Comm comm_;
    int rank_ = 0;
    int64_t total_matrices_;
    double total_bytes_;
    int64_t expected_records_;
    int64_t received_records_ = 0;
    int64_t produced_records_ = 0;  // matrix_done calls on this rank
    Watchdog* watchdog_ = nullptr;
    RootHeartbeat* heartbeat_ = nullptr;
    struct RankReports {
        int64_t expected = 0, received = 0;
        std::chrono::steady_clock::time_point last;
        std::string last_matrix;  // of its last record; empty: none yet
    };
    std::vector<RankReports> reports_;  // by world rank, with a watchdog
    int64_t done_matrices_;
    double done_bytes_;
    double skipped_bytes_;
    double print_interval_s_;
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point last_print_;
    std::optional<AtomicFileWriter> log_;  // rank 0 with --log-json: lines go out as they come
    std::vector<MPI_Request> pending_;
    std::vector<std::vector<char>> pending_buffers_;
};

}  // namespace loftq
