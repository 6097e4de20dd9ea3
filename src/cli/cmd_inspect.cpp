// `loftq inspect PATH`: every tensor of a .safetensors file or a model folder (single file or
// sharded with an index), then totals. The whole checkpoint is validated before anything is
// printed, so a bad file gives one error line and no partial listing. Rank 0 alone prints.
#include <cstdio>
#include <sstream>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"

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
    return os.str();
}

}  // namespace

int cmd_inspect(const Config& cfg) {
    if (process_rank() != 0) return 0;  // reading and printing is rank 0's alone
    const std::string listing = inspect_listing(Checkpoint(cfg.inspect_path));
    std::fwrite(listing.data(), 1, listing.size(), stdout);
    std::fflush(stdout);
    return 0;
}

}  // namespace loftq
