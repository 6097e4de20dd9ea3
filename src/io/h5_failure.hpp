// Why an HDF5 read or write of a file failed, in the words of the operating system. HDF5 reports
// a failed write(2) or MPI_File_write_at as its own call stack ("H5Dwrite(...) failed"); the
// reason is in its error stack ("errno = 28, error message = 'No space left on device'" from the
// POSIX driver, an MPI error string from MPI-IO), or still in errno, or visible as a file system
// with no space left. A user needs that reason and the file, not the HDF5 call.
#pragma once

#include <cerrno>
#include <string>

#include "core/error.hpp"
#include "io/h5_attr.hpp"

namespace loftq::h5 {

// The reason of the HDF5 failure that just happened on `path`: strerror of the errno found (as
// above), "No space left on device" when the file system holding `path` has no free block
// left, else the innermost HDF5 error description. Call it right after the failing HDF5 call
// (before any other HDF5 call clears the error stack), with errno as it was then.
std::string failure_reason(const std::string& path, int saved_errno);

}  // namespace loftq::h5

// For data I/O on a run file: throws loftq::BackendError "run file <path>: <reason> (<what>)"
// when `call` returns a negative value (HDF5 printing nothing); the rest says what was being
// read or written.
#define RUNFILE_IO_CHECK(call, path, ...)                                                       \
    do {                                                                                        \
        const ::loftq::h5::QuietErrors loftq_quiet_;                                            \
        errno = 0;                                                                              \
        if ((call) < 0) {                                                                       \
            const int loftq_errno_ = errno;                                                     \
            throw ::loftq::BackendError(::loftq::cat("run file ", path, ": ",                  \
                                                     ::loftq::h5::failure_reason(path, loftq_errno_), \
                                                     " (", __VA_ARGS__, ")"));                  \
        }                                                                                       \
    } while (0)
