#include "core/error.hpp"

#include <mpi.h>
#include <unistd.h>

#include <array>

namespace loftq {
namespace {
int g_rank = -1;
int g_size = 1;

std::string host_name() {
    std::array<char, 256> buf{};
    if (gethostname(buf.data(), buf.size() - 1) != 0) return "unknown-host";
    return std::string(buf.data());
}
}  // namespace

void set_process_context(int rank, int size) {
    g_rank = rank;
    g_size = size;
}

int process_rank() { return g_rank < 0 ? 0 : g_rank; }
int process_count() { return g_size; }

std::string printable(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
    return out;
}

std::string process_tag() {
    static const std::string host = host_name();
    return cat("rank ", g_rank < 0 ? std::string("?") : std::to_string(g_rank), "@", host);
}

std::string call_failure(const char* call, const std::string& detail, const char* file, int line) {
    return cat(call, " failed", detail.empty() ? "" : " (", detail, detail.empty() ? "" : ")",
               " at ", file, ":", line, " [", process_tag(), "]");
}

std::string mpi_error_string(int code) {
    std::array<char, MPI_MAX_ERROR_STRING> buf{};
    int len = 0;
    if (MPI_Error_string(code, buf.data(), &len) != MPI_SUCCESS) return cat("MPI error ", code);
    return std::string(buf.data(), static_cast<size_t>(len));
}

}  // namespace loftq
