// Large host buffers kept for the next matrix. A rank runs matrix after matrix, each needing a few
// buffers of its size (W as read, the residual, the low-rank term); freed, they go back to the
// kernel, and the next matrix's pages are fresh again: zeroed by the kernel on first touch and, in
// a virtual machine, often faulted in by the host too (here the first product into a fresh
// 28672 x 8192 buffer took several times as long as the next ones). The cache hands a released
// buffer to the next request it can hold, so a rank touches each page once.
//
// Memory stays bounded by the largest set of buffers one matrix held at once: a request is served
// by the smallest cached buffer that holds it; if none does, every cached buffer is freed first
// (they are all smaller), then a fresh one is allocated. Only matrix-sized buffers (32 MB and up)
// are cached: a sketch or workspace of a few MB must not take a matrix's buffer, which the same
// matrix then allocates again. Buffers are 64-byte aligned and not initialised (as
// std::aligned_alloc). Thread-safe. LOFTQ_BUFFER_CACHE=0 turns it off.
#pragma once

#include <cstddef>

namespace loftq {

// A buffer of at least `bytes` (64-byte aligned); nullptr when bytes == 0. Throws BackendError
// when memory cannot be allocated. Buffers under kMinCachedBytes bypass the cache.
void* cache_acquire(size_t bytes);
// Return a buffer cache_acquire gave (nullptr: nothing). Never throws.
void cache_release(void* p) noexcept;
// What the cache holds now: buffers and their bytes (for tests and logs).
size_t cache_held_buffers();
size_t cache_held_bytes();
// Frees every cached buffer.
void cache_clear() noexcept;

constexpr size_t kMinCachedBytes = size_t{32} << 20;

// An owning handle of a cached float buffer.
class CachedFloats {
public:
    explicit CachedFloats(size_t count) : p_(static_cast<float*>(cache_acquire(count * sizeof(float)))) {}
    ~CachedFloats() { cache_release(p_); }
    CachedFloats(const CachedFloats&) = delete;
    CachedFloats& operator=(const CachedFloats&) = delete;
    float* get() const { return p_; }

private:
    float* p_;
};

}  // namespace loftq
