// A checkpoint as the user names it: one .safetensors file, or a model folder holding either
// model.safetensors or a sharded set listed by model.safetensors.index.json
// ({"metadata": {"total_size": ...}, "weight_map": {tensor: shard file}}).
//
// Opening validates the index (valid JSON, a weight_map of plain shard file names inside the
// folder, every shard present). Shards are opened (mmap + full header validation) on first use
// and kept open; opening a shard also checks it against the index: every tensor the index puts
// there exists, and every tensor it holds is mapped to it (so a tensor in two shards, or in a
// shard the index does not list for it, is an error). validate_all() opens every shard now.
// Errors are InputError naming the file (index or shard) and the tensor.
// Thread-safe for concurrent reads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.hpp"

namespace loftq {

class Checkpoint {
public:
    explicit Checkpoint(const std::string& path);
    ~Checkpoint();
    Checkpoint(Checkpoint&&) noexcept;
    Checkpoint& operator=(Checkpoint&&) noexcept;

    const std::string& path() const;  // as given
    bool sharded() const;             // read through an index file
    const std::string& index_path() const;  // empty when not sharded

    // Every tensor name, sorted. For a sharded checkpoint these come from the index.
    const std::vector<std::string>& names() const;
    bool contains(const std::string& name) const;
    // The shard files (full paths), in first-appearance order of the sorted names.
    const std::vector<std::string>& shard_paths() const;
    // Full path of the file holding `name`.
    const std::string& shard_of(const std::string& name) const;

    // Dtype, shape, byte range inside its shard (opens the shard). InputError when absent.
    const TensorInfo& info(const std::string& name) const;
    // The opened file holding `name` (raw bytes, typed reads, metadata).
    const SafetensorsFile& file_of(const std::string& name) const;
    const unsigned char* raw(const std::string& name) const { return file_of(name).raw(name); }
    std::vector<float> read_f32(const std::string& name, FiniteCheck check = FiniteCheck::off) const;
    void read_f32_into(const std::string& name, uint64_t first, uint64_t count, float* dst,
                       FiniteCheck check = FiniteCheck::off) const;

    // Open and cross-check every shard now.
    void validate_all() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace loftq
