#include "io/json_strict.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"

namespace loftq {

size_t first_invalid_utf8(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1fu;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0fu;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07u;
        else return i;  // continuation byte, overlong 2-byte lead (c0, c1) or f5..ff
        if (n - i < len) return i;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xc0u) != 0x80u) return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return n;
}

nlohmann::json parse_strict_json(const std::string& file, const char* text, size_t size, const char* what,
                                 const char* top_key_noun) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(text);
    // nlohmann stops at a NUL byte as if the input ended there: refuse it, so nothing is ignored.
    if (const void* nul = std::memchr(text, 0, size))
        LOFTQ_THROW(InputError, file, ": ", what, " holds a NUL byte (byte ", static_cast<const char*>(nul) - text, ")");
    // nlohmann skips a leading BOM; RFC 8259 forbids it and Python's json.loads refuses it.
    if (size >= 3 && bytes[0] == 0xef && bytes[1] == 0xbb && bytes[2] == 0xbf)
        LOFTQ_THROW(InputError, file, ": ", what, " starts with a UTF-8 byte order mark (not allowed in JSON)");
    const size_t bad = first_invalid_utf8(bytes, size);
    if (bad != size) LOFTQ_THROW(InputError, file, ": ", what, " is not valid UTF-8 (byte ", bad, ")");

    // One set of keys per open object; keys[d] is the last key seen at nesting level d.
    std::vector<std::set<std::string>> open;
    std::vector<std::string> keys;
    std::string duplicate;
    using Event = nlohmann::json::parse_event_t;
    auto callback = [&](int, Event event, nlohmann::json& parsed) {
        if (event == Event::object_start) {
            open.emplace_back();
            keys.emplace_back();
        } else if (event == Event::object_end) {
            if (!open.empty()) open.pop_back(), keys.pop_back();
        } else if (event == Event::key && !open.empty()) {
            const std::string key = parsed.get<std::string>();
            keys.back() = key;
            if (!open.back().insert(key).second && duplicate.empty()) {
                if (open.size() == 1) duplicate = cat("duplicate ", top_key_noun, " ", quoted_name(key));
                else duplicate = cat(quoted_name(keys[0]), ": duplicate key ", quoted_name(key));
            }
        }
        return true;
    };
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text, text + size, callback);
    } catch (const nlohmann::json::exception& e) {
        std::string msg = e.what();
        const size_t close = msg.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] "
        if (msg.rfind("[json.exception", 0) == 0 && close != std::string::npos) msg = msg.substr(close + 2);
        LOFTQ_THROW(InputError, file, ": ", what, " is not valid JSON (", msg, ")");
    }
    if (!duplicate.empty()) LOFTQ_THROW(InputError, file, ": ", duplicate);
    return j;
}

nlohmann::json parse_strict_json(const std::string& where, const std::string& text) {
    return parse_strict_json(where, text.data(), text.size(), "content", "key");
}

namespace {

const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a plain file";
}

// Closes the descriptor on every path out of read_json_file.
struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
};

}  // namespace

nlohmann::json read_json_file(const std::string& path, const char* what, uint64_t max_bytes) {
    // stat first: open() of a FIFO with no writer blocks forever (STYLE.md 10).
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) LOFTQ_THROW(InputError, path, ": cannot open: ", std::strerror(errno));
    if (!S_ISREG(st.st_mode)) LOFTQ_THROW(InputError, path, ": not a regular file (", file_kind(st.st_mode), ")");
    // O_NONBLOCK and a second check on the descriptor: the path may be swapped after the stat.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) LOFTQ_THROW(InputError, path, ": cannot open: ", std::strerror(errno));
    const FdCloser closer{fd};
    if (::fstat(fd, &st) != 0) LOFTQ_THROW(InputError, path, ": cannot read: ", std::strerror(errno));
    if (!S_ISREG(st.st_mode)) LOFTQ_THROW(InputError, path, ": not a regular file (", file_kind(st.st_mode), ")");
    if (static_cast<uint64_t>(st.st_size) > max_bytes)
        LOFTQ_THROW(InputError, path, ": ", st.st_size, " bytes, over the ", max_bytes, "-byte limit for a JSON ",
                    what);
    // Read to end of file, but never past the bound: the file may grow while we read it.
    std::string text(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    for (;;) {
        if (got == text.size()) {
            if (text.size() > max_bytes) break;
            text.resize(std::min<uint64_t>(max_bytes + 1, text.size() + 65536));
        }
        const ssize_t r = ::read(fd, text.data() + got, text.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) LOFTQ_THROW(InputError, path, ": cannot read: ", std::strerror(errno));
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    text.resize(got);
    if (got > max_bytes)
        LOFTQ_THROW(InputError, path, ": over the ", max_bytes, "-byte limit for a JSON ", what);
    return parse_strict_json(path, text.data(), text.size(), what, "key");
}

}  // namespace loftq
