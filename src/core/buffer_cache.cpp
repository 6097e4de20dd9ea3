#include "core/buffer_cache.hpp"

#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/error.hpp"

namespace loftq {
namespace {

struct Cache {
    std::mutex mutex;
    std::multimap<size_t, void*> free_by_size;     // cached: capacity -> buffer
    std::unordered_map<void*, size_t> capacity;    // every buffer acquired through the cache
    const bool enabled = [] {
        const char* v = std::getenv("LOFTQ_BUFFER_CACHE");
        return !(v && std::strcmp(v, "0") == 0);
    }();
};

Cache& cache() {
    static Cache* c = new Cache();  // never destroyed: buffers may be released during exit
    return *c;
}

void* allocate_aligned(size_t bytes) {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) LOFTQ_THROW(BackendError, "cannot allocate ", bytes, " bytes [", process_tag(), "]");
    return p;
}

// Frees every held buffer; the caller holds the mutex.
void drop_held(Cache& c) noexcept {
    for (auto& [size, p] : c.free_by_size) {
        c.capacity.erase(p);
        std::free(p);
    }
    c.free_by_size.clear();
}

}  // namespace

void* cache_acquire(size_t bytes) {
    if (bytes == 0) return nullptr;
    Cache& c = cache();
    if (bytes < kMinCachedBytes || !c.enabled) return allocate_aligned(bytes);
    std::lock_guard<std::mutex> lock(c.mutex);
    auto fit = c.free_by_size.lower_bound(bytes);
    if (fit != c.free_by_size.end()) {
        // Of the buffers of that capacity, the one released last (equal keys keep their insertion
        // order): a matrix releases its buffers in the reverse order it acquired them, so the
        // next one of the same shape gets each buffer back in the same role, and a buffer a role
        // never touches (the loop's low-rank scratch, on the CPU) stays untouched, not resident.
        fit = std::prev(c.free_by_size.upper_bound(fit->first));
        void* p = fit->second;
        c.free_by_size.erase(fit);
        return p;
    }
    // Nothing cached holds it: what is cached is smaller, and goes back before a fresh buffer.
    drop_held(c);
    void* p = allocate_aligned(bytes);
    c.capacity[p] = bytes;
    return p;
}

void cache_release(void* p) noexcept {
    if (!p) return;
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    const auto it = c.capacity.find(p);
    if (it == c.capacity.end()) {  // small, or acquired while the cache was off
        std::free(p);
        return;
    }
    c.free_by_size.emplace(it->second, p);
}

size_t cache_held_buffers() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    return c.free_by_size.size();
}

size_t cache_held_bytes() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    size_t total = 0;
    for (const auto& [size, p] : c.free_by_size) total += size;
    return total;
}

void cache_clear() noexcept {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    drop_held(c);
}

}  // namespace loftq
