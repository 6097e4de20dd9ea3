// libFuzzer harness: a run file as `export`, `verify` and `inspect` open it (RunFile::open_read:
// the format attribute, the options, every matrix's layout attributes and datasets), then every
// matrix read and, when flagged complete, checked for damage (checksum, finiteness) as export
// checks it.
//
// The input is not the file's bytes but a program of edits applied through the HDF5 API to a real
// run file (fuzz/data/run_tiny.h5, written by fuzz/make_corpus.py): set, retype or delete an
// attribute, overwrite bytes of a dataset, set a complete flag, delete or reshape a dataset,
// rename a matrix. Every input is then a well-formed HDF5 file and the fuzzer explores our
// checks, not HDF5's decoder: raw bytes reach heap overflows inside HDF5 1.10's object-header
// decoding within seconds, which no check of ours can prevent (README, "Fuzzing").
#include <hdf5.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "fuzz_support.hpp"
#include "io/h5_attr.hpp"
#include "io/runfile.hpp"

namespace {

std::string g_base;  // the real run file's bytes

const char* const kAttrs[] = {"loftq_run_format", "options", "index", "rows", "cols", "bits", "format",
                              "blocksize", "codes_bytes", "nblocks", "double_quant", "rank", "iters"};
const char* const kDatasets[] = {"codes", "absmax", "nested_absmax", "nested_offset", "A", "B", "qlora_error",
                                 "iteration_error", "chosen_iteration", "loaded_error", "timings", "owners",
                                 "fingerprint", "checksum"};
template <typename T, size_t N>
const T& pick(const T (&a)[N], uint8_t b) { return a[b % N]; }

class Program {
public:
    Program(const uint8_t* p, size_t n) : p_(p), n_(n) {}
    bool done() const { return i_ >= n_; }
    uint8_t u8() { return i_ < n_ ? p_[i_++] : 0; }
    uint64_t u64() {
        uint64_t v = 0;
        for (int k = 0; k < 8; ++k) v |= uint64_t{u8()} << (8 * k);
        return v;
    }
    std::string str() {
        std::string s;
        for (uint8_t len = u8(); len > 0 && !done(); --len) s.push_back(static_cast<char>(u8()));
        return s;
    }

private:
    const uint8_t* p_;
    size_t n_, i_ = 0;
};

std::vector<std::string> matrix_names(hid_t file) {
    std::vector<std::string> names;
    H5Literate_by_name(file, "matrices", H5_INDEX_NAME, H5_ITER_INC, nullptr,
                       [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
                           static_cast<std::vector<std::string>*>(out)->push_back(name);
                           return 0;
                       },
                       &names, H5P_DEFAULT);
    return names;
}

// "/" or "/matrices/<name>" of the k-th matrix (0xFF: the root).
std::string object_path(hid_t file, uint8_t k) {
    const auto names = matrix_names(file);
    if (k == 0xFF || names.empty()) return "/";
    return "/matrices/" + names[k % names.size()];
}

void set_dataset_bytes(hid_t ds, Program& in) {
    const hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    const size_t bytes = n > 0 ? static_cast<size_t>(n) * H5Tget_size(type) : 0;
    const uint64_t at = in.u64();
    const std::string patch = in.str();
    if (bytes > 0 && bytes < (size_t{1} << 24)) {
        std::vector<unsigned char> buf(bytes);
        if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0) {
            for (size_t k = 0; k < patch.size(); ++k) buf[(at + k) % bytes] = static_cast<unsigned char>(patch[k]);
            H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
        }
    }
    H5Sclose(space);
    H5Tclose(type);
}

void apply(hid_t file, Program& in) {
    const uint8_t op = in.u8();
    const std::string obj = object_path(file, in.u8());
    const std::string dataset = obj + "/" + pick(kDatasets, in.u8());
    const char* attr = pick(kAttrs, in.u8());
    const hid_t o = H5Oopen(file, obj.c_str(), H5P_DEFAULT);
    if (o < 0) return;
    switch (op % 8) {
        case 0:  // an integer attribute (replacing one of any type)
        case 1:  // a string attribute
            if (loftq::h5::has_attr(o, attr)) H5Adelete(o, attr);
            if (op % 8 == 0) loftq::h5::write_attr(o, attr, static_cast<int64_t>(in.u64()));
            else loftq::h5::write_attr(o, attr, in.str());
            break;
        case 2: H5Adelete(o, attr); break;
        case 3: {  // bytes of a dataset
            const hid_t ds = H5Dopen2(file, obj == "/" ? "/complete" : dataset.c_str(), H5P_DEFAULT);
            if (ds >= 0) set_dataset_bytes(ds, in), H5Dclose(ds);
            break;
        }
        case 4: H5Ldelete(file, obj == "/" ? "/complete" : dataset.c_str(), H5P_DEFAULT); break;
        case 5: H5Ldelete(file, obj == "/" ? "/matrices" : obj.c_str(), H5P_DEFAULT); break;
        case 6: {  // the dataset again with another shape and type
            H5Ldelete(file, dataset.c_str(), H5P_DEFAULT);
            const int rank = in.u8() % 3;
            hsize_t dims[2] = {in.u8(), in.u8()};
            const hid_t types[] = {H5T_STD_U8LE, H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_STD_I32LE, H5T_STD_U64LE};
            const hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, nullptr);
            const hid_t ds = H5Dcreate2(file, dataset.c_str(), pick(types, in.u8()), space, H5P_DEFAULT,
                                        H5P_DEFAULT, H5P_DEFAULT);
            if (ds >= 0) set_dataset_bytes(ds, in), H5Dclose(ds);
            H5Sclose(space);
            break;
        }
        case 7:  // rename a matrix
            if (obj != "/") H5Lmove(file, obj.c_str(), file, ("/matrices/" + in.str()).c_str(), H5P_DEFAULT, H5P_DEFAULT);
            break;
    }
    H5Oclose(o);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // as main does: our errors speak, HDF5 prints nothing
    std::ifstream f(LOFTQ_FUZZ_RUNFILE, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    g_base = s.str();
    if (g_base.empty()) std::abort();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = loftq::fuzz::write_file(
        "run.h5", reinterpret_cast<const uint8_t*>(g_base.data()), g_base.size());
    {
        const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        if (file < 0) std::abort();
        Program in(data, size);
        for (int ops = 0; ops < 8 && !in.done(); ++ops) apply(file, in);
        H5Fclose(file);
    }
    loftq::fuzz::refuse_or_accept([&] {
        const loftq::RunFile run = loftq::RunFile::open_read(path);
        const std::vector<bool> complete = run.complete_flags();
        if (complete.size() != run.layout().size()) std::abort();
        for (size_t i = 0; i < complete.size(); ++i) {
            const loftq::MatrixRecord record = run.read_matrix(i);
            if (complete[i]) loftq::check_record_integrity(record, path);
        }
    });
    return 0;
}
