// When a loop over elements is worth an OpenMP team. Below this size the fork/join costs more
// than the work, and on a busy node (more ranks than cores, or other jobs) a team of threads
// waiting for a descheduled sibling at the barrier costs milliseconds per call: the LoftQ loop
// calls these loops several times per matrix, so small matrices run serially.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace loftq {
inline constexpr int64_t kParallelMinElements = int64_t{1} << 18;

// sum_{i < n} term(i) in double, in an order that depends on n alone: fixed chunks of 2^14
// terms, each summed in 8 interleaved lanes (term i into lane i % 8, the lanes added in order at
// the end of the chunk), then the chunks in order. The same bits for any thread count (OpenMP
// over chunks), and the lanes hide the latency of the additions (8 chains, not one).
inline constexpr int64_t kOrderedSumChunk = int64_t{1} << 14;

// The partial sum of one chunk [begin, end) of ordered_sum, in its order.
template <typename Term>
double ordered_chunk_sum(int64_t begin, int64_t end, Term term) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
        for (int j = 0; j < 8; ++j) lane[j] += term(i + j);
    for (int j = 0; i < end; ++i, ++j) lane[j] += term(i);
    double s = 0;
    for (double v : lane) s += v;
    return s;
}

template <typename Term>
double ordered_sum(int64_t n, Term term) {
    constexpr int64_t kChunk = kOrderedSumChunk;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
        part[static_cast<size_t>(c)] = ordered_chunk_sum(begin, end, term);
    }
    double s = 0;
    for (double v : part) s += v;
    return s;
}
}  // namespace loftq
