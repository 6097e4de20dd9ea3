#include "runtime/progress.hpp"
#include "runtime/root_heartbeat.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/interrupt.hpp"

#include <nlohmann/json.hpp>

namespace loftq {
namespace {

constexpr int kTagRecord = 7301;

// Wire format of a record message: 8-byte float64 bytes, 1 byte counts_as_matrix, JSON text.
std::vector<char> pack(double bytes, bool counts, const std::string& record) {
    std::vector<char> buf(9 + record.size());
    std::memcpy(buf.data(), &bytes, 8);
    buf[8] = counts ? 1 : 0;
    std::memcpy(buf.data() + 9, record.data(), record.size());
    return buf;
}

std::string hms(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const long s = static_cast<long>(seconds + 0.5);
    char out[32];
    std::snprintf(out, sizeof out, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    return out;
}

}  // namespace

ProgressReporter::ProgressReporter(MPI_Comm comm, int64_t total_matrices, double total_bytes,
                                   int64_t expected_records, int64_t skipped_matrices, double skipped_bytes,
                                   const std::string& log_json_path, double print_interval_s)
    : comm_(comm),
      total_matrices_(total_matrices),
      total_bytes_(total_bytes),
      expected_records_(expected_records),
      done_matrices_(skipped_matrices),
      done_bytes_(skipped_bytes),
      skipped_bytes_(skipped_bytes),
      print_interval_s_(print_interval_s),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    if (rank_ == 0 && !log_json_path.empty()) {
        try {
            log_.emplace(log_json_path);
        } catch (const Error& e) {
            LOFTQ_THROW(InputError, "per-matrix log: ", e.what());
        }
        remove_on_stop_signal(log_->temp_path().c_str());  // a stopped job commits no log
    }
}

ProgressReporter::~ProgressReporter() {
    // A run that did not reach finish() leaves no log behind under the final name: log_'s
    // destructor removes its temporary.
    if (log_) remove_on_stop_signal(nullptr);
}

std::string ProgressReporter::format_line(int64_t done, int64_t total, double done_bytes, double total_bytes,
                                          double rate) {
    const double eta = rate > 0 ? (total_bytes - done_bytes) / rate : NAN;
    // GB for real models, MB for small ones (a 1 MB model would read 0.00/0.00 GB).
    const bool gb = total_bytes >= 1e9;
    const double unit = gb ? 1e9 : 1e6;
    char line[160];
    std::snprintf(line, sizeof line, "%lld/%lld matrices  %.2f/%.2f %s  %.2f %s/s  ETA %s",
                  static_cast<long long>(done), static_cast<long long>(total), done_bytes / unit,
                  total_bytes / unit, gb ? "GB" : "MB", rate / unit, gb ? "GB" : "MB",
                  done >= total ? "0:00:00" : hms(eta).c_str());
    return line;
}

void ProgressReporter::set_watchdog(Watchdog* watchdog, std::vector<int64_t> expected_per_rank) {
    watchdog_ = watchdog;
    reports_.assign(expected_per_rank.size(), RankReports{});
    for (size_t r = 0; r < reports_.size(); ++r) {
        reports_[r].expected = expected_per_rank[r];
        reports_[r].last = start_;
    }
}

void ProgressReporter::beat_waiting() {
    if (!watchdog_) return;
    int suspect = -1;
    for (size_t r = 0; r < reports_.size(); ++r)
        if (reports_[r].received < reports_[r].expected &&
            (suspect < 0 || reports_[r].last < reports_[static_cast<size_t>(suspect)].last))
            suspect = static_cast<int>(r);
    if (suspect < 0) {
        watchdog_->beat("waiting for the other ranks");
        return;
    }
    const RankReports& s = reports_[static_cast<size_t>(suspect)];
    watchdog_->beat(cat("waiting for rank ", suspect, ", ",
                        s.last_matrix.empty() ? std::string("which has finished no matrix yet")
                                              : "whose last finished matrix is " + s.last_matrix));
}

void ProgressReporter::absorb(int source, double bytes, bool counts_as_matrix, const std::string& record) {
    ++received_records_;
    if (watchdog_ && source >= 0 && static_cast<size_t>(source) < reports_.size()) {
        RankReports& r = reports_[static_cast<size_t>(source)];
        ++r.received;
        r.last = std::chrono::steady_clock::now();
        // The record is our own JSON; its "matrix" names what the rank finished.
        const auto j = nlohmann::json::parse(record, nullptr, false);
        if (j.is_object() && j.contains("matrix") && j["matrix"].is_string()) r.last_matrix = j["matrix"];
        beat_waiting();
    }
    done_bytes_ += bytes;
    if (counts_as_matrix) ++done_matrices_;
    if (!log_) return;
    try {
        log_->write(record + '\n');
    } catch (const Error& e) {
        LOFTQ_THROW(InputError, "per-matrix log: ", e.what());
    }
}

void ProgressReporter::maybe_print(bool force) {
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_print_).count();
    if (!force && since < print_interval_s_) return;
    last_print_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    // The rate counts only the bytes this run processed, not those a resume skipped.
    const double rate_bytes = done_bytes_ - skipped_bytes_;
    const double rate = elapsed > 0 ? rate_bytes / elapsed : 0;
    const std::string line = format_line(done_matrices_, total_matrices_, done_bytes_, total_bytes_, rate);
    std::printf("[loftq] %s\n", line.c_str());
    std::fflush(stdout);
}

void ProgressReporter::matrix_done(double bytes, bool counts_as_matrix, const std::string& record) {
    ++produced_records_;
    if (rank_ == 0) {
        absorb(0, bytes, counts_as_matrix, record);
        maybe_print(false);
        return;
    }
    pending_buffers_.push_back(pack(bytes, counts_as_matrix, record));
    pending_.emplace_back();
    auto& buf = pending_buffers_.back();
    MPI_CHECK(MPI_Isend(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, 0, kTagRecord, comm_,
                        &pending_.back()));
}

void ProgressReporter::poll() {
    if (heartbeat_) {
        if (rank_ == 0) heartbeat_->send();
        else heartbeat_->take();
    }
    if (rank_ != 0) return;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kTagRecord, comm_, &flag, &st));
        if (!flag) break;
        int count = 0;
        MPI_CHECK(MPI_Get_count(&st, MPI_CHAR, &count));
        std::vector<char> buf(static_cast<size_t>(count));
        MPI_CHECK(MPI_Recv(buf.data(), count, MPI_CHAR, st.MPI_SOURCE, kTagRecord, comm_, MPI_STATUS_IGNORE));
        LOFTQ_CHECK(count >= 9, "short progress record from rank ", st.MPI_SOURCE);
        double bytes;
        std::memcpy(&bytes, buf.data(), 8);
        absorb(st.MPI_SOURCE, bytes, buf[8] != 0, std::string(buf.data() + 9, buf.size() - 9));
    }
    maybe_print(false);
}

void ProgressReporter::finish(bool interrupted) {
    if (heartbeat_) heartbeat_->finish();
    if (interrupted) {
        int64_t sent = 0;
        MPI_CHECK(MPI_Allreduce(&produced_records_, &sent, 1, MPI_INT64_T, MPI_SUM, comm_));
        expected_records_ = sent;
    }
    if (rank_ == 0) {
        while (received_records_ < expected_records_) {
            MPI_Status st;
            MPI_CHECK(MPI_Probe(MPI_ANY_SOURCE, kTagRecord, comm_, &st));
            poll();
        }
        maybe_print(true);
        if (log_) remove_on_stop_signal(nullptr);
        if (log_ && !interrupted && interrupt_signal() != 0) {
            // A signal after the last matrix: its handler removed the temporary.
            std::printf("[loftq] per-matrix log not written: stopped by %s\n",
                        interrupt_signal_name(interrupt_signal()));
        } else if (log_ && !interrupted) {
            try {
                log_->commit();
            } catch (const Error& e) {
                LOFTQ_THROW(InputError, "per-matrix log: ", e.what());
            }
        }
    } else if (!pending_.empty()) {
        MPI_CHECK(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE));
        pending_.clear();
        pending_buffers_.clear();
    }
}

}  // namespace loftq
