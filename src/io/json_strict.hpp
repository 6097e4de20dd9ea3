// Strict JSON for untrusted headers and index files: valid UTF-8, and no key given twice in any
// object (nlohmann keeps one of two duplicate keys silently; the safetensors reference loader
// and a careful reader must not).
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace loftq {

// Index of the first byte of an invalid UTF-8 sequence in text[0, size), or size when valid
// (overlong forms, surrogates and code points past U+10FFFF are invalid).
size_t first_invalid_utf8(const unsigned char* text, size_t size);

// Parse `text` (UTF-8 JSON, trailing whitespace allowed). Throws InputError of one line naming
// `file`: "<file>: <what> is not valid UTF-8 (byte B)", "<file>: <what> is not valid JSON (...)",
// "<file>: duplicate <top_key_noun> 'K'" for a repeated top-level key, or
// "<file>: 'P': duplicate key 'K'" for a repeated key inside the object under top-level key P.
nlohmann::json parse_strict_json(const std::string& file, const char* text, size_t size, const char* what,
                                 const char* top_key_noun);

}  // namespace loftq
