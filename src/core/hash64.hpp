// A small, fast, well-mixed 64-bit hash for the run file's fingerprints and checksums (not for
// security: it catches a different model or damaged data, not an adversary). splitmix64 is the
// finaliser of Vigna's SplitMix64 generator; hash_bytes consumes 8 bytes per step.
//
// Sums of keyed hashes (keyed_sum below) are what make a fingerprint or checksum identical for
// any rank count: each part of the data contributes mix(position, value), parts add modulo 2^64
// (MPI_SUM on uint64), and the sum does not depend on who computed which part.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace loftq {

inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Hash of n bytes: the same value for the same bytes on every machine (little-endian words).
inline uint64_t hash_bytes(const void* data, size_t n, uint64_t seed) {
    const auto* p = static_cast<const unsigned char*>(data);
    uint64_t h = splitmix64(seed ^ (n * 0xD6E8FEB86659FD93ull));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ splitmix64(w)) * 0x9FB21C651E98DF25ull;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    for (size_t k = 0; i + k < n; ++k) tail |= uint64_t{p[i + k]} << (8 * k);
    return splitmix64(h ^ splitmix64(tail ^ 0xA0761D6478BD642Full));
}

// The contribution of `value` at `position` of the data named by `salt` to a keyed sum.
inline uint64_t keyed(uint64_t salt, uint64_t position, uint64_t value) {
    return splitmix64(splitmix64(salt ^ (position * 0xE7037ED1A0B428DBull)) ^ value);
}

}  // namespace loftq
