// The run file's schema: which datasets a matrix group has and their shapes, building a new file
// from a layout (serial, one process), reading the layout back, and the resume checks.
// Internal to io/runfile.cpp; see io/runfile.hpp for the file layout and its guarantees.
#pragma once

#include <hdf5.h>

#include <array>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/runfile.hpp"

namespace loftq::runfile_schema {

enum DatasetId {
    kCodes, kAbsmax, kNestedAbsmax, kNestedOffset, kA, kB,
    kQloraError, kIterationError, kChosenIteration, kLoadedError, kTimings, kOwners,
    kFingerprint, kChecksum, kDatasetCount
};
inline constexpr std::array<const char*, kDatasetCount> kDatasetNames = {
    "codes", "absmax", "nested_absmax", "nested_offset", "A", "B",
    "qlora_error", "iteration_error", "chosen_iteration", "loaded_error", "timings", "owners",
    "fingerprint", "checksum"};

// 2: per-matrix fingerprint and checksum (a version 1 file cannot be verified, so it is refused).
inline constexpr int kFormatVersion = 2;
inline constexpr int64_t kNestedBlocksize = 256;

struct DatasetShape {
    bool present = false;
    hid_t file_type = -1;  // little-endian standard type as stored
    hid_t mem_type = -1;   // native type the API uses
    std::vector<hsize_t> dims;  // empty: scalar
    int64_t elements() const;
};

DatasetShape dataset_shape(const MatrixLayout& m, int which);

// An upper bound of the bytes a run file of `layout` takes once every matrix is written: its
// datasets plus a generous allowance for HDF5 metadata (groups, attributes, object headers).
uint64_t run_file_bytes(const RunLayout& layout);
std::string group_path(const MatrixLayout& m);

// ConfigError naming the matrix and field when a layout cannot be stored.
void validate_layout(const RunLayout& layout);
// Creates the complete file at path (truncating), serially, and closes it.
void build_run_file(const std::string& path, const std::string& options_json,
                    const RunLayout& layout);

// What a failure while reading an existing file's structure says after "is damaged: ": an HDF5
// call's text names our source, not the file, so it becomes "its HDF5 structure cannot be read".
std::string damage_of(const Error& e);

// The layout stored in an open run file, in index order; InputError naming path if damaged.
RunLayout read_layout(hid_t file, const std::string& path);
// ConfigError naming path and the first differing option / layout field.
void compare_options(const std::string& path, const std::string& stored,
                     const std::string& given);
void compare_layout(const std::string& path, const RunLayout& stored, const RunLayout& given);

}  // namespace loftq::runfile_schema
