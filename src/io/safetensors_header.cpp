#include "io/safetensors_header.hpp"

#include <limits>

#include "core/error.hpp"
#include "io/json_strict.hpp"

namespace loftq {
namespace {

using nlohmann::json;

const char* json_kind(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::object: return "an object";
        case json::value_t::array: return "an array";
        case json::value_t::string: return "a string";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::number_integer: return "a negative integer";
        case json::value_t::number_unsigned: return "an integer";
        case json::value_t::number_float: return "a non-integer number";
        default: return "an invalid value";
    }
}

TensorMetadata parse_metadata(const std::string& file, const json& m) {
    TensorMetadata out;
    if (m.is_null()) return out;  // the reference loader reads Option<HashMap>: null is "none"
    if (!m.is_object())
        LOFTQ_THROW(InputError, file, ": '__metadata__' must be an object of strings, not ", json_kind(m));
    for (const auto& [k, v] : m.items()) {
        if (!v.is_string())
            LOFTQ_THROW(InputError, file, ": '__metadata__' key ", quoted_name(k), " holds ", json_kind(v),
                        ", not a string");
        out[k] = v.get<std::string>();
    }
    return out;
}

TensorInfo parse_entry(const std::string& file, const std::string& name, const json& e) {
    const std::string where = cat(file, ": tensor ", quoted_name(name));
    if (!e.is_object())
        LOFTQ_THROW(InputError, where, ": entry is ", json_kind(e), ", not {dtype, shape, data_offsets}");
    // Other keys are ignored, as the reference loader does (serde skips unknown fields): a file
    // that safetensors and transformers load must load here too.
    for (const char* k : {"dtype", "shape", "data_offsets"})
        if (!e.contains(k)) LOFTQ_THROW(InputError, where, ": missing '", k, "'");

    TensorInfo t;
    t.name = name;
    const json& dt = e.at("dtype");
    if (!dt.is_string()) LOFTQ_THROW(InputError, where, ": dtype is ", json_kind(dt), ", not a string");
    const auto parsed = parse_dtype(dt.get<std::string>());
    if (!parsed) LOFTQ_THROW(InputError, where, ": unknown dtype ", quoted_name(dt.get<std::string>()));
    t.dtype = *parsed;

    const json& sh = e.at("shape");
    if (!sh.is_array()) LOFTQ_THROW(InputError, where, ": shape is ", json_kind(sh), ", not an array");
    for (size_t i = 0; i < sh.size(); ++i) {
        const json& d = sh[i];
        if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            LOFTQ_THROW(InputError, where, ": shape dim ", i, " is ", json_kind(d), " (", d.dump(),
                        "), not a non-negative integer");
        t.shape.push_back(d.get<int64_t>());
    }
    uint64_t numel = 0, need = 0;
    if (!checked_tensor_size(t.shape, t.dtype, numel, need))
        LOFTQ_THROW(InputError, where, ": shape ", sh.dump(), " overflows 64-bit byte counts");

    const json& off = e.at("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        LOFTQ_THROW(InputError, where, ": data_offsets ", off.dump(), " is not [begin, end] of two non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.end < t.begin)
        LOFTQ_THROW(InputError, where, ": data_offsets [", t.begin, ", ", t.end, "] end before they begin");
    if (t.end - t.begin != need)
        LOFTQ_THROW(InputError, where, ": data_offsets [", t.begin, ", ", t.end, "] hold ", t.end - t.begin,
                    " bytes, dtype ", dtype_name(t.dtype), " shape ", shape_string(t.shape), " needs ", need);
    return t;
}

}  // namespace

ParsedHeader parse_safetensors_header(const std::string& file, const unsigned char* bytes, uint64_t n) {
    const json root = parse_strict_json(file, reinterpret_cast<const char*>(bytes), static_cast<size_t>(n),
                                        "header", "tensor name");
    if (!root.is_object()) LOFTQ_THROW(InputError, file, ": header is ", json_kind(root), ", not a JSON object");
    ParsedHeader h;
    for (const auto& [name, entry] : root.items()) {
        if (name == "__metadata__") h.metadata = parse_metadata(file, entry);
        else h.tensors.push_back(parse_entry(file, name, entry));
    }
    return h;
}

}  // namespace loftq
