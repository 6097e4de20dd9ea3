// RunFile's raw-data side: writes into the preallocated datasets (independent I/O, never any
// metadata change), the completion flags, and reading a matrix back.
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/hash64.hpp"
#include "io/h5_attr.hpp"
#include "io/h5_failure.hpp"
#include "io/runfile.hpp"
#include "io/runfile_schema.hpp"

namespace loftq {

using namespace runfile_schema;
using h5::Handle;

namespace {

// Elements per "row" of a dataset: 1 for 1-D, the trailing extent for 2-D, all for scalars.
int64_t row_elements(const DatasetShape& shape) {
    int64_t n = 1;
    for (size_t d = 1; d < shape.dims.size(); ++d) n *= static_cast<int64_t>(shape.dims[d]);
    return n;
}

// Reads all of dataset ds; a failure is damage (or the OS's reason, e.g. an I/O error), one
// InputError naming the file and `what`.
void read_or_damaged(const std::string& path, hid_t ds, hid_t mem_type, void* data, const std::string& what) {
    const h5::QuietErrors quiet;
    errno = 0;
    if (H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        const int err = errno;
        LOFTQ_THROW(InputError, "run file ", path, " is damaged: ", what, " cannot be read (",
                    h5::failure_reason(path, err), ")");
    }
}

// The checksum's salts: one per dataset, so equal bytes in two datasets count differently.
uint64_t salt(int which) { return splitmix64(0x52554e46494c4521ull + static_cast<uint64_t>(which)); }

// Parts of the checksum that rows [first, first + n) of a per-element dataset contribute: every
// element keyed by its position in the whole dataset, so any split into shards adds up the same.
// Keyed sums add modulo 2^64, in any order: threads give the same value (two hashes per element,
// a compute-bound loop: one thread took ~25 ms for the codes of a 5504 x 2048 matrix).
uint64_t keyed_bytes(int which, int64_t first, const uint8_t* v, size_t n) {
    uint64_t sum = 0;
    const uint64_t s = salt(which);
    const auto len = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) reduction(+ : sum) if (len >= kParallelMinElements)
    for (int64_t i = 0; i < len; ++i) sum += keyed(s, static_cast<uint64_t>(first + i), v[i]);
    return sum;
}

uint64_t keyed_floats(int which, int64_t first, const float* v, size_t n) {
    uint64_t sum = 0;
    const uint64_t s = salt(which);
    const auto len = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) reduction(+ : sum) if (len >= kParallelMinElements)
    for (int64_t i = 0; i < len; ++i) {
        uint32_t bits;
        std::memcpy(&bits, v + i, 4);
        sum += keyed(s, static_cast<uint64_t>(first + i), bits);
    }
    return sum;
}

// A dataset written whole by one rank: one hash of all its bytes.
template <typename T>
uint64_t whole(int which, const T* v, size_t n) {
    return keyed(salt(which), 0, hash_bytes(v, n * sizeof(T), salt(which)));
}

uint64_t common_checksum(const MatrixLayout& m, const MatrixRecord& r) {
    uint64_t sum = whole(kA, r.A.data(), r.A.size());
    if (m.double_quant) {
        sum += whole(kNestedAbsmax, r.nested_absmax.data(), r.nested_absmax.size());
        sum += whole(kNestedOffset, &r.nested_offset, 1);
    }
    sum += whole(kQloraError, &r.qlora_error, 1);
    sum += whole(kLoadedError, &r.loaded_error, 1);
    sum += whole(kIterationError, r.iteration_error.data(), r.iteration_error.size());
    sum += whole(kChosenIteration, &r.chosen_iteration, 1);
    return sum;
}

uint64_t fingerprint_term(uint64_t fingerprint) { return keyed(salt(kFingerprint), 0, fingerprint); }

// Where rows [row, rows) start in the codes (bytes) and absmax (blocks) of a matrix.
void row_boundary(const MatrixLayout& m, int64_t row, int64_t* byte, int64_t* block) {
    if (row == m.rows) {
        *byte = m.codes_bytes;
        *block = m.nblocks;
        return;
    }
    const int64_t e = row * m.cols;
    LOFTQ_CHECK(e % m.blocksize == 0 && (e * m.bits) % 8 == 0, "matrix '", m.name, "': row ", row,
                " is not on a block boundary");
    *byte = e * m.bits / 8;
    *block = e / m.blocksize;
}

}  // namespace

uint64_t record_checksum(const MatrixRecord& r) {
    const MatrixLayout& m = r.layout;
    uint64_t sum = keyed_bytes(kCodes, 0, r.codes.data(), r.codes.size());
    if (m.double_quant)
        sum += keyed_bytes(kAbsmax, 0, r.absmax_codes.data(), r.absmax_codes.size());
    else
        sum += keyed_floats(kAbsmax, 0, r.absmax.data(), r.absmax.size());
    sum += keyed_floats(kB, 0, r.B.data(), r.B.size());
    return sum + common_checksum(m, r) + fingerprint_term(r.fingerprint);
}

void check_record_integrity(const MatrixRecord& r, const std::string& path) {
    const MatrixLayout& m = r.layout;
    if (record_checksum(r) != r.checksum)
        LOFTQ_THROW(InputError, "run file ", path, " is damaged: matrix ", m.name, " fails its checksum");
    const auto finite = [&](const char* what, const auto* values, size_t n) {
        for (size_t i = 0; i < n; ++i)
            if (!std::isfinite(values[i]))
                LOFTQ_THROW(InputError, "run file ", path, ": matrix ", m.name, " holds a non-finite ", what, " (",
                            values[i], " at element ", i, ")");
    };
    finite("absmax", r.absmax.data(), r.absmax.size());
    finite("nested absmax", r.nested_absmax.data(), r.nested_absmax.size());
    finite("nested offset", &r.nested_offset, 1);
    finite("value in A", r.A.data(), r.A.size());
    finite("value in B", r.B.data(), r.B.size());
    finite("QLoRA error", &r.qlora_error, 1);
    finite("loaded error", &r.loaded_error, 1);
    finite("iteration error", r.iteration_error.data(), r.iteration_error.size());
}

void RunFile::write_part(size_t index, int which, int64_t row0, int64_t nrows, const void* data,
                         size_t count) {
    const hid_t ds = dataset(index, which);
    const DatasetShape shape = dataset_shape(layout_[index], which);
    const int64_t rows = shape.dims.empty() ? 1 : static_cast<int64_t>(shape.dims[0]);
    const int64_t expected = nrows * row_elements(shape);
    LOFTQ_CHECK(row0 >= 0 && nrows >= 0 && row0 + nrows <= rows && count == size_t(expected),
                "matrix '", layout_[index].name, "' ", kDatasetNames[which], ": got ", count,
                " values for rows [", row0, ", ", row0 + nrows, ") of ", rows, ", expected ",
                expected);
    if (expected == 0) return;
    const auto what = [&] { return cat("writing ", kDatasetNames[which], " of matrix ", layout_[index].name); };
    if (shape.dims.empty()) {
        RUNFILE_IO_CHECK(H5Dwrite(ds, shape.mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path_, what());
        return;
    }
    Handle fspace(HDF5_CHECK(H5Dget_space(ds)), H5Sclose);
    std::vector<hsize_t> start(shape.dims.size(), 0), extent = shape.dims;
    start[0] = static_cast<hsize_t>(row0);
    extent[0] = static_cast<hsize_t>(nrows);
    HDF5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, extent.data(),
                                   nullptr));
    const hsize_t n = static_cast<hsize_t>(expected);
    Handle mspace(HDF5_CHECK(H5Screate_simple(1, &n, nullptr)), H5Sclose);
    RUNFILE_IO_CHECK(H5Dwrite(ds, shape.mem_type, mspace, fspace, H5P_DEFAULT, data), path_, what());
}

void RunFile::read_whole(size_t index, int which, void* data, size_t count) const {
    const hid_t ds = dataset(index, which);
    const DatasetShape shape = dataset_shape(layout_[index], which);
    LOFTQ_CHECK(count == size_t(shape.elements()), "read buffer size");
    if (count == 0) return;
    read_or_damaged(path_, ds, shape.mem_type, data, cat(kDatasetNames[which], " of matrix ", layout_[index].name));
}

uint64_t RunFile::write_shard(size_t index, int64_t row_begin, int64_t row_end, const uint8_t* codes,
                              size_t ncodes, const void* absmax, size_t nabsmax, const float* B,
                              size_t nB) {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const MatrixLayout& m = layout_[index];
    LOFTQ_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= m.rows, "matrix '", m.name,
                "': rows [", row_begin, ", ", row_end, ") outside [0, ", m.rows, ")");
    // Shard boundaries must fall on block and byte boundaries (true by construction of the
    // row split); the last shard takes the tail, which may be a partial block.
    int64_t byte0, block0, byte1, block1;
    row_boundary(m, row_begin, &byte0, &block0);
    row_boundary(m, row_end, &byte1, &block1);
    write_part(index, kCodes, byte0, byte1 - byte0, codes, ncodes);
    write_part(index, kAbsmax, block0, block1 - block0, absmax, nabsmax);
    write_part(index, kB, row_begin, row_end - row_begin, B, nB);
    // Computed from what was just written, by position in the whole matrix (see runfile.hpp).
    uint64_t sum = keyed_bytes(kCodes, byte0, codes, ncodes);
    sum += m.double_quant ? keyed_bytes(kAbsmax, block0, static_cast<const uint8_t*>(absmax), nabsmax)
                          : keyed_floats(kAbsmax, block0, static_cast<const float*>(absmax), nabsmax);
    return sum + keyed_floats(kB, row_begin * m.rank, B, nB);
}

uint64_t RunFile::write_matrix_rows(size_t index, const MatrixRows& r) {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const bool dq = layout_[index].double_quant;
    LOFTQ_CHECK(dq ? r.absmax.empty() : r.absmax_codes.empty(), "matrix '", layout_[index].name,
                "': absmax and absmax_codes given for the wrong double-quant setting");
    const void* absmax = dq ? static_cast<const void*>(r.absmax_codes.data()) : r.absmax.data();
    return write_shard(index, r.row_begin, r.row_end, r.codes.data(), r.codes.size(), absmax,
                       dq ? r.absmax_codes.size() : r.absmax.size(), r.B.data(), r.B.size());
}

uint64_t RunFile::write_matrix_common(size_t index, const MatrixRecord& r) {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const MatrixLayout& m = layout_[index];
    LOFTQ_CHECK(r.layout.name == m.name, "record '", r.layout.name, "' written to matrix '", m.name, "'");
    write_part(index, kA, 0, m.rank, r.A.data(), r.A.size());
    if (m.double_quant) {
        const int64_t nested = (m.nblocks + kNestedBlocksize - 1) / kNestedBlocksize;
        write_part(index, kNestedAbsmax, 0, nested, r.nested_absmax.data(), r.nested_absmax.size());
        write_part(index, kNestedOffset, 0, 1, &r.nested_offset, 1);
    } else {
        LOFTQ_CHECK(r.nested_absmax.empty(), "matrix '", m.name, "': nested_absmax without double quant");
    }
    write_part(index, kQloraError, 0, 1, &r.qlora_error, 1);
    write_part(index, kLoadedError, 0, 1, &r.loaded_error, 1);
    write_part(index, kIterationError, 0, m.iters, r.iteration_error.data(),
               r.iteration_error.size());
    write_part(index, kChosenIteration, 0, 1, &r.chosen_iteration, 1);
    write_part(index, kTimings, 0, r.timings.size(), r.timings.data(), r.timings.size());
    const int32_t owners[2] = {r.owner_first, r.owner_count};
    write_part(index, kOwners, 0, 2, owners, 2);
    return common_checksum(m, r);
}

void RunFile::write_matrix_identity(size_t index, uint64_t fingerprint, uint64_t parts_sum) {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const uint64_t checksum = parts_sum + fingerprint_term(fingerprint);
    write_part(index, kFingerprint, 0, 1, &fingerprint, 1);
    write_part(index, kChecksum, 0, 1, &checksum, 1);
}

void RunFile::write_matrix(size_t index, const MatrixRecord& r) {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const MatrixLayout& m = layout_[index];
    LOFTQ_CHECK(r.layout == m, "record '", r.layout.name, "' does not match the layout of matrix '", m.name, "'");
    const bool dq = m.double_quant;
    LOFTQ_CHECK(dq ? r.absmax.empty() : r.absmax_codes.empty(), "matrix '", m.name,
                "': absmax and absmax_codes given for the wrong double-quant setting");
    const void* absmax = dq ? static_cast<const void*>(r.absmax_codes.data()) : r.absmax.data();
    uint64_t sum = write_shard(index, 0, m.rows, r.codes.data(), r.codes.size(), absmax,
                               dq ? r.absmax_codes.size() : r.absmax.size(), r.B.data(), r.B.size());
    sum += write_matrix_common(index, r);
    write_matrix_identity(index, r.fingerprint, sum);
}

void RunFile::mark_complete(size_t index) {
    LOFTQ_CHECK(file_ >= 0 && index < layout_.size(), "matrix index ", index);
    Handle fspace(HDF5_CHECK(H5Dget_space(complete_)), H5Sclose);
    const hsize_t start = index, one = 1;
    HDF5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &one, nullptr));
    Handle mspace(HDF5_CHECK(H5Screate_simple(1, &one, nullptr)), H5Sclose);
    const uint8_t done = 1;
    RUNFILE_IO_CHECK(H5Dwrite(complete_, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, &done), path_,
                     "writing the complete flag of matrix ", layout_[index].name);
}

std::vector<bool> RunFile::complete_flags() const {
    LOFTQ_CHECK(file_ >= 0, "run file ", path_, " is closed");
    std::vector<uint8_t> raw(layout_.size(), 0);
    if (!raw.empty())
        read_or_damaged(path_, complete_, H5T_NATIVE_UINT8, raw.data(), "/complete");
    return std::vector<bool>(raw.begin(), raw.end());
}

bool RunFile::is_complete(size_t index) const {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    return complete_flags()[index];
}

MatrixRecord RunFile::read_matrix(size_t index) const {
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const MatrixLayout& m = layout_[index];
    MatrixRecord r;
    r.layout = m;
    r.codes.resize(m.codes_bytes);
    read_whole(index, kCodes, r.codes.data(), r.codes.size());
    if (m.double_quant) {
        r.absmax_codes.resize(m.nblocks);
        read_whole(index, kAbsmax, r.absmax_codes.data(), r.absmax_codes.size());
        r.nested_absmax.resize((m.nblocks + kNestedBlocksize - 1) / kNestedBlocksize);
        read_whole(index, kNestedAbsmax, r.nested_absmax.data(), r.nested_absmax.size());
        read_whole(index, kNestedOffset, &r.nested_offset, 1);
    } else {
        r.absmax.resize(m.nblocks);
        read_whole(index, kAbsmax, r.absmax.data(), r.absmax.size());
    }
    r.A.resize(m.rank * m.cols);
    read_whole(index, kA, r.A.data(), r.A.size());
    r.B.resize(m.rows * m.rank);
    read_whole(index, kB, r.B.data(), r.B.size());
    read_whole(index, kQloraError, &r.qlora_error, 1);
    read_whole(index, kLoadedError, &r.loaded_error, 1);
    r.iteration_error.resize(m.iters);
    read_whole(index, kIterationError, r.iteration_error.data(), r.iteration_error.size());
    read_whole(index, kChosenIteration, &r.chosen_iteration, 1);
    read_whole(index, kTimings, r.timings.data(), r.timings.size());
    int32_t owners[2] = {0, 0};
    read_whole(index, kOwners, owners, 2);
    r.owner_first = owners[0];
    r.owner_count = owners[1];
    read_whole(index, kFingerprint, &r.fingerprint, 1);
    read_whole(index, kChecksum, &r.checksum, 1);
    return r;
}

std::vector<uint8_t> read_dataset_bytes(const std::string& path, const std::string& group,
                                        const std::string& dataset) {
    const std::string name = group.empty() ? "/" + dataset : "/matrices/" + group + "/" + dataset;
    h5::QuietErrors quiet;
    Handle fapl(HDF5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
    HDF5_CHECK(H5Pset_file_locking(fapl, false, true));
    const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
    if (fid < 0) LOFTQ_THROW(InputError, "run file ", path, " cannot be opened");
    Handle file(fid, H5Fclose);
    const hid_t did = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
    if (did < 0) LOFTQ_THROW(InputError, "run file ", path, " has no dataset ", name);
    Handle ds(did, H5Dclose);
    Handle type(HDF5_CHECK(H5Dget_type(ds)), H5Tclose);
    Handle space(HDF5_CHECK(H5Dget_space(ds)), H5Sclose);
    const hssize_t n = HDF5_CHECK(H5Sget_simple_extent_npoints(space));
    std::vector<uint8_t> bytes(static_cast<size_t>(n) * H5Tget_size(type));
    if (!bytes.empty())
        HDF5_CHECK(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()));
    return bytes;
}

}  // namespace loftq
