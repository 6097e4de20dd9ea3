// Building a run file from its layout, reading the layout back, and the `--resume` checks.
// Every object is created here, once: contiguous datasets allocated at creation and never
// filled (the file stays sparse until data arrives), no object time stamps (the same plan gives
// the same metadata bytes), earliest file format (no open-for-write flag after a crash).
#include "io/runfile_schema.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "core/error.hpp"
#include "io/h5_attr.hpp"
#include "io/json_strict.hpp"

namespace loftq::runfile_schema {

using h5::Handle;

int64_t DatasetShape::elements() const {
    int64_t n = 1;
    for (hsize_t d : dims) n *= static_cast<int64_t>(d);
    return n;
}

DatasetShape dataset_shape(const MatrixLayout& m, int which) {
    auto make = [](hid_t file_type, hid_t mem_type, std::vector<hsize_t> dims) {
        return DatasetShape{true, file_type, mem_type, std::move(dims)};
    };
    const auto u = [](int64_t v) { return static_cast<hsize_t>(v); };
    switch (which) {
        case kCodes: return make(H5T_STD_U8LE, H5T_NATIVE_UINT8, {u(m.codes_bytes)});
        case kAbsmax:
            return m.double_quant ? make(H5T_STD_U8LE, H5T_NATIVE_UINT8, {u(m.nblocks)})
                                  : make(H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {u(m.nblocks)});
        case kNestedAbsmax:
            if (!m.double_quant) return DatasetShape{};
            return make(H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                        {u((m.nblocks + kNestedBlocksize - 1) / kNestedBlocksize)});
        case kNestedOffset:
            if (!m.double_quant) return DatasetShape{};
            return make(H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {});
        case kA: return make(H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {u(m.rank), u(m.cols)});
        case kB: return make(H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {u(m.rows), u(m.rank)});
        case kQloraError: return make(H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {});
        case kIterationError: return make(H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {u(m.iters)});
        case kLoadedError: return make(H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {});
        case kChosenIteration: return make(H5T_STD_I32LE, H5T_NATIVE_INT32, {});
        case kTimings:
            return make(H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {u(kTimingPhases.size())});
        case kOwners: return make(H5T_STD_I32LE, H5T_NATIVE_INT32, {2});
        case kFingerprint: return make(H5T_STD_U64LE, H5T_NATIVE_UINT64, {});
        case kChecksum: return make(H5T_STD_U64LE, H5T_NATIVE_UINT64, {});
        default: LOFTQ_THROW(Error, "run file: unknown dataset id ", which);
    }
}

std::string group_path(const MatrixLayout& m) { return "/matrices/" + m.name; }

void validate_layout(const RunLayout& layout) {
    std::set<std::string> names;
    for (const auto& m : layout) {
        const auto bad = [&](const char* what) {
            LOFTQ_THROW(ConfigError, "run file layout: matrix '", printable(m.name), "': ", what);
        };
        if (m.name.empty() || m.name == "." || m.name.find('/') != std::string::npos || printable(m.name) != m.name)
            bad("the name must be non-empty, not '.', and contain no '/' and no control character");
        if (!names.insert(m.name).second) bad("appears twice");
        if (m.rows <= 0 || m.cols <= 0) bad("rows and cols must be positive");
        if (m.blocksize <= 0) bad("blocksize must be positive");
        if (m.bits <= 0 || m.bits > 8) bad("bits must be 1..8");
        if (m.rows > (int64_t{1} << 40) / m.cols) bad("too many elements");
        const int64_t n = m.rows * m.cols;
        if (m.nblocks != (n + m.blocksize - 1) / m.blocksize) bad("nblocks != ceil(rows*cols/blocksize)");
        if (m.codes_bytes < (n * m.bits + 7) / 8) bad("codes_bytes too small for rows*cols*bits");
        if (m.codes_bytes > n * 4) bad("codes_bytes larger than 4 bytes per element");
        if (m.rank < 0 || m.iters < 0) bad("rank and iters must not be negative");
        if (m.rank > m.rows || m.rank > m.cols) bad("rank exceeds rows or cols");
    }
}

namespace {

void create_dataset(hid_t group, const char* name, const DatasetShape& shape, hid_t dcpl) {
    Handle space(shape.dims.empty()
                     ? HDF5_CHECK(H5Screate(H5S_SCALAR))
                     : HDF5_CHECK(H5Screate_simple(static_cast<int>(shape.dims.size()),
                                                   shape.dims.data(), nullptr)),
                 H5Sclose);
    Handle ds(HDF5_CHECK(H5Dcreate2(group, name, shape.file_type, space, H5P_DEFAULT, dcpl,
                                    H5P_DEFAULT)),
              H5Dclose);
}

}  // namespace

uint64_t run_file_bytes(const RunLayout& layout) {
    uint64_t bytes = 64 * 1024 + layout.size();  // superblock, root group, /complete
    for (const MatrixLayout& m : layout) {
        bytes += 16 * 1024;  // group, attributes and object headers of its datasets
        for (int d = 0; d < kDatasetCount; ++d) {
            const DatasetShape shape = dataset_shape(m, d);
            if (shape.present)
                bytes += static_cast<uint64_t>(shape.elements()) * H5Tget_size(shape.file_type);
        }
    }
    return bytes;
}

void build_run_file(const std::string& path, const std::string& options_json,
                    const RunLayout& layout) {
    Handle file(HDF5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)),
                H5Fclose);
    Handle gcpl(HDF5_CHECK(H5Pcreate(H5P_GROUP_CREATE)), H5Pclose);
    HDF5_CHECK(H5Pset_obj_track_times(gcpl, false));
    Handle dcpl(HDF5_CHECK(H5Pcreate(H5P_DATASET_CREATE)), H5Pclose);
    HDF5_CHECK(H5Pset_obj_track_times(dcpl, false));
    HDF5_CHECK(H5Pset_layout(dcpl, H5D_CONTIGUOUS));
    HDF5_CHECK(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY));
    HDF5_CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));

    h5::write_attr(file, "loftq_run_format", int64_t{kFormatVersion});
    h5::write_attr(file, "options", options_json);
    {
        const hsize_t n = layout.size();
        Handle space(HDF5_CHECK(H5Screate_simple(1, &n, nullptr)), H5Sclose);
        Handle complete(HDF5_CHECK(H5Dcreate2(file, "complete", H5T_STD_U8LE, space,
                                              H5P_DEFAULT, dcpl, H5P_DEFAULT)),
                        H5Dclose);
        const std::vector<uint8_t> zeros(layout.size(), 0);
        if (n > 0)
            HDF5_CHECK(H5Dwrite(complete, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                zeros.data()));
    }
    Handle matrices(HDF5_CHECK(H5Gcreate2(file, "matrices", H5P_DEFAULT, gcpl, H5P_DEFAULT)),
                    H5Gclose);
    for (size_t i = 0; i < layout.size(); ++i) {
        const MatrixLayout& m = layout[i];
        Handle g(HDF5_CHECK(H5Gcreate2(matrices, m.name.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT)),
                 H5Gclose);
        h5::write_attr(g, "index", static_cast<int64_t>(i));
        h5::write_attr(g, "rows", m.rows);
        h5::write_attr(g, "cols", m.cols);
        h5::write_attr(g, "bits", static_cast<int64_t>(m.bits));
        h5::write_attr(g, "format", m.format);
        h5::write_attr(g, "blocksize", m.blocksize);
        h5::write_attr(g, "codes_bytes", m.codes_bytes);
        h5::write_attr(g, "nblocks", m.nblocks);
        h5::write_attr(g, "double_quant", static_cast<int64_t>(m.double_quant));
        h5::write_attr(g, "rank", m.rank);
        h5::write_attr(g, "iters", m.iters);
        for (int d = 0; d < kDatasetCount; ++d) {
            const DatasetShape shape = dataset_shape(m, d);
            if (shape.present) create_dataset(g, kDatasetNames[d], shape, dcpl);
        }
    }
    matrices.reset();
    HDF5_CHECK(H5Fclose(file.release()));
}

RunLayout read_layout(hid_t file, const std::string& path) {
    try {
        Handle matrices(HDF5_CHECK(H5Gopen2(file, "matrices", H5P_DEFAULT)), H5Gclose);
        H5G_info_t info{};
        HDF5_CHECK(H5Gget_info(matrices, &info));
        RunLayout layout(info.nlinks);
        std::vector<bool> seen(info.nlinks, false);
        for (hsize_t k = 0; k < info.nlinks; ++k) {
            const ssize_t len = HDF5_CHECK(H5Lget_name_by_idx(
                matrices, ".", H5_INDEX_NAME, H5_ITER_INC, k, nullptr, 0, H5P_DEFAULT));
            std::string name(static_cast<size_t>(len) + 1, '\0');
            HDF5_CHECK(H5Lget_name_by_idx(matrices, ".", H5_INDEX_NAME, H5_ITER_INC, k,
                                          name.data(), name.size(), H5P_DEFAULT));
            name.resize(static_cast<size_t>(len));
            Handle g(HDF5_CHECK(H5Gopen2(matrices, name.c_str(), H5P_DEFAULT)), H5Gclose);
            const int64_t index = h5::read_attr_int(g, "index");
            if (index < 0 || index >= static_cast<int64_t>(info.nlinks) || seen[index])
                LOFTQ_THROW(InputError, "matrix '", printable(name), "' has a bad index ", index);
            seen[index] = true;
            MatrixLayout& m = layout[index];
            m.name = name;
            m.rows = h5::read_attr_int(g, "rows");
            m.cols = h5::read_attr_int(g, "cols");
            m.bits = static_cast<int>(h5::read_attr_int(g, "bits"));
            m.format = h5::read_attr_string(g, "format");
            m.blocksize = h5::read_attr_int(g, "blocksize");
            m.codes_bytes = h5::read_attr_int(g, "codes_bytes");
            m.nblocks = h5::read_attr_int(g, "nblocks");
            m.double_quant = h5::read_attr_int(g, "double_quant") != 0;
            m.rank = h5::read_attr_int(g, "rank");
            m.iters = h5::read_attr_int(g, "iters");
        }
        validate_layout(layout);
        return layout;
    } catch (const Error& e) {
        LOFTQ_THROW(InputError, "run file ", path, " is damaged: ", damage_of(e));
    }
}

std::string damage_of(const Error& e) {
    if (dynamic_cast<const BackendError*>(&e)) return "its HDF5 structure cannot be read";
    return e.what();
}

namespace {

std::string show(const nlohmann::json& v) {
    if (v.is_null()) return "no value";
    return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

void compare_options(const std::string& path, const std::string& stored,
                     const std::string& given) {
    const nlohmann::json s = parse_strict_json(cat("run file ", path, " is damaged: its options"), stored);
    const nlohmann::json g = parse_strict_json("options of this run", given);
    if (!s.is_object() || !g.is_object())
        LOFTQ_THROW(InputError, "run file ", path, ": options must be a JSON object");
    std::set<std::string> keys;
    for (auto it = g.begin(); it != g.end(); ++it) keys.insert(it.key());
    for (auto it = s.begin(); it != s.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys) {
        const nlohmann::json sv = s.contains(k) ? s[k] : nlohmann::json();
        const nlohmann::json gv = g.contains(k) ? g[k] : nlohmann::json();
        if (sv != gv)
            LOFTQ_THROW_SETTING(k, "run file ", path, " has ", show(sv), ", this run has ", show(gv),
                                " (resume needs the same settings)");
    }
}

void compare_layout(const std::string& path, const RunLayout& stored, const RunLayout& given) {
    if (stored.size() != given.size())
        LOFTQ_THROW(ConfigError, "run file ", path, " holds ", stored.size(),
                    " matrices, the plan has ", given.size(), " (resume needs the same model)");
    for (size_t i = 0; i < stored.size(); ++i) {
        const MatrixLayout& s = stored[i];
        const MatrixLayout& g = given[i];
        const auto differ = [&](const char* field, const auto& a, const auto& b) {
            if (!(a == b))
                LOFTQ_THROW(ConfigError, "run file ", path, ": matrix ", i, " ('", g.name,
                            "') ", field, " is ", a, " in the file, ", b,
                            " in the plan (resume needs the same model and options)");
        };
        differ("name", s.name, g.name);
        differ("rows", s.rows, g.rows);
        differ("cols", s.cols, g.cols);
        differ("bits", s.bits, g.bits);
        differ("format", s.format, g.format);
        differ("blocksize", s.blocksize, g.blocksize);
        differ("codes_bytes", s.codes_bytes, g.codes_bytes);
        differ("nblocks", s.nblocks, g.nblocks);
        differ("double_quant", s.double_quant, g.double_quant);
        differ("rank", s.rank, g.rank);
        differ("iters", s.iters, g.iters);
    }
}

}  // namespace loftq::runfile_schema
