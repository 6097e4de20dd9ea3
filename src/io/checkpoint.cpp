#include "io/checkpoint.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "core/error.hpp"
#include "io/json_strict.hpp"

namespace loftq {
namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr uint64_t kMaxIndexBytes = 100000000;

bool is_dir(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}

// A shard name must stay inside the folder: a plain file name, never a path.
bool plain_file_name(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
           s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

struct Checkpoint::Impl {
    std::string path;
    std::string index_path;       // empty unless sharded
    std::vector<std::string> names;
    std::map<std::string, size_t> shard_index;  // tensor -> shard
    std::vector<std::string> shard_paths;
    std::vector<std::vector<std::string>> shard_names;  // per shard, the tensors the index puts there
    std::vector<std::unique_ptr<SafetensorsFile>> files;
    std::mutex mutex;

    void open_single(const std::string& file);
    void open_index(const std::string& folder);
    const SafetensorsFile& shard(size_t i);
    size_t shard_of(const std::string& name) const {
        auto it = shard_index.find(name);
        if (it == shard_index.end())
            LOFTQ_THROW(InputError, index_path.empty() ? shard_paths[0] : index_path, ": no tensor ", quoted_name(name));
        return it->second;
    }
};

void Checkpoint::Impl::open_single(const std::string& file) {
    shard_paths = {file};
    files.push_back(std::make_unique<SafetensorsFile>(file));
    shard_names.emplace_back();
    for (const auto& t : files[0]->tensors()) {
        names.push_back(t.name);
        shard_index[t.name] = 0;
        shard_names[0].push_back(t.name);
    }
    std::sort(names.begin(), names.end());
}

void Checkpoint::Impl::open_index(const std::string& folder) {
    const nlohmann::json root = read_json_file(index_path, "index", kMaxIndexBytes);
    if (!root.is_object()) LOFTQ_THROW(InputError, index_path, ": not a JSON object");
    if (root.contains("metadata") && !root["metadata"].is_null()) {
        const nlohmann::json& meta = root["metadata"];
        if (!meta.is_object()) LOFTQ_THROW(InputError, index_path, ": 'metadata' is not an object");
        // Informational only (transformers ignores it); some tools write it as a float.
        if (meta.contains("total_size") && !(meta["total_size"].is_number() && meta["total_size"].get<double>() >= 0))
            LOFTQ_THROW(InputError, index_path, ": 'metadata.total_size' ", meta["total_size"].dump(),
                        " is not a byte count");
    }
    if (!root.contains("weight_map")) LOFTQ_THROW(InputError, index_path, ": no 'weight_map'");
    const nlohmann::json& wm = root["weight_map"];
    if (!wm.is_object()) LOFTQ_THROW(InputError, index_path, ": 'weight_map' is not an object");
    if (wm.empty()) LOFTQ_THROW(InputError, index_path, ": 'weight_map' lists no tensors");
    std::map<std::string, size_t> shard_ids;
    for (const auto& [name, v] : wm.items()) {  // sorted by name (std::map-backed json)
        if (!v.is_string())
            LOFTQ_THROW(InputError, index_path, ": tensor ", quoted_name(name), ": shard is not a file name string");
        const std::string file = v.get<std::string>();
        if (!plain_file_name(file))
            LOFTQ_THROW(InputError, index_path, ": tensor ", quoted_name(name), ": shard ", quoted_name(file),
                        " is not a plain file name inside the folder");
        auto [it, fresh] = shard_ids.emplace(file, shard_paths.size());
        if (fresh) {
            shard_paths.push_back(folder + "/" + file);
            shard_names.emplace_back();
        }
        names.push_back(name);
        shard_index[name] = it->second;
        shard_names[it->second].push_back(name);
    }
    for (const auto& p : shard_paths)
        if (!exists(p)) LOFTQ_THROW(InputError, p, ": shard listed by ", index_path, " is missing");
    files.resize(shard_paths.size());
}

const SafetensorsFile& Checkpoint::Impl::shard(size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (files[i]) return *files[i];
    auto f = std::make_unique<SafetensorsFile>(shard_paths[i]);
    // Cross-check against the index in both directions.
    for (const auto& name : shard_names[i])
        if (!f->contains(name))
            LOFTQ_THROW(InputError, shard_paths[i], ": tensor ", quoted_name(name), " listed for this shard by ", index_path,
                        " is not in it");
    for (const auto& t : f->tensors()) {
        auto it = shard_index.find(t.name);
        if (it == shard_index.end())
            LOFTQ_THROW(InputError, shard_paths[i], ": tensor ", quoted_name(t.name), " is not listed in ", index_path);
        if (it->second != i)
            LOFTQ_THROW(InputError, shard_paths[i], ": tensor ", quoted_name(t.name), " is duplicated: ", index_path,
                        " maps it to ", shard_paths[it->second]);
    }
    files[i] = std::move(f);
    return *files[i];
}

Checkpoint::Checkpoint(const std::string& path) : impl_(std::make_unique<Impl>()) {
    impl_->path = path;
    if (!exists(path)) LOFTQ_THROW(InputError, path, ": no such file or folder");
    if (!is_dir(path)) {
        impl_->open_single(path);
        return;
    }
    std::string folder = path;
    while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    if (exists(folder + "/" + kSingleName)) {  // transformers prefers the single file too
        impl_->open_single(folder + "/" + kSingleName);
    } else if (exists(folder + "/" + kIndexName)) {
        impl_->index_path = folder + "/" + kIndexName;
        impl_->open_index(folder);
    } else {
        LOFTQ_THROW(InputError, path, ": no ", kSingleName, " or ", kIndexName, " in this folder");
    }
}

Checkpoint::~Checkpoint() = default;
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;

const std::string& Checkpoint::path() const { return impl_->path; }
bool Checkpoint::sharded() const { return !impl_->index_path.empty(); }
const std::string& Checkpoint::index_path() const { return impl_->index_path; }
const std::vector<std::string>& Checkpoint::names() const { return impl_->names; }
bool Checkpoint::contains(const std::string& name) const { return impl_->shard_index.count(name) != 0; }
const std::vector<std::string>& Checkpoint::shard_paths() const { return impl_->shard_paths; }
const std::string& Checkpoint::shard_of(const std::string& name) const {
    return impl_->shard_paths[impl_->shard_of(name)];
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
    return impl_->shard(impl_->shard_of(name));
}
const TensorInfo& Checkpoint::info(const std::string& name) const { return file_of(name).info(name); }

std::vector<float> Checkpoint::read_f32(const std::string& name, FiniteCheck check) const {
    return file_of(name).read_f32(name, check);
}
void Checkpoint::read_f32_into(const std::string& name, uint64_t first, uint64_t count, float* dst,
                               FiniteCheck check) const {
    file_of(name).read_f32_into(name, first, count, dst, check);
}

void Checkpoint::validate_all() const {
    for (size_t i = 0; i < impl_->shard_paths.size(); ++i) impl_->shard(i);
}

}  // namespace loftq
