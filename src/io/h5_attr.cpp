// Scalar attributes: int64 and fixed-length UTF-8 strings (fixed length so that the bytes on
// disk do not depend on a heap address, unlike variable-length strings).
#include "io/h5_attr.hpp"

#include "core/error.hpp"

namespace loftq::h5 {

bool has_attr(hid_t obj, const char* name) {
    return HDF5_CHECK(H5Aexists(obj, name)) > 0;
}

void write_attr(hid_t obj, const char* name, int64_t value) {
    Handle space(HDF5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose);
    Handle attr(HDF5_CHECK(H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT)),
                H5Aclose);
    HDF5_CHECK(H5Awrite(attr, H5T_NATIVE_INT64, &value));
}

void write_attr(hid_t obj, const char* name, const std::string& value) {
    Handle type(HDF5_CHECK(H5Tcopy(H5T_C_S1)), H5Tclose);
    HDF5_CHECK(H5Tset_size(type, value.empty() ? 1 : value.size()));
    HDF5_CHECK(H5Tset_strpad(type, H5T_STR_NULLPAD));
    HDF5_CHECK(H5Tset_cset(type, H5T_CSET_UTF8));
    Handle space(HDF5_CHECK(H5Screate(H5S_SCALAR)), H5Sclose);
    Handle attr(HDF5_CHECK(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)),
                H5Aclose);
    std::string padded = value.empty() ? std::string(1, '\0') : value;
    HDF5_CHECK(H5Awrite(attr, type, padded.data()));
}

int64_t read_attr_int(hid_t obj, const char* name) {
    if (!has_attr(obj, name)) LOFTQ_THROW(InputError, "attribute '", name, "' is missing");
    Handle attr(HDF5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
    Handle type(HDF5_CHECK(H5Aget_type(attr)), H5Tclose);
    Handle space(HDF5_CHECK(H5Aget_space(attr)), H5Sclose);
    if (H5Tget_class(type) != H5T_INTEGER || HDF5_CHECK(H5Sget_simple_extent_npoints(space)) != 1)
        LOFTQ_THROW(InputError, "attribute '", name, "' is not one integer");
    int64_t value = 0;
    HDF5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, &value));
    return value;
}

std::string read_attr_string(hid_t obj, const char* name) {
    if (!has_attr(obj, name)) LOFTQ_THROW(InputError, "attribute '", name, "' is missing");
    Handle attr(HDF5_CHECK(H5Aopen(obj, name, H5P_DEFAULT)), H5Aclose);
    Handle type(HDF5_CHECK(H5Aget_type(attr)), H5Tclose);
    Handle space(HDF5_CHECK(H5Aget_space(attr)), H5Sclose);
    if (H5Tget_class(type) != H5T_STRING || HDF5_CHECK(H5Tis_variable_str(type)) > 0 ||
        HDF5_CHECK(H5Sget_simple_extent_npoints(space)) != 1)
        LOFTQ_THROW(InputError, "attribute '", name, "' is not a fixed-length string");
    const size_t size = H5Tget_size(type);
    std::string value(size, '\0');
    HDF5_CHECK(H5Aread(attr, type, value.data()));
    const size_t end = value.find('\0');
    if (end != std::string::npos) value.resize(end);
    return value;
}

}  // namespace loftq::h5
