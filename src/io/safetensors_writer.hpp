// Writing safetensors: one file (SafetensorsWriter) or a sharded set + index
// (ShardedSafetensorsWriter), streaming one tensor at a time, deterministic to the byte.
//
// Both take the full list of tensors up front (names, dtypes, shapes, in the order they will be
// written), so the header is written first and memory stays about one tensor. Output goes to a
// temporary name in the target folder (".NAME.tmp-<pid>") and is renamed only by finish();
// an unfinished writer removes its temporary files when destroyed. The same specs and bytes
// always give byte-identical files.
//
// Layout: 8-byte LE header length N, compact JSON header ("__metadata__" first, then the tensors
// in spec order, each {"dtype", "shape", "data_offsets"}), padded with spaces so 8 + N is a
// multiple of 8, then the tensor bytes back to back in spec order.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/atomic_file.hpp"
#include "io/safetensors.hpp"

namespace loftq {

struct TensorSpec {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;

    uint64_t nbytes() const;  // numel * itemsize; throws Error on a negative dim or overflow
};

// transformers' default metadata.
inline TensorMetadata default_metadata() { return {{"format", "pt"}}; }

// The exact header bytes (8-byte length + padded JSON) for these specs and metadata.
std::string safetensors_header(const std::vector<TensorSpec>& specs, const TensorMetadata& metadata);

class SafetensorsWriter {
public:
    // Creates the temporary file and writes the header. Throws Error on duplicate or empty
    // names, a bad shape, or a file that cannot be created.
    SafetensorsWriter(std::string path, std::vector<TensorSpec> specs,
                      TensorMetadata metadata = default_metadata());
    ~SafetensorsWriter();  // removes the temporary file unless finished
    SafetensorsWriter(const SafetensorsWriter&) = delete;
    SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

    // The next tensor's bytes: name must be the next spec's, nbytes its exact size (Error if not).
    void write(const std::string& name, const void* data, uint64_t nbytes);
    // Part of the next tensor (e.g. a block of rows of a large matrix): parts of one tensor come
    // in order and must add up to its size (Error past it); it is complete when they do.
    void append(const std::string& name, const void* data, uint64_t nbytes);
    // All tensors written: flush, fsync, close and rename to the final path.
    void finish();

    // For ShardedSafetensorsWriter: flush and close but keep the temporary name; commit() renames.
    void close();
    void commit();

    const std::string& path() const { return path_; }
    const std::string& temp_path() const { return file_->temp_path(); }
    size_t tensors_written() const { return next_; }

private:
    std::string path_;
    std::vector<TensorSpec> specs_;
    std::optional<AtomicFileWriter> file_;  // engaged once the specs are checked
    size_t next_ = 0;
    uint64_t part_ = 0;  // bytes of specs_[next_] written so far
    bool closed_ = false;
    bool committed_ = false;
};

// One shard of a plan: its file name and the spec indices it holds (consecutive, in order).
struct ShardPlan {
    std::string file_name;
    std::vector<size_t> tensors;
    uint64_t nbytes = 0;
};

// Greedy in spec order, as transformers does: a tensor opens a new shard when adding it would
// pass max_shard_size and the current shard is not empty (so a tensor larger than the limit gets
// a shard of its own). Names "model-00001-of-0000K.safetensors", or "model.safetensors" if K == 1.
// keep_with_previous[i] (optional): spec i goes into the shard of spec i - 1, and a group (a
// tensor and the ones kept with it) is placed as one (bitsandbytes' 4-bit components must share
// the weight's shard: transformers collects them from the shard it is loading).
std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& specs, uint64_t max_shard_size,
                                   const std::vector<bool>& keep_with_previous = {});

class ShardedSafetensorsWriter {
public:
    // Plans the shards of `specs` in `folder` (which must exist); keep_with_previous as plan_shards'.
    ShardedSafetensorsWriter(std::string folder, std::vector<TensorSpec> specs, uint64_t max_shard_size,
                             TensorMetadata metadata = default_metadata(),
                             const std::vector<bool>& keep_with_previous = {});
    ~ShardedSafetensorsWriter();  // removes every temporary file unless finished
    ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
    ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

    // The next tensor in spec order (Error on wrong name or size); append() as SafetensorsWriter's.
    void write(const std::string& name, const void* data, uint64_t nbytes);
    void append(const std::string& name, const void* data, uint64_t nbytes);
    // Every tensor written: renames the shards, then writes and renames
    // model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}) when K > 1.
    void finish();

    const std::vector<ShardPlan>& shards() const { return plan_; }
    const std::string& folder() const { return folder_; }

private:
    std::string folder_;
    std::vector<TensorSpec> specs_;
    TensorMetadata metadata_;
    std::vector<ShardPlan> plan_;
    std::vector<std::unique_ptr<SafetensorsWriter>> done_;  // closed, awaiting commit
    std::unique_ptr<SafetensorsWriter> current_;
    size_t shard_ = 0;  // index of current_ in plan_
    void open_shard_for(const std::string& name);
    bool finished_ = false;
};

// The index file's text (indent 2, keys sorted, trailing newline), as transformers writes it.
std::string safetensors_index_json(const std::vector<TensorSpec>& specs, const std::vector<ShardPlan>& plan);

}  // namespace loftq
