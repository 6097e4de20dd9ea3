// RunFile: opening (create / resume / read-only) and raw-data writes into the preallocated
// datasets. See io/runfile.hpp for the design and its guarantees.
#include "io/runfile.hpp"

#include <sys/statvfs.h>


#include <cstdio>
#include <filesystem>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/h5_attr.hpp"
#include "io/h5_failure.hpp"
#include "io/runfile_schema.hpp"

namespace loftq {

using namespace runfile_schema;
using h5::Handle;

bool operator==(const MatrixLayout& a, const MatrixLayout& b) {
    return a.name == b.name && a.rows == b.rows && a.cols == b.cols && a.bits == b.bits &&
           a.format == b.format && a.blocksize == b.blocksize && a.codes_bytes == b.codes_bytes &&
           a.nblocks == b.nblocks && a.double_quant == b.double_quant && a.rank == b.rank &&
           a.iters == b.iters;
}

static_assert(kDatasetCount == 14, "RunFile::datasets_ holds one id per dataset of a matrix");

namespace {

// Opens path (MPI-IO when comm != MPI_COMM_NULL, else the default driver, read-only) and turns
// every failure into one InputError naming the file.
hid_t open_file(const std::string& path, MPI_Comm comm, unsigned flags) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        LOFTQ_THROW(InputError, "run file ", path, " does not exist or is not a regular file");
    h5::QuietErrors quiet;
    if (H5Fis_hdf5(path.c_str()) <= 0)
        LOFTQ_THROW(InputError, "run file ", path, " is not an HDF5 file");
    Handle fapl(HDF5_CHECK(H5Pcreate(H5P_FILE_ACCESS)), H5Pclose);
    if (comm != MPI_COMM_NULL) HDF5_CHECK(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL));
    // A reader must not trip over a writer's lock or a file system without flock.
    else HDF5_CHECK(H5Pset_file_locking(fapl, false, true));
    const hid_t file = H5Fopen(path.c_str(), flags, fapl);
    if (file < 0)
        LOFTQ_THROW(InputError, "run file ", path,
                    " cannot be opened: truncated or damaged HDF5 file");
    try {
        const h5::QuietErrors quiet_checks;
        if (!h5::has_attr(file, "loftq_run_format"))
            LOFTQ_THROW(InputError, "run file ", path, " is an HDF5 file but not a loftq run file");
        const int64_t version = h5::read_attr_int(file, "loftq_run_format");
        if (version != kFormatVersion)
            LOFTQ_THROW(InputError, "run file ", path, " has format version ", version,
                        ", this loftq reads ", kFormatVersion);
    } catch (const InputError&) {
        H5Fclose(file);
        throw;
    } catch (const Error& e) {
        H5Fclose(file);
        LOFTQ_THROW(InputError, "run file ", path, " is damaged: ", damage_of(e));
    }
    return file;
}

// An existing run file's structure read by f(): an HDF5 failure or a missing or mistyped
// attribute there is damage, said in one line naming the file (not the HDF5 call).
template <typename F>
void read_structure(const std::string& path, F&& f) {
    const h5::QuietErrors quiet;
    try {
        f();
    } catch (const InputError&) {
        throw;
    } catch (const ConfigError&) {
        throw;
    } catch (const Error& e) {
        LOFTQ_THROW(InputError, "run file ", path, " is damaged: ", damage_of(e));
    }
}

}  // namespace

RunFile::RunFile(RunFile&& o) noexcept { *this = std::move(o); }

RunFile& RunFile::operator=(RunFile&& o) noexcept {
    if (this != &o) {
        release();
        path_ = std::move(o.path_);
        options_ = std::move(o.options_);
        layout_ = std::move(o.layout_);
        datasets_ = std::move(o.datasets_);
        file_ = o.file_;
        complete_ = o.complete_;
        o.file_ = o.complete_ = -1;
        o.datasets_.clear();
    }
    return *this;
}

RunFile::~RunFile() { release(); }

void RunFile::release() noexcept {
    for (auto& ids : datasets_)
        for (hid_t& id : ids)
            if (id >= 0) H5Dclose(id), id = -1;
    datasets_.clear();
    if (complete_ >= 0) H5Dclose(complete_), complete_ = -1;
    if (file_ >= 0) H5Fclose(file_), file_ = -1;
}

void RunFile::close() {
    for (auto& ids : datasets_)
        for (hid_t& id : ids)
            if (id >= 0) HDF5_CHECK(H5Dclose(id)), id = -1;
    datasets_.clear();
    if (complete_ >= 0) HDF5_CHECK(H5Dclose(complete_)), complete_ = -1;
    if (file_ >= 0) {
        const hid_t file = file_;
        file_ = -1;
        RUNFILE_IO_CHECK(H5Fclose(file), path_, "closing");
    }
}

void RunFile::flush() {
    LOFTQ_CHECK(file_ >= 0, "run file ", path_, " is closed");
    RUNFILE_IO_CHECK(H5Fflush(file_, H5F_SCOPE_GLOBAL), path_, "flushing");
}

// Opens every dataset once (the same calls, in the same order, on every rank) and checks its
// size against the layout, so a doctored file cannot make a write run past a dataset.
void RunFile::open_handles() {
    complete_ = HDF5_CHECK(H5Dopen2(file_, "complete", H5P_DEFAULT));
    {
        Handle space(HDF5_CHECK(H5Dget_space(complete_)), H5Sclose);
        if (HDF5_CHECK(H5Sget_simple_extent_npoints(space)) != static_cast<hssize_t>(layout_.size()))
            LOFTQ_THROW(InputError, "run file ", path_, " is damaged: /complete has the wrong size");
    }
    datasets_.assign(layout_.size(), {});
    for (auto& ids : datasets_) ids.fill(-1);
    for (size_t i = 0; i < layout_.size(); ++i) {
        const std::string group = group_path(layout_[i]);
        for (int d = 0; d < kDatasetCount; ++d) {
            const DatasetShape shape = dataset_shape(layout_[i], d);
            if (!shape.present) continue;
            const std::string name = group + "/" + kDatasetNames[d];
            const hid_t id = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
            if (id < 0) LOFTQ_THROW(InputError, "run file ", path_, " is damaged: ", name, " is missing");
            datasets_[i][d] = id;
            Handle space(HDF5_CHECK(H5Dget_space(id)), H5Sclose);
            Handle type(HDF5_CHECK(H5Dget_type(id)), H5Tclose);
            if (HDF5_CHECK(H5Sget_simple_extent_npoints(space)) != shape.elements() ||
                H5Sget_simple_extent_ndims(space) != static_cast<int>(shape.dims.size()) ||
                H5Tget_size(type) != H5Tget_size(shape.file_type))
                LOFTQ_THROW(InputError, "run file ", path_, " is damaged: ", name,
                            " has the wrong shape or type");
        }
    }
}

namespace {

void require_free_space(const std::string& path, uint64_t needed) {
    const std::string folder = std::filesystem::absolute(path).parent_path().string();
    struct statvfs fs {};
    if (::statvfs(folder.c_str(), &fs) != 0) return;  // nothing known: let the writes tell
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes < needed)
        LOFTQ_THROW(InputError, "it needs about ", (needed + 999999) / 1000000, " MB and its file system has ",
                    free_bytes / 1000000, " MB free (No space left on device)");
}

}  // namespace

RunFile RunFile::create(MPI_Comm comm, const std::string& path, const std::string& options_json,
                        const RunLayout& layout) {
    validate_layout(layout);  // same verdict on every rank, no communication needed
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    std::string failure;
    if (rank == 0) {
        try {
            // Refuse up front what the file system cannot hold: the datasets are allocated when
            // the file is built but written sparsely later, and HDF5 fails on a full disk with
            // a call text and an unusable library state (a file it can neither close nor forget).
            // A creation killed outright left its temporary (nothing else removes it): the
            // caller holds the run file's lock, so no other job is creating this file now.
            remove_abandoned_temporaries(path);
            require_free_space(path, run_file_bytes(layout));
            // HDF5 creates the file by name: build it under the temporary, then rename it whole,
            // so a killed job never leaves a run file without its layout.
            StagedFile staged(path);
            build_run_file(staged.temp_path(), options_json, layout);
            staged.commit();
        } catch (const std::exception& e) {
            failure = e.what();
            if (failure.empty()) failure = "unknown error";
        }
    }
    int len = static_cast<int>(failure.size());
    MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, 0, comm));
    failure.resize(static_cast<size_t>(len));
    if (len > 0) MPI_CHECK(MPI_Bcast(failure.data(), len, MPI_CHAR, 0, comm));
    if (len > 0) LOFTQ_THROW(BackendError, "creating run file ", path, ": ", failure);

    RunFile f;
    f.path_ = path;
    f.options_ = options_json;
    f.layout_ = layout;
    f.file_ = open_file(path, comm, H5F_ACC_RDWR);
    f.open_handles();
    return f;
}

RunFile RunFile::open_existing(MPI_Comm comm, const std::string& path,
                               const std::string& options_json, const RunLayout& layout) {
    RunFile f;
    f.path_ = path;
    f.file_ = open_file(path, comm, H5F_ACC_RDWR);
    read_structure(path, [&] {
        f.options_ = h5::read_attr_string(f.file_, "options");
        f.layout_ = read_layout(f.file_, path);
    });
    compare_options(path, f.options_, options_json);
    compare_layout(path, f.layout_, layout);
    read_structure(path, [&] { f.open_handles(); });
    return f;
}

RunFile RunFile::open_read(const std::string& path) {
    RunFile f;
    f.path_ = path;
    f.file_ = open_file(path, MPI_COMM_NULL, H5F_ACC_RDONLY);
    read_structure(path, [&] {
        f.options_ = h5::read_attr_string(f.file_, "options");
        f.layout_ = read_layout(f.file_, path);
        f.open_handles();
    });
    return f;
}

size_t RunFile::index_of(const std::string& name) const {
    for (size_t i = 0; i < layout_.size(); ++i)
        if (layout_[i].name == name) return i;
    LOFTQ_THROW(InputError, "run file ", path_, " has no matrix '", name, "'");
}

hid_t RunFile::dataset(size_t index, int which) const {
    LOFTQ_CHECK(file_ >= 0, "run file ", path_, " is closed");
    LOFTQ_CHECK(index < layout_.size(), "matrix index ", index, " of ", layout_.size());
    const hid_t id = datasets_[index][which];
    LOFTQ_CHECK(id >= 0, "matrix '", layout_[index].name, "' has no dataset ", kDatasetNames[which]);
    return id;
}

}  // namespace loftq
