#include "io/h5_failure.hpp"

#include <hdf5.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

namespace loftq::h5 {
namespace {

herr_t collect(unsigned /*n*/, const H5E_error2_t* e, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(e->desc ? e->desc : "");
    return 0;
}

// An errno the POSIX driver printed into its message ("errno = 28, ..."), or 0.
int errno_in(const std::string& text) {
    const size_t at = text.find("errno = ");
    if (at == std::string::npos) return 0;
    return std::atoi(text.c_str() + at + 8);
}

bool errno_of_io(int e) { return e == ENOSPC || e == EDQUOT || e == EIO || e == EFBIG || e == EROFS || e == EBADF; }

bool file_system_full(const std::string& path) {
    std::error_code ec;
    const std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
    struct statvfs st {};
    return !ec && ::statvfs(dir.c_str(), &st) == 0 && st.f_bavail == 0;
}

}  // namespace

std::string failure_reason(const std::string& path, int saved_errno) {
    std::vector<std::string> stack;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &stack);
    for (const std::string& desc : stack)
        if (const int e = errno_in(desc); e > 0) return std::strerror(e);
    for (const std::string& desc : stack)
        if (desc.find("MPI_ERR_NO_SPACE") != std::string::npos) return std::strerror(ENOSPC);
        else if (desc.find("MPI_ERR_QUOTA") != std::string::npos) return std::strerror(EDQUOT);
    if (errno_of_io(saved_errno)) return std::strerror(saved_errno);
    if (file_system_full(path)) return std::strerror(ENOSPC);
    return stack.empty() || stack.back().empty() ? "HDF5 I/O failed" : "HDF5: " + stack.back();
}

}  // namespace loftq::h5
