#include "io/held_weight.hpp"

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/export_format.hpp"
#include "io/json_strict.hpp"
#include "quant/quantize.hpp"

namespace loftq {
namespace {

constexpr const char* kStateTypes[] = {"nf4", "fp4"};
constexpr const char* kComponentSuffixes[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"};

std::string state_key(const Checkpoint& ck, const std::string& name) {
    for (const char* t : kStateTypes)
        if (ck.contains(name + ".quant_state.bitsandbytes__" + t)) return name + ".quant_state.bitsandbytes__" + t;
    return {};
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool is_bnb4_weight(const Checkpoint& ck, const std::string& name) { return !state_key(ck, name).empty(); }

bool is_bnb4_component(const Checkpoint& ck, const std::string& name) {
    for (const char* s : kComponentSuffixes)
        if (ends_with(name, s) && is_bnb4_weight(ck, name.substr(0, name.size() - std::string(s).size()))) return true;
    const size_t q = name.rfind(".quant_state.bitsandbytes__");
    return q != std::string::npos && q > 0;
}

Bnb4Stored read_bnb4_state(const Checkpoint& ck, const std::string& name) {
    const std::string where = cat(ck.path(), " tensor ", name);
    const std::string key = state_key(ck, name);
    if (key.empty()) LOFTQ_THROW(InputError, where, ": no quant_state.bitsandbytes__nf4/fp4 tensor");
    const std::vector<uint8_t> bytes = ck.file_of(key).read_as<uint8_t>(key);
    const nlohmann::json state =
        parse_strict_json(where, reinterpret_cast<const char*>(bytes.data()), bytes.size(), "quant_state", "key");
    const std::string in_state = where + " quant_state";
    Bnb4Stored s;
    s.quant_type = json_field<std::string>(state, "quant_type", in_state);
    s.blocksize = json_field<int64_t>(state, "blocksize", in_state);
    const auto shape = json_field<std::vector<int64_t>>(state, "shape", in_state);
    if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1 || shape[0] > (int64_t{1} << 31) || shape[1] > (int64_t{1} << 31))
        LOFTQ_THROW(InputError, where, ": quant_state shape is not a 2-D matrix shape");
    s.rows = shape[0];
    s.cols = shape[1];
    if (key != name + ".quant_state.bitsandbytes__" + s.quant_type)
        LOFTQ_THROW(InputError, where, ": quant_type \"", s.quant_type, "\" does not match its tensor ", key);
    const QuantFormat* f = find_format(s.quant_type);
    if (f == nullptr || !f->is_bnb()) LOFTQ_THROW(InputError, where, ": quant_type \"", s.quant_type, "\"");
    if (s.blocksize < 1 || s.blocksize > 65536) LOFTQ_THROW(InputError, where, ": blocksize ", s.blocksize);
    s.nested = state.contains("nested_offset");
    if (s.nested) {
        s.nested_blocksize = json_field<int64_t>(state, "nested_blocksize", in_state);
        s.nested_offset = static_cast<float>(json_field<double>(state, "nested_offset", in_state));
    }
    s.dtype = torch_dtype_to_dtype(state.contains("dtype") ? json_field<std::string>(state, "dtype", in_state) : "float32",
                                   where + " quant_state dtype");
    return s;
}

std::vector<float> dequantize_bnb4_weight(const Checkpoint& ck, const std::string& name, const Bnb4Stored& s) {
    const std::string where = cat(ck.path(), " tensor ", name);
    const int64_t n = s.rows * s.cols, nblocks = (n + s.blocksize - 1) / s.blocksize;
    const std::vector<uint8_t> codes = ck.file_of(name).read_as<uint8_t>(name);
    const std::vector<float> qmap = ck.file_of(name + ".quant_map").read_as<float>(name + ".quant_map");
    if (static_cast<int64_t>(codes.size()) != (n + 1) / 2 || qmap.size() != 16)
        LOFTQ_THROW(InputError, where, ": packed codes or quant_map of the wrong size");
    std::vector<float> absmax(static_cast<size_t>(nblocks));
    if (s.nested) {
        const int64_t nb = s.nested_blocksize;
        const float offset = s.nested_offset;
        const auto acodes = ck.file_of(name + ".absmax").read_as<uint8_t>(name + ".absmax");
        const auto nabs = ck.file_of(name + ".nested_absmax").read_as<float>(name + ".nested_absmax");
        const auto nmap = ck.file_of(name + ".nested_quant_map").read_as<float>(name + ".nested_quant_map");
        if (nb < 1 || static_cast<int64_t>(acodes.size()) != nblocks || nmap.size() != 256 ||
            static_cast<int64_t>(nabs.size()) != (nblocks + nb - 1) / nb)
            LOFTQ_THROW(InputError, where, ": double-quantized absmax of the wrong size");
        for (int64_t b = 0; b < nblocks; ++b)
            absmax[static_cast<size_t>(b)] =
                nmap[acodes[static_cast<size_t>(b)]] * nabs[static_cast<size_t>(b / nb)] + offset;
    } else {
        absmax = ck.file_of(name + ".absmax").read_as<float>(name + ".absmax");
        if (static_cast<int64_t>(absmax.size()) != nblocks) LOFTQ_THROW(InputError, where, ": absmax of the wrong size");
    }
    std::vector<float> q(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t byte = codes[static_cast<size_t>(i / 2)];
        const uint8_t c = (i % 2 == 0) ? byte >> 4 : byte & 0x0f;
        q[static_cast<size_t>(i)] = qmap[c] * absmax[static_cast<size_t>(i / s.blocksize)];
    }
    return q;
}

std::vector<float> quantized_as_held(const QuantFormat& f, int blocksize, bool double_quant,
                                     const std::vector<float>& x, const std::string& name) {
    QuantizedTensor q;
    quantize(QuantParams{&f, blocksize, double_quant}, x.data(), static_cast<int64_t>(x.size()), q, name);
    std::vector<float> out(x.size());
    dequantize(q, out.data());
    return out;
}

void cast_as_loaded(DType load_dtype, std::vector<float>& v) {
    const Backbone cast = load_dtype == DType::BF16 ? Backbone::BF16 : load_dtype == DType::F16 ? Backbone::FP16 : Backbone::FP32;
    for (auto& x : v) x = round_to_backbone(cast, x);
}

std::vector<float> requantized_at_load(std::vector<float> stored, DType load_dtype, const QuantFormat& f,
                                       bool double_quant, const std::string& name) {
    // transformers casts every floating tensor to torch_dtype before bitsandbytes sees it.
    cast_as_loaded(load_dtype, stored);
    return quantized_as_held(f, 64, double_quant, stored, name);
}

}  // namespace loftq
