#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "io/safetensors_header.hpp"

namespace loftq {
namespace {

constexpr uint64_t kMaxHeader = 100000000;  // the reference loader's MAX_HEADER_SIZE

template <typename T>
struct DTypeOf;
#define LOFTQ_DTYPE_OF(T, D) \
    template <>              \
    struct DTypeOf<T> {      \
        static constexpr DType value = DType::D; \
    };
LOFTQ_DTYPE_OF(uint8_t, U8)
LOFTQ_DTYPE_OF(int8_t, I8)
LOFTQ_DTYPE_OF(int16_t, I16)
LOFTQ_DTYPE_OF(uint16_t, U16)
LOFTQ_DTYPE_OF(int32_t, I32)
LOFTQ_DTYPE_OF(uint32_t, U32)
LOFTQ_DTYPE_OF(int64_t, I64)
LOFTQ_DTYPE_OF(uint64_t, U64)
LOFTQ_DTYPE_OF(float, F32)
LOFTQ_DTYPE_OF(double, F64)
#undef LOFTQ_DTYPE_OF

// "[0, 5]" for flat index 5 of shape [4, 8].
std::string multi_index(uint64_t flat, const std::vector<int64_t>& shape) {
    std::vector<int64_t> idx(shape.size());
    for (size_t d = shape.size(); d-- > 0;) {
        const auto dim = static_cast<uint64_t>(shape[d]);
        idx[d] = static_cast<int64_t>(flat % dim);
        flat /= dim;
    }
    return shape_string(idx);
}

}  // namespace

bool checked_tensor_size(const std::vector<int64_t>& shape, DType dtype, uint64_t& numel, uint64_t& nbytes) {
    uint64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) return false;
        if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
    }
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(dtype_size(dtype)), &nbytes)) return false;
    numel = n;
    return true;
}

uint64_t TensorInfo::numel() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // validated at open: no overflow
    return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

std::string quoted_name(const std::string& text) {
    std::string s = "'";
    for (unsigned char c : text) {
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            s += buf;
        } else {
            s += static_cast<char>(c);
        }
    }
    return s + "'";
}

uint64_t first_non_finite(const float* values, uint64_t count) {
    // Branch-free test per chunk (vectorises); locate the element only when a chunk has one.
    constexpr uint64_t kChunk = 4096;
    for (uint64_t start = 0; start < count; start += kChunk) {
        const uint64_t end = std::min(count, start + kChunk);
        uint32_t bad = 0;
        for (uint64_t i = start; i < end; ++i) {
            uint32_t bits;
            std::memcpy(&bits, values + i, 4);
            bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (bad)
            for (uint64_t i = start; i < end; ++i) {
                uint32_t bits;
                std::memcpy(&bits, values + i, 4);
                if ((bits & 0x7f800000u) == 0x7f800000u) return i;
            }
    }
    return count;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block us
    if (fd_ < 0) LOFTQ_THROW(InputError, path_, ": cannot open: ", std::strerror(errno));
    try {
        struct stat st {};
        if (::fstat(fd_, &st) != 0) LOFTQ_THROW(InputError, path_, ": cannot stat: ", std::strerror(errno));
        if (!S_ISREG(st.st_mode)) LOFTQ_THROW(InputError, path_, ": not a regular file");
        size_ = static_cast<uint64_t>(st.st_size);
        if (size_ < 8)
            LOFTQ_THROW(InputError, path_, ": file is ", size_, " bytes, shorter than the 8-byte header length");
        void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
        if (m == MAP_FAILED) LOFTQ_THROW(InputError, path_, ": cannot mmap: ", std::strerror(errno));
        map_ = static_cast<unsigned char*>(m);
        uint64_t n = 0;
        for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(map_[i]) << (8 * i);
        if (n > kMaxHeader)
            LOFTQ_THROW(InputError, path_, ": header length ", n, " exceeds the limit of ", kMaxHeader, " bytes");
        if (8 + n > size_)
            LOFTQ_THROW(InputError, path_, ": header length ", n, " runs past the end of the file (", size_,
                        " bytes)");
        header_len_ = n;
        parse_header(map_ + 8, n);
        check_layout();
    } catch (...) {
        if (map_) ::munmap(map_, size_);
        ::close(fd_);
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, size_);
    if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), fd_(o.fd_), map_(o.map_), size_(o.size_), header_len_(o.header_len_),
      tensors_(std::move(o.tensors_)), index_(std::move(o.index_)), metadata_(std::move(o.metadata_)) {
    o.fd_ = -1;
    o.map_ = nullptr;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
    std::swap(path_, o.path_);
    std::swap(fd_, o.fd_);
    std::swap(map_, o.map_);
    std::swap(size_, o.size_);
    std::swap(header_len_, o.header_len_);
    std::swap(tensors_, o.tensors_);
    std::swap(index_, o.index_);
    std::swap(metadata_, o.metadata_);
    return *this;  // o now owns (and will release) what this held
}

void SafetensorsFile::parse_header(const unsigned char* json, uint64_t n) {
    ParsedHeader h = parse_safetensors_header(path_, json, n);
    tensors_ = std::move(h.tensors);
    metadata_ = std::move(h.metadata);  // index_ is built by check_layout, after sorting
}

void SafetensorsFile::check_layout() {
    // Sorted by offsets, the tensors must tile [0, buffer size) exactly.
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    index_.clear();
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
    const uint64_t buffer = size_ - 8 - header_len_;
    uint64_t pos = 0;
    const TensorInfo* prev = nullptr;
    for (const auto& t : tensors_) {
        if (t.begin > pos)
            LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(t.name), ": data_offsets [", t.begin, ", ", t.end,
                        "] leave a hole of ", t.begin - pos, " bytes after ",
                        prev ? "tensor " + quoted_name(prev->name) : std::string("the header"));
        if (t.begin < pos)
            LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(t.name), ": data_offsets [", t.begin, ", ", t.end,
                        "] overlap tensor ", quoted_name(prev->name), " (ends at ", pos, ")");
        pos = t.end;
        prev = &t;
    }
    if (pos != buffer) {
        if (pos > buffer)
            LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(prev->name), ": data_offsets end at ", pos,
                        " but the data buffer holds ", buffer, " bytes (file truncated?)");
        LOFTQ_THROW(InputError, path_, ": ", buffer - pos, " trailing bytes after the last tensor",
                    prev ? " " + quoted_name(prev->name) : std::string(), " (data buffer ", buffer,
                    " bytes, tensors end at ", pos, ")");
    }
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& SafetensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) LOFTQ_THROW(InputError, path_, ": no tensor ", quoted_name(name));
    return tensors_[it->second];
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const { return find(name); }

void release_mapped_pages(const void* p, uint64_t bytes) {
    if (bytes == 0) return;
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
    const auto end = reinterpret_cast<uintptr_t>(p) + bytes;
    // Read-only file mapping: the pages stay in the page cache and fault back in if read again.
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

const unsigned char* SafetensorsFile::raw(const std::string& name) const {
    return map_ + 8 + header_len_ + find(name).begin;
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name, FiniteCheck check) const {
    const TensorInfo& t = find(name);
    if (!is_float_weight_dtype(t.dtype))
        LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(name), ": dtype ", dtype_name(t.dtype),
                    " cannot be read as float32 (F32, F16 or BF16 expected)");
    std::vector<float> out(t.numel());
    read_f32_into(name, 0, out.size(), out.data(), check);
    return out;
}

void SafetensorsFile::read_f32_into(const std::string& name, uint64_t first, uint64_t count, float* dst,
                                    FiniteCheck check) const {
    const TensorInfo& t = find(name);
    if (!is_float_weight_dtype(t.dtype))
        LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(name), ": dtype ", dtype_name(t.dtype),
                    " cannot be read as float32 (F32, F16 or BF16 expected)");
    const uint64_t numel = t.numel();
    if (first > numel || count > numel - first)
        LOFTQ_THROW(Error, path_, ": tensor ", quoted_name(name), ": elements [", first, ", ", first + count,
                    ") outside its ", numel);
    const size_t item = dtype_size(t.dtype);
    const unsigned char* src = map_ + 8 + header_len_ + t.begin + first * item;
    // Ask the kernel to start reading this range now (only these pages are touched).
    const long page = ::sysconf(_SC_PAGESIZE);
    const auto lo = reinterpret_cast<uintptr_t>(src) & ~static_cast<uintptr_t>(page - 1);
    if (count > 0) ::madvise(reinterpret_cast<void*>(lo), reinterpret_cast<uintptr_t>(src) + count * item - lo,
                             MADV_WILLNEED);
    // Chunks in parallel: page faults of a cold file overlap. Within a chunk, blocks small
    // enough to stay in L1/L2 are widened and then checked while still in cache (one pass over memory).
    constexpr uint64_t kChunk = uint64_t{1} << 20, kBlock = uint64_t{1} << 14;
    const int64_t chunks = static_cast<int64_t>((count + kChunk - 1) / kChunk);
    std::vector<uint64_t> first_bad(static_cast<size_t>(chunks), count);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
        const uint64_t chunk_end = std::min(count, static_cast<uint64_t>(c + 1) * kChunk);
        for (uint64_t b = static_cast<uint64_t>(c) * kChunk; b < chunk_end; b += kBlock) {
            const uint64_t n = std::min(kBlock, chunk_end - b);
            widen_to_f32(t.dtype, src + b * item, n, dst + b);
            if (check == FiniteCheck::reject) {
                const uint64_t bad = first_non_finite(dst + b, n);
                if (bad != n) {
                    first_bad[static_cast<size_t>(c)] = b + bad;
                    break;
                }
            }
        }
    }
    release_mapped_pages(src, count * item);
    const uint64_t bad = first_bad.empty() ? count : *std::min_element(first_bad.begin(), first_bad.end());
    if (bad != count) {
        const uint64_t flat = first + bad;
        LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(name), ": element ", flat, " ",
                    multi_index(flat, t.shape), " is ", std::isnan(dst[bad]) ? "NaN" : "Inf",
                    " (non-finite weights cannot be quantized)");
    }
}

template <typename T>
std::vector<T> SafetensorsFile::read_as(const std::string& name) const {
    const TensorInfo& t = find(name);
    if (t.dtype != DTypeOf<T>::value)
        LOFTQ_THROW(InputError, path_, ": tensor ", quoted_name(name), ": dtype ", dtype_name(t.dtype), ", expected ",
                    dtype_name(DTypeOf<T>::value));
    std::vector<T> out(t.numel());
    if (!out.empty()) std::memcpy(out.data(), map_ + 8 + header_len_ + t.begin, t.nbytes());
    return out;
}

template std::vector<uint8_t> SafetensorsFile::read_as<uint8_t>(const std::string&) const;
template std::vector<int8_t> SafetensorsFile::read_as<int8_t>(const std::string&) const;
template std::vector<int16_t> SafetensorsFile::read_as<int16_t>(const std::string&) const;
template std::vector<uint16_t> SafetensorsFile::read_as<uint16_t>(const std::string&) const;
template std::vector<int32_t> SafetensorsFile::read_as<int32_t>(const std::string&) const;
template std::vector<uint32_t> SafetensorsFile::read_as<uint32_t>(const std::string&) const;
template std::vector<int64_t> SafetensorsFile::read_as<int64_t>(const std::string&) const;
template std::vector<uint64_t> SafetensorsFile::read_as<uint64_t>(const std::string&) const;
template std::vector<float> SafetensorsFile::read_as<float>(const std::string&) const;
template std::vector<double> SafetensorsFile::read_as<double>(const std::string&) const;

}  // namespace loftq
