// Counter-based Gaussian generator shared by host and device code (STYLE.md 7).
//
// Philox4x32-10 (Salmon et al., SC'11) keyed by (seed, FNV-1a 64-bit hash of a name); the counter
// is the element index. Element i of a stream is a pure function of (seed, name, i), so a sketch
// is the same on CPU and GPU and for any number of ranks or threads. Gaussians come from
// Box-Muller evaluated in double and rounded to float: the host (glibc, correctly rounded) and the
// device (CUDA libm, <= 1 ulp in double) then agree bit-for-bit except when a double-level
// difference straddles a float rounding boundary (probability ~1e-8 per element).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.hpp"

namespace loftq::philox {

struct Key {
    uint32_t k0, k1;
    uint32_t c2, c3;  // the name hash occupies the upper half of the counter
};

// FNV-1a 64-bit of a byte string (host only; the result is passed to kernels).
inline uint64_t fnv1a64(const char* s, uint64_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint64_t i = 0; i < len; ++i) {
        h ^= static_cast<unsigned char>(s[i]);
        h *= 0x100000001b3ULL;
    }
    return h;
}

LOFTQ_HD Key make_key(uint64_t seed, uint64_t name_hash) {
    return Key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
               static_cast<uint32_t>(name_hash), static_cast<uint32_t>(name_hash >> 32)};
}

LOFTQ_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
    const uint64_t p = static_cast<uint64_t>(a) * b;
    hi = static_cast<uint32_t>(p >> 32);
    lo = static_cast<uint32_t>(p);
}

// Four 32-bit words for block counter `block` (64 bits) under `key`.
LOFTQ_HD void philox4x32_10(const Key& key, uint64_t block, uint32_t out[4]) {
    uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
    uint32_t c2 = key.c2, c3 = key.c3;
    uint32_t k0 = key.k0, k1 = key.k1;
    for (int round = 0; round < 10; ++round) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(0xD2511F53u, c0, hi0, lo0);
        mulhilo(0xCD9E8D57u, c2, hi1, lo1);
        const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Uniform in (0, 1), never 0 (so log is finite).
LOFTQ_HD double to_unit(uint32_t x) { return (static_cast<double>(x) + 0.5) * 2.3283064365386963e-10; }

// Standard normal number `index` of the stream (seed, name_hash). Four normals per Philox block:
// words (0,1) and (2,3) are two Box-Muller pairs.
LOFTQ_HD float gaussian(const Key& key, uint64_t index) {
    uint32_t w[4];
    philox4x32_10(key, index >> 2, w);
    const int lane = static_cast<int>(index & 3);
    const int pair = lane >> 1;
    const double radius = sqrt(-2.0 * log(to_unit(w[2 * pair])));
    const double angle = 6.283185307179586 * to_unit(w[2 * pair + 1]);
    return static_cast<float>((lane & 1) ? radius * sin(angle) : radius * cos(angle));
}

}  // namespace loftq::philox
