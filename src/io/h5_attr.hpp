// Small HDF5 helpers shared by the run-file code: an owning handle, scalar attributes, and a
// guard that silences HDF5's own error-stack printing while we probe untrusted files (our
// HDF5_CHECK / InputError messages replace it).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>

namespace loftq::h5 {

// Owns one hid_t and closes it with the matching H5?close function.
class Handle {
public:
    using Closer = herr_t (*)(hid_t);
    Handle() = default;
    Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
    Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_;
            closer_ = o.closer_;
            o.id_ = -1;
        }
        return *this;
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { reset(); }
    hid_t get() const { return id_; }
    operator hid_t() const { return id_; }
    void reset() {
        if (id_ >= 0 && closer_) closer_(id_);
        id_ = -1;
    }
    hid_t release() {
        hid_t id = id_;
        id_ = -1;
        return id;
    }

private:
    hid_t id_ = -1;
    Closer closer_ = nullptr;
};

// While alive, HDF5 prints nothing on failure.
class QuietErrors {
public:
    QuietErrors() {
        H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
    QuietErrors(const QuietErrors&) = delete;
    QuietErrors& operator=(const QuietErrors&) = delete;

private:
    H5E_auto2_t func_ = nullptr;
    void* data_ = nullptr;
};

bool has_attr(hid_t obj, const char* name);
void write_attr(hid_t obj, const char* name, int64_t value);
void write_attr(hid_t obj, const char* name, const std::string& value);
// Throw loftq::Error (caller adds the file name) when absent or of the wrong class.
int64_t read_attr_int(hid_t obj, const char* name);
std::string read_attr_string(hid_t obj, const char* name);

}  // namespace loftq::h5
