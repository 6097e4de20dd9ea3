// Reading one .safetensors file: mmap, validate the whole header at open, read tensors lazily.
//
// Every rule of spec/FORMATS.md section 5 is checked when the file is opened (header length,
// UTF-8, JSON shape, dtypes, shapes, byte sizes, tiling of the data buffer, no trailing bytes,
// no duplicate names); a violation is an InputError of one line naming the file and the tensor.
// Reading a tensor touches only the pages of that tensor: a multi-GB file is never copied whole.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace loftq {

using TensorMetadata = std::map<std::string, std::string>;

// One tensor of a file. begin/end are byte offsets into the data buffer (end exclusive).
struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;  // row-major; every dim >= 0; empty = scalar
    uint64_t begin = 0;
    uint64_t end = 0;

    uint64_t numel() const;  // product of shape (1 for a scalar)
    uint64_t nbytes() const { return end - begin; }
};

// Drop the pages of a read-only mapping range from this process (they stay in the page cache):
// a rank that has copied a tensor out of the mapping no longer counts it in its RSS, so memory
// per rank follows the matrices it holds, not everything it has read. read_f32_into does this.
void release_mapped_pages(const void* p, uint64_t bytes);

// Whether read_f32 rejects NaN / Inf (named, not a bare bool).
enum class FiniteCheck { off, reject };

// Product of dims into `numel` and numel * itemsize into `nbytes`; false on a negative dim or
// on overflow of uint64.
bool checked_tensor_size(const std::vector<int64_t>& shape, DType dtype, uint64_t& numel, uint64_t& nbytes);

// "[4, 4]"
std::string shape_string(const std::vector<int64_t>& shape);
// 'name' with control characters escaped, so that a message stays one line.
std::string quoted_name(const std::string& text);

class SafetensorsFile {
public:
    // mmap `path` and validate it; throws InputError naming the file (and tensor).
    explicit SafetensorsFile(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(SafetensorsFile&& other) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return size_; }
    uint64_t header_size() const { return header_len_; }  // N (JSON bytes, padding included)

    // Tensors in data-offset order (the order they are stored).
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorMetadata& metadata() const { return metadata_; }
    bool contains(const std::string& name) const;
    // Throws InputError naming the file and tensor when absent.
    const TensorInfo& info(const std::string& name) const;

    // The tensor's bytes inside the mapping (little-endian, unaligned: read with memcpy).
    // Valid while this object lives.
    const unsigned char* raw(const std::string& name) const;

    // Widen F32 / F16 / BF16 to float32 (numel() values). With FiniteCheck::reject, a NaN or Inf
    // throws InputError naming file, tensor and the first bad element index.
    std::vector<float> read_f32(const std::string& name, FiniteCheck check = FiniteCheck::off) const;
    // Elements [first, first + count) of the flattened tensor into dst (count floats).
    void read_f32_into(const std::string& name, uint64_t first, uint64_t count, float* dst,
                       FiniteCheck check = FiniteCheck::off) const;

    // A typed copy; the tensor's dtype must be exactly T's (uint8_t = U8, int8_t = I8,
    // int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t, float = F32, double = F64).
    template <typename T>
    std::vector<T> read_as(const std::string& name) const;

private:
    void parse_header(const unsigned char* json, uint64_t n);
    void check_layout();
    const TensorInfo& find(const std::string& name) const;

    std::string path_;
    int fd_ = -1;
    unsigned char* map_ = nullptr;
    uint64_t size_ = 0;
    uint64_t header_len_ = 0;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> index_;  // name -> position in tensors_
    TensorMetadata metadata_;
};

// Scan float32 values for NaN / Inf; returns the index of the first, or count when all finite.
uint64_t first_non_finite(const float* values, uint64_t count);

}  // namespace loftq
