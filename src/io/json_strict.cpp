#include "io/json_strict.hpp"

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
                if (open.size() == 1) duplicate = cat("duplicate ", top_key_noun, " ", quoted(key));
                else duplicate = cat(quoted(keys[0]), ": duplicate key ", quoted(key));
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

}  // namespace loftq
