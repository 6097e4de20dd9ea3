// The HDF5 run file: every result of `loftq quantize`, one group per matrix, resumable.
//
// Design (why it survives SIGKILL and is byte-identical for any rank count):
// - ALL metadata is written once, up front. The plan fixes every dataset's shape before any
//   matrix is computed, so `RunFile::create` has rank 0 build the whole file serially (every
//   group, every dataset at its final shape, contiguous, allocated early, never filled, no
//   object time stamps, earliest file format) under a temporary name beside it (StagedFile,
//   core/atomic_file.hpp), close it, fsync it and rename it to `<path>`; then every rank opens
//   it with the MPI-IO driver. From then on a write touches only raw bytes of preallocated
//   datasets (independent I/O by whichever rank owns the data), so the HDF5 structure never
//   changes again: a process killed at any instant leaves a valid file. The earliest format
//   (superblock v0) has no "open for write" flag to block reopening. We chose parallel HDF5
//   into one file over per-rank files merged later because with no metadata changes after
//   create there is nothing to coordinate, and no merge step to crash.
// - Completion: `/complete` is uint8[n_matrices]; `mark_complete(i)` sets byte i and must be
//   called only after every write of matrix i returned (for a split matrix: after all group
//   members wrote their rows, e.g. after a barrier of the group). Resume redoes any matrix
//   whose byte is 0, overwriting whatever part was written.
// - Deterministic datasets (identical for any rank count, the ones `--resume` and multi-rank
//   tests compare byte for byte): codes, absmax, nested_absmax, nested_offset, A, B,
//   qlora_error, iteration_error, chosen_iteration, loaded_error, fingerprint, checksum, plus
//   /complete. Not deterministic: `timings` and `owners` (which rank did it, how long it took).
// - Identity and integrity: `fingerprint` identifies the model tensor the matrix was made from
//   (io/fingerprint.hpp); `checksum` covers every deterministic dataset of the matrix but itself
//   (record_checksum). Both are written by the group's first member after every member's rows
//   and before the complete flag, so a complete matrix can be checked against the model and
//   against damage. The checksum is a keyed sum over positions (core/hash64.hpp): each shard's
//   writer gets its part back from write_matrix_rows, the parts add up the same for any split.
//
// File layout:
//   /                      attrs: loftq_run_format (int 1), options (JSON text)
//   /complete              uint8 [n_matrices]
//   /matrices/<tensor>     attrs: index, rows, cols, bits, format, blocksize, codes_bytes,
//                                 nblocks, double_quant, rank, iters
//     codes                uint8  [codes_bytes]         packed codes, flattened row-major
//     absmax               f32    [nblocks]  (uint8 [nblocks] with double quant)
//     nested_absmax        f32    [ceil(nblocks/256)]   double quant only
//     nested_offset        f32    scalar                double quant only
//     A                    f32    [rank, cols]          row-major, as the adapter holds it
//     B                    f32    [rows, rank]
//     qlora_error          f64    scalar                error of plain quantization
//     iteration_error      f64    [iters]               error after each LoftQ iteration
//     chosen_iteration     i32    scalar                iteration whose result is stored
//     loaded_error         f64    scalar                error of the stored Q, A, B as loaded
//     timings              f64    [5]                   seconds: read, quantize, svd, comm, write
//     owners               i32    [2]                   first rank, number of ranks
//     fingerprint          u64    scalar                the model tensor's (io/fingerprint.hpp)
//     checksum             u64    scalar                record_checksum of the stored results
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace loftq {

// What one matrix's group holds: built by the caller from the plan.
struct MatrixLayout {
    std::string name;          // tensor name, e.g. "model.layers.0.self_attn.q_proj.weight"
    int64_t rows = 0;
    int64_t cols = 0;
    int bits = 4;
    std::string format;        // "nf4", "fp4", ...
    int64_t blocksize = 64;
    int64_t codes_bytes = 0;   // bytes of packed codes (format dependent)
    int64_t nblocks = 0;       // ceil(rows * cols / blocksize)
    bool double_quant = false;
    int64_t rank = 0;          // LoRA rank r
    int64_t iters = 0;         // LoftQ iterations T
};
using RunLayout = std::vector<MatrixLayout>;

bool operator==(const MatrixLayout& a, const MatrixLayout& b);

// Phases of `MatrixRecord::timings`, in order.
inline constexpr std::array<const char*, 5> kTimingPhases = {"read", "quantize", "svd", "comm",
                                                             "write"};
// Datasets of a matrix group that are identical for any rank count and any interruption.
inline constexpr std::array<const char*, 12> kDeterministicDatasets = {
    "codes", "absmax", "nested_absmax", "nested_offset", "A", "B",
    "qlora_error", "iteration_error", "chosen_iteration", "loaded_error", "fingerprint", "checksum"};

// Everything stored for one matrix. Sizes must match its MatrixLayout exactly:
// codes [codes_bytes]; absmax [nblocks] (f32, empty with double quant) or absmax_codes
// [nblocks] (double quant); nested_absmax [ceil(nblocks/256)] (double quant); A [rank*cols];
// B [rows*rank]; iteration_error [iters].
struct MatrixRecord {
    MatrixLayout layout;  // which matrix, in what form (its group's attributes)
    std::vector<uint8_t> codes;
    std::vector<float> absmax;
    std::vector<uint8_t> absmax_codes;
    std::vector<float> nested_absmax;
    float nested_offset = 0.0f;
    std::vector<float> A;
    std::vector<float> B;
    double qlora_error = 0.0;
    std::vector<double> iteration_error;
    int32_t chosen_iteration = 0;
    double loaded_error = 0.0;  // ||W - Q - s B A|| / ||W|| as transformers + PEFT load it
    std::array<double, 5> timings{};
    int32_t owner_first = 0;
    int32_t owner_count = 1;
    uint64_t fingerprint = 0;  // of the model tensor (io/fingerprint.hpp)
    uint64_t checksum = 0;     // as stored; record_checksum(*this) when intact
};

// The checksum of everything deterministic in a record but `checksum` itself: codes, absmax (or
// absmax codes), nested absmax and offset, A, B, the errors, chosen iteration and fingerprint.
uint64_t record_checksum(const MatrixRecord& record);
// Throws InputError naming the file and the matrix when the record fails its checksum ("run file
// X is damaged: matrix T fails its checksum") or holds a non-finite absmax, nested absmax or
// offset, A, B or error (a file forged with a matching checksum, or a writer that stored NaN).
void check_record_integrity(const MatrixRecord& record, const std::string& path);


// The row-shard part of a split matrix: rows [row_begin, row_end). row_begin * cols must be a
// multiple of blocksize (and give whole code bytes), row_end too unless row_end == rows.
// codes / absmax (or absmax_codes) / B hold exactly that shard's part.
struct MatrixRows {
    int64_t row_begin = 0, row_end = 0;
    std::vector<uint8_t> codes;
    std::vector<float> absmax;
    std::vector<uint8_t> absmax_codes;
    std::vector<float> B;
};

class RunFile {
public:
    // Collective over comm: builds the whole file (see above), replacing any file at path, and
    // opens it for writing on every rank. Temporaries of an earlier creation killed outright
    // (".<name>.tmp-<pid>") are removed first: the caller holds the run file's lock. options_json: a flat JSON object of the options that
    // must match on resume (keys are option names without "--"; leave out whatever may change
    // between a run and its resume without changing results: rank count, --io, --device, paths,
    // --resume itself); stored verbatim, compared as parsed JSON on resume. Throws ConfigError
    // for a bad layout (empty, duplicate or '/'-containing names, inconsistent sizes).
    static RunFile create(MPI_Comm comm, const std::string& path, const std::string& options_json,
                          const RunLayout& layout);
    // Collective over comm: opens an existing run file for `--resume`. Throws InputError naming
    // the file if it is missing, not HDF5, truncated or not a run file; ConfigError naming the
    // file and the first differing setting (setting "rank": "run file X has 64, this run has 32")
    // or matrix layout field.
    static RunFile open_existing(MPI_Comm comm, const std::string& path,
                                 const std::string& options_json, const RunLayout& layout);
    // One process, no MPI needed: read-only open for export / verify / inspect. The layout and
    // options come from the file. Same InputErrors as open_existing.
    static RunFile open_read(const std::string& path);

    RunFile(RunFile&& other) noexcept;
    RunFile& operator=(RunFile&& other) noexcept;
    RunFile(const RunFile&) = delete;
    RunFile& operator=(const RunFile&) = delete;
    ~RunFile();  // closes quietly; call close() to see errors

    void write_matrix(size_t index, const MatrixRecord& record);
    // Independent (one rank): the whole matrix at once, its checksum and record.fingerprint
    // included (call mark_complete after it).
    // Independent: one row shard of a split matrix (each group member writes its own). Returns
    // the shard's part of the checksum.
    uint64_t write_matrix_rows(size_t index, const MatrixRows& rows);
    // Independent: the parts of a split matrix that are not per row (A, nested absmax, errors,
    // timings, owners) from record; its codes / absmax / absmax_codes / B are ignored. Returns
    // their part of the checksum (record.fingerprint is not in it: see write_matrix_identity).
    uint64_t write_matrix_common(size_t index, const MatrixRecord& record);
    // Independent, by one rank after every part above was written: the fingerprint and the
    // checksum, given the sum of the parts returned by write_matrix_rows and write_matrix_common.
    void write_matrix_identity(size_t index, uint64_t fingerprint, uint64_t parts_sum);
    // Independent: matrix `index` is done (call after all its writes returned, see above).
    void mark_complete(size_t index);
    bool is_complete(size_t index) const;         // reads the file now
    std::vector<bool> complete_flags() const;     // all of /complete
    MatrixRecord read_matrix(size_t index) const;  // any rank; checks nothing about /complete

    const RunLayout& layout() const { return layout_; }
    const std::string& options_json() const { return options_; }
    const std::string& path() const { return path_; }
    size_t index_of(const std::string& name) const;  // throws InputError if absent

    // Collective when opened with create/open_existing: every write so far is handed to the
    // file system (H5Fflush -> MPI_File_sync). Not needed for SIGKILL safety (a returned write
    // is in the OS page cache); it guards against losing a node, e.g. before a job's time ends.
    void flush();
    // Collective when opened with create/open_existing: closes every handle and the file.
    void close();

private:
    RunFile() = default;
    void open_handles();
    void release() noexcept;
    hid_t dataset(size_t index, int which) const;
    // Checks sizes, then writes one dataset's rows [row0, row0 + nrows) from data.
    void write_part(size_t index, int which, int64_t row0, int64_t nrows, const void* data,
                    size_t count);
    void read_whole(size_t index, int which, void* data, size_t count) const;
    uint64_t write_shard(size_t index, int64_t row_begin, int64_t row_end, const uint8_t* codes,
                         size_t ncodes, const void* absmax, size_t nabsmax, const float* B, size_t nB);

    std::string path_;
    std::string options_;
    RunLayout layout_;
    hid_t file_ = -1;
    hid_t complete_ = -1;
    std::vector<std::array<hid_t, 14>> datasets_;  // per matrix, order of kDatasetNames
};

// Raw bytes of /matrices/<group>/<dataset> (or /<dataset> when group is empty) as stored, for
// byte-for-byte comparison of run files. One process, no MPI needed.
std::vector<uint8_t> read_dataset_bytes(const std::string& path, const std::string& group,
                                        const std::string& dataset);

}  // namespace loftq
