// The buffer cache (core/buffer_cache.hpp): a rank's next matrix reuses the previous one's pages,
// and what is held never exceeds the largest set of buffers held at once.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "core/buffer_cache.hpp"

namespace loftq {
namespace {

constexpr size_t MB = kMinCachedBytes / 2;  // test sizes are multiples of half the threshold

class BufferCache : public ::testing::Test {
protected:
    void SetUp() override { cache_clear(); }
    void TearDown() override { cache_clear(); }
};

TEST_F(BufferCache, TheNextMatrixGetsThePreviousBuffers) {
    void* a = cache_acquire(8 * MB);
    void* b = cache_acquire(8 * MB);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
    std::memset(a, 1, 8 * MB);  // usable over its whole size
    cache_release(a);
    cache_release(b);
    EXPECT_EQ(cache_held_buffers(), 2u);
    EXPECT_EQ(cache_held_bytes(), 16 * MB);
    void* c = cache_acquire(8 * MB);
    void* d = cache_acquire(3 * MB);  // a smaller matrix: served by a held buffer, nothing new
    EXPECT_TRUE((c == a && d == b) || (c == b && d == a));
    EXPECT_EQ(cache_held_buffers(), 0u);
    cache_release(c);
    cache_release(d);
}

// A matrix acquires W, the residual and the low-rank scratch and releases them in reverse order;
// the next matrix of the same shape must get each back in the same role, so that the scratch,
// which the CPU loop never touches, stays unfaulted (handed to W it made a third buffer resident:
// 3.2 GB instead of 2.3 GB per rank at 70B shapes).
TEST_F(BufferCache, EqualBuffersComeBackInTheirRoles) {
    void* w = cache_acquire(8 * MB);
    void* res = cache_acquire(8 * MB);
    void* low = cache_acquire(8 * MB);
    cache_release(low);
    cache_release(res);
    cache_release(w);
    EXPECT_EQ(cache_acquire(8 * MB), w);
    EXPECT_EQ(cache_acquire(8 * MB), res);
    EXPECT_EQ(cache_acquire(8 * MB), low);
    cache_release(low);
    cache_release(res);
    cache_release(w);
}

TEST_F(BufferCache, TheSmallestBufferThatHoldsTheRequestServesIt) {
    void* big = cache_acquire(12 * MB);
    void* small = cache_acquire(4 * MB);
    cache_release(big);
    cache_release(small);
    void* p = cache_acquire(3 * MB);
    EXPECT_EQ(p, small);
    void* q = cache_acquire(5 * MB);
    EXPECT_EQ(q, big);
    cache_release(p);
    cache_release(q);
}

// A request nothing held can serve frees everything held first: what the cache and its users hold
// together never exceeds the largest set held at once.
TEST_F(BufferCache, ALargerRequestFreesWhatIsHeldFirst) {
    void* a = cache_acquire(2 * MB);
    void* b = cache_acquire(2 * MB);
    cache_release(a);
    cache_release(b);
    EXPECT_EQ(cache_held_bytes(), 4 * MB);
    void* c = cache_acquire(6 * MB);
    EXPECT_EQ(cache_held_buffers(), 0u);
    EXPECT_EQ(cache_held_bytes(), 0u);
    cache_release(c);
    EXPECT_EQ(cache_held_bytes(), 6 * MB);
}

// A sketch or workspace (under the threshold) neither takes a held matrix buffer, which its matrix
// would then allocate again, nor stays held itself.
TEST_F(BufferCache, SmallBuffersAndNullBypassIt) {
    EXPECT_EQ(cache_acquire(0), nullptr);
    cache_release(nullptr);
    void* big = cache_acquire(4 * MB);
    cache_release(big);
    void* p = cache_acquire(kMinCachedBytes - 1);
    ASSERT_NE(p, nullptr);
    EXPECT_NE(p, big);
    EXPECT_EQ(cache_held_buffers(), 1u);
    cache_release(p);
    EXPECT_EQ(cache_held_buffers(), 1u);
    EXPECT_EQ(cache_acquire(4 * MB), big);
    cache_release(big);
    {
        CachedFloats f(kMinCachedBytes);  // 4 x the threshold in floats: held when the handle goes
        f.get()[0] = 1.0f;
    }
    // The held 4 MB-unit buffer could not hold it and was freed first.
    EXPECT_EQ(cache_held_bytes(), kMinCachedBytes * sizeof(float));
}

}  // namespace
}  // namespace loftq
