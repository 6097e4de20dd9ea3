// Strict JSON for untrusted headers and files: valid UTF-8, no byte order mark, no NUL, and no
// key given twice in any object (nlohmann keeps one of two duplicate keys silently and skips a
// BOM; the safetensors reference loader, Python's json and a careful reader refuse both).
// Every JSON the tool reads goes through here: files with read_json_file, text already in
// memory (a run file attribute, a broadcast plan, a safetensors header) with parse_strict_json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace loftq {

// Index of the first byte of an invalid UTF-8 sequence in text[0, size), or size when valid
// (overlong forms, surrogates and code points past U+10FFFF are invalid).
size_t first_invalid_utf8(const unsigned char* text, size_t size);

// Parse `text` (UTF-8 JSON, trailing whitespace allowed). Throws InputError of one line naming
// `file`: "<file>: <what> is not valid UTF-8 (byte B)", "<file>: <what> is not valid JSON (...)",
// "<file>: duplicate <top_key_noun> 'K'" for a repeated top-level key, or
// "<file>: 'P': duplicate key 'K'" for a repeated key inside the object under top-level key P.
// "<file>: <what> starts with a UTF-8 byte order mark" when text begins with EF BB BF.
nlohmann::json parse_strict_json(const std::string& file, const char* text, size_t size, const char* what,
                                 const char* top_key_noun);

// Text already in memory: `where` names its origin in every error ("run file R: options").
nlohmann::json parse_strict_json(const std::string& where, const std::string& text);

// config.json, index.json, adapter_config.json, report.json are kilobytes to a few megabytes.
constexpr uint64_t kMaxJsonFileBytes = uint64_t{64} << 20;

// Read and parse the JSON file at `path` as parse_strict_json(path, ..., what, "key"). The path
// is checked with stat() before it is opened, and opened non-blocking, so a FIFO, a socket or a
// device is one error line ("<path>: not a regular file (a FIFO)"), never a hang; a folder,
// a missing or unreadable file ("<path>: cannot open: <OS reason>") and a file over max_bytes
// likewise. Every error is an InputError naming `path`.
nlohmann::json read_json_file(const std::string& path, const char* what = "file",
                              uint64_t max_bytes = kMaxJsonFileBytes);

// The member `key` of the object `j` as a T; an InputError "<where>: missing field "key"" when j is
// not an object or lacks it, "<where>: field "key" has the wrong type" when it is not a T.
template <typename T>
T json_field(const nlohmann::json& j, const char* key, const std::string& where) {
    if (!j.is_object() || !j.contains(key)) LOFTQ_THROW(InputError, where, ": missing field \"", key, "\"");
    try {
        return j.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
        LOFTQ_THROW(InputError, where, ": field \"", key, "\" has the wrong type");
    }
}

}  // namespace loftq
