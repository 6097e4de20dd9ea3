#include "io/safetensors_writer.hpp"

#include <cstdio>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/json_strict.hpp"

namespace loftq {
namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

bool valid_utf8(const std::string& s) {
    return first_invalid_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == s.size();
}

void check_specs(const std::vector<TensorSpec>& specs, const TensorMetadata& metadata, const std::string& where) {
    for (const auto& [k, v] : metadata)
        if (!valid_utf8(k) || !valid_utf8(v)) LOFTQ_THROW(Error, where, ": metadata ", quoted_name(k), " is not UTF-8");
    std::set<std::string> seen;
    for (const auto& s : specs) {
        if (!valid_utf8(s.name)) LOFTQ_THROW(Error, where, ": tensor name ", quoted_name(s.name), " is not UTF-8");
        if (s.name.empty() || s.name == "__metadata__")
            LOFTQ_THROW(Error, where, ": invalid tensor name ", quoted_name(s.name));
        if (!seen.insert(s.name).second) LOFTQ_THROW(Error, where, ": duplicate tensor name ", quoted_name(s.name));
        s.nbytes();
    }
}

}  // namespace

uint64_t TensorSpec::nbytes() const {
    uint64_t numel = 0, bytes = 0;
    if (!checked_tensor_size(shape, dtype, numel, bytes))
        LOFTQ_THROW(Error, "tensor ", quoted_name(name), ": shape ", shape_string(shape), " is negative or overflows");
    return bytes;
}

std::string safetensors_header(const std::vector<TensorSpec>& specs, const TensorMetadata& metadata) {
    // ordered_json keeps insertion order: __metadata__ first, then the tensors in spec order.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) meta[k] = v;
        header["__metadata__"] = meta;
    }
    uint64_t offset = 0;
    for (const auto& s : specs) {
        const uint64_t n = s.nbytes();
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = dtype_name(s.dtype);
        entry["shape"] = s.shape;
        entry["data_offsets"] = {offset, offset + n};
        header[s.name] = entry;
        offset += n;
    }
    std::string json = header.dump();
    json.append((8 - json.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xffu);
    return out + json;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> specs, TensorMetadata metadata)
    : path_(std::move(path)), specs_(std::move(specs)) {
    check_specs(specs_, metadata, path_);  // before the temporary exists: a refusal leaves nothing
    const std::string header = safetensors_header(specs_, metadata);
    file_.emplace(path_);
    file_->write(header);
}

SafetensorsWriter::~SafetensorsWriter() = default;  // file_ removes its temporary unless committed

void SafetensorsWriter::write(const std::string& name, const void* data, uint64_t nbytes) {
    if (next_ < specs_.size() && part_ == 0 && name == specs_[next_].name && nbytes != specs_[next_].nbytes()) {
        const TensorSpec& s = specs_[next_];
        LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), ": ", nbytes, " bytes written, dtype ",
                    dtype_name(s.dtype), " shape ", shape_string(s.shape), " needs ", s.nbytes());
    }
    if (part_ != 0)
        LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), " written whole while ",
                    quoted_name(specs_[next_].name), " is half appended");
    append(name, data, nbytes);
}

void SafetensorsWriter::append(const std::string& name, const void* data, uint64_t nbytes) {
    if (closed_) LOFTQ_THROW(Error, path_, ": write of ", quoted_name(name), " after close");
    if (next_ >= specs_.size())
        LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), " written but all ", specs_.size(), " are done");
    const TensorSpec& s = specs_[next_];
    if (name != s.name)
        LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), " written where ", quoted_name(s.name),
                    " comes next");
    const uint64_t need = s.nbytes();
    if (nbytes > need - part_)
        LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), ": ", part_ + nbytes, " bytes written, dtype ",
                    dtype_name(s.dtype), " shape ", shape_string(s.shape), " needs ", need);
    if (nbytes > 0 && data == nullptr) LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), ": null data");
    file_->write(data, static_cast<size_t>(nbytes));
    part_ += nbytes;
    if (part_ == need) {
        ++next_;
        part_ = 0;
    }
}

void SafetensorsWriter::close() {
    if (closed_) return;
    if (next_ != specs_.size())
        LOFTQ_THROW(Error, path_, ": closed after ", next_, " of ", specs_.size(), " tensors (next ",
                    quoted_name(specs_[next_].name), ")");
    file_->close();
    closed_ = true;
}

void SafetensorsWriter::commit() {
    if (!closed_) LOFTQ_THROW(Error, path_, ": commit before close");
    if (committed_) return;
    file_->commit();
    committed_ = true;
}

void SafetensorsWriter::finish() {
    close();
    commit();
}

std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& specs, uint64_t max_shard_size,
                                   const std::vector<bool>& keep_with_previous) {
    auto kept = [&](size_t i) { return i > 0 && i < keep_with_previous.size() && keep_with_previous[i]; };
    std::vector<ShardPlan> plan;
    for (size_t i = 0; i < specs.size(); ++i) {
        const uint64_t n = specs[i].nbytes();
        uint64_t group = n;  // a tensor and those kept with it are placed as one
        for (size_t j = i + 1; j < specs.size() && kept(j); ++j) group += specs[j].nbytes();
        if (plan.empty() || (!kept(i) && !plan.back().tensors.empty() && plan.back().nbytes + group > max_shard_size))
            plan.emplace_back();
        plan.back().tensors.push_back(i);
        plan.back().nbytes += n;
    }
    if (plan.empty()) plan.emplace_back();  // no tensors: one empty file
    const size_t k = plan.size();
    for (size_t s = 0; s < k; ++s) {
        if (k == 1) {
            plan[s].file_name = "model.safetensors";
        } else {
            char buf[64];
            std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, k);
            plan[s].file_name = buf;
        }
    }
    return plan;
}

std::string safetensors_index_json(const std::vector<TensorSpec>& specs, const std::vector<ShardPlan>& plan) {
    nlohmann::json index;  // std::map-backed: keys sorted, like json.dumps(sort_keys=True)
    uint64_t total = 0;
    nlohmann::json weight_map = nlohmann::json::object();
    for (const auto& shard : plan)
        for (size_t i : shard.tensors) {
            weight_map[specs[i].name] = shard.file_name;
            total += specs[i].nbytes();
        }
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    return index.dump(2) + "\n";
}

ShardedSafetensorsWriter::ShardedSafetensorsWriter(std::string folder, std::vector<TensorSpec> specs,
                                                   uint64_t max_shard_size, TensorMetadata metadata,
                                                   const std::vector<bool>& keep_with_previous)
    : folder_(std::move(folder)), specs_(std::move(specs)), metadata_(std::move(metadata)) {
    if (max_shard_size == 0) LOFTQ_THROW(Error, folder_, ": max shard size must be positive");
    check_specs(specs_, metadata_, folder_);
    plan_ = plan_shards(specs_, max_shard_size, keep_with_previous);
}

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() = default;  // each writer unlinks its temp

// Make current_ the writer of the shard that holds the next tensor.
void ShardedSafetensorsWriter::open_shard_for(const std::string& name) {
    if (finished_) LOFTQ_THROW(Error, folder_, ": write of ", quoted_name(name), " after finish");
    while (!current_ || current_->tensors_written() == plan_[shard_].tensors.size()) {
        if (current_) {
            current_->close();
            done_.push_back(std::move(current_));
            ++shard_;
        }
        if (shard_ >= plan_.size())
            LOFTQ_THROW(Error, folder_, ": tensor ", quoted_name(name), " written but all ", specs_.size(),
                        " are done");
        std::vector<TensorSpec> specs;
        for (size_t i : plan_[shard_].tensors) specs.push_back(specs_[i]);
        current_ = std::make_unique<SafetensorsWriter>(folder_ + "/" + plan_[shard_].file_name, std::move(specs),
                                                       metadata_);
    }
}

void ShardedSafetensorsWriter::write(const std::string& name, const void* data, uint64_t nbytes) {
    open_shard_for(name);
    current_->write(name, data, nbytes);
}

void ShardedSafetensorsWriter::append(const std::string& name, const void* data, uint64_t nbytes) {
    open_shard_for(name);
    current_->append(name, data, nbytes);
}

void ShardedSafetensorsWriter::finish() {
    if (finished_) return;
    if (!current_ && specs_.empty()) {  // a checkpoint of no tensors: one empty file
        current_ = std::make_unique<SafetensorsWriter>(folder_ + "/" + plan_[0].file_name,
                                                       std::vector<TensorSpec>{}, metadata_);
    }
    if (!current_ || shard_ + 1 != plan_.size() || current_->tensors_written() != plan_[shard_].tensors.size()) {
        size_t written = 0;
        for (const auto& w : done_) written += w->tensors_written();
        if (current_) written += current_->tensors_written();
        LOFTQ_THROW(Error, folder_, ": finish after ", written, " of ", specs_.size(), " tensors");
    }
    current_->close();
    done_.push_back(std::move(current_));
    // The index is written before any shard is renamed, so a full disk stops the set before a
    // reader can see shards without their index.
    std::optional<AtomicFileWriter> index;
    if (plan_.size() > 1) {
        index.emplace(folder_ + "/" + kIndexName);
        index->write(safetensors_index_json(specs_, plan_));
        index->close();
    }
    for (auto& w : done_) w->commit();
    if (index) index->commit();
    finished_ = true;
}

}  // namespace loftq
