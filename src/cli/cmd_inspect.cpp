// `loftq inspect PATH`: every tensor of a .safetensors file or a model folder (single file or
// sharded with an index), then totals. The whole checkpoint is validated before anything is
// printed, so a bad file gives one error line and no partial listing. Rank 0 alone prints.
// A folder written by `loftq export` (it has loftq_init/adapter_config.json) gets a summary
// after the listing: backbone form, adapter rank / alpha / targets / dtype, report totals.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/export_format.hpp"
#include "io/json_strict.hpp"
#include "plan/checkpoint_layout.hpp"
#include "plan/plan.hpp"

namespace loftq {
namespace {

std::string base_name(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string pad(const std::string& s, size_t width) { return s + std::string(width > s.size() ? width - s.size() : 0, ' '); }
std::string right(const std::string& s, size_t width) { return std::string(width > s.size() ? width - s.size() : 0, ' ') + s; }

// One line per tensor in name order: name, dtype, shape, bytes (and the shard when sharded),
// then "N tensors, P parameters, B bytes, K shard(s)".
std::string inspect_listing(const Checkpoint& ck) {
    ck.validate_all();
    size_t name_w = 4, shape_w = 5, bytes_w = 5;
    for (const auto& n : ck.names()) {
        name_w = std::max(name_w, quoted_name(n).size() - 2);
        shape_w = std::max(shape_w, shape_string(ck.info(n).shape).size());
        bytes_w = std::max(bytes_w, std::to_string(ck.info(n).nbytes()).size());
    }
    std::ostringstream os;
    os << pad("name", name_w) << "  " << pad("dtype", 7) << "  " << pad("shape", shape_w) << "  " << right("bytes", bytes_w);
    if (ck.sharded()) os << "  shard";
    os << "\n";
    uint64_t params = 0, bytes = 0;
    for (const auto& n : ck.names()) {
        const TensorInfo& t = ck.info(n);
        const std::string q = quoted_name(n);
        os << pad(q.substr(1, q.size() - 2), name_w) << "  " << pad(dtype_name(t.dtype), 7) << "  "
           << pad(shape_string(t.shape), shape_w) << "  " << right(std::to_string(t.nbytes()), bytes_w);
        if (ck.sharded()) os << "  " << base_name(ck.shard_of(n));
        os << "\n";
        params += t.numel();
        bytes += t.nbytes();
    }
    const size_t shards = ck.shard_paths().size();
    os << ck.names().size() << " tensors, " << params << " parameters, " << bytes << " bytes, " << shards
       << (shards == 1 ? " shard" : " shards") << "\n";
    // What the real clients keep in 16-bit (the rest of the 2-D weights become Linear4bit).
    const KeptSummary kept = kept_in_16bit(read_catalogue(ck));
    if (!kept.groups.empty()) os << "kept in 16-bit by transformers + bitsandbytes: " << kept.text() << "\n";
    return os.str();
}

nlohmann::json json_file(const std::string& path) {
    return read_json_file(path, "file");
}

// The summary of an exported folder (backbone already validated by the listing).
std::string output_summary(const Checkpoint& ck, const std::string& dir) {
    const nlohmann::json config = json_file(dir + "/config.json");
    const nlohmann::json acfg = json_file(dir + "/loftq_init/adapter_config.json");
    const SafetensorsFile adapter(dir + "/loftq_init/adapter_model.safetensors");
    std::set<std::string> dtypes, backbone_dtypes;
    size_t modules = 0;
    for (const auto& t : adapter.tensors()) {
        char which = 0;
        const std::string name = tensor_of_lora_key(t.name, which);
        if (name.empty()) LOFTQ_THROW(InputError, adapter.path(), ": tensor ", t.name, " is not a PEFT lora key");
        dtypes.insert(dtype_name(t.dtype));
        if (which != 'A') continue;
        ++modules;
        if (ck.contains(name)) backbone_dtypes.insert(dtype_name(ck.info(name).dtype));
    }
    std::ostringstream os;
    os << "\nloftq output " << dir << "\n  backbone: ";
    if (config.is_object() && config.contains("quantization_config")) {
        const auto& q = config["quantization_config"];
        if (q.value("load_in_8bit", false))
            os << "int8 (bitsandbytes LLM.int8 pre-quantized: int8 weight + SCB per row)\n";
        else
            os << "bnb4 (bitsandbytes pre-quantized " << q.value("bnb_4bit_quant_type", std::string("?"))
           << ", double quant " << (q.value("bnb_4bit_use_double_quant", false) ? "yes" : "no") << ", compute dtype "
           << q.value("bnb_4bit_compute_dtype", std::string("?")) << ")\n";
    } else {
        std::string list;
        for (const auto& d : backbone_dtypes) list += (list.empty() ? "" : ",") + d;
        os << list << " (dequantized values; torch_dtype " << config.value("torch_dtype", std::string("?")) << ")\n";
    }
    std::string dlist;
    for (const auto& d : dtypes) dlist += (dlist.empty() ? "" : ",") + d;
    os << "  adapter: " << modules << " modules, r=" << acfg.value("r", nlohmann::json()).dump() << ", lora_alpha="
       << acfg.value("lora_alpha", nlohmann::json()).dump() << ", use_rslora="
       << acfg.value("use_rslora", nlohmann::json()).dump() << ", dtype " << dlist << ", target_modules "
       << acfg.value("target_modules", nlohmann::json()).dump() << ", rank_pattern "
       << acfg.value("rank_pattern", nlohmann::json()).dump() << "\n";
    std::error_code ec;
    if (std::filesystem::exists(dir + "/report.json", ec)) {
        const nlohmann::json rep = json_file(dir + "/report.json");
        const nlohmann::json t = rep.value("totals", nlohmann::json::object());
        os << "  report: " << t.value("matrices", 0) << " matrices, error mean QLoRA "
           << t.value("mean_qlora_error", 0.0) << " -> LoftQ " << t.value("mean_loftq_error", 0.0)
           << ", RMS QLoRA " << t.value("rms_qlora_error", 0.0) << " -> LoftQ " << t.value("rms_loftq_error", 0.0)
           << ", worse than QLoRA on " << t.value("worse_than_qlora", 0) << "\n";
        for (const auto& n : rep.value("notes", nlohmann::json::array())) os << "  note: " << n.get<std::string>() << "\n";
    }
    return os.str();
}

}  // namespace

int cmd_inspect(const Config& cfg) {
    if (process_rank() != 0) return 0;  // reading and printing is rank 0's alone
    const Checkpoint ck(cfg.inspect_path);
    std::string listing = inspect_listing(ck);
    std::error_code ec;
    if (std::filesystem::is_regular_file(cfg.inspect_path + "/loftq_init/adapter_config.json", ec))
        listing += output_summary(ck, cfg.inspect_path);
    std::fwrite(listing.data(), 1, listing.size(), stdout);
    std::fflush(stdout);
    return 0;
}

}  // namespace loftq
