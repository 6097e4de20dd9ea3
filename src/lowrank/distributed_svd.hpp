// Row shards of a split matrix and the rank-count-independent reductions over them.
//
// A split matrix is cut into S row shards fixed by the plan (never by the number of ranks); the
// ranks of a group hold them, 1..S shards each. Every reduction over shards gathers the per-shard
// partials (each rank broadcasts the slots of the shards it owns) and every rank then sums the
// slots in shard order 0..S-1. The bits of the result therefore depend only on the matrix and S,
// never on how shards map to ranks (the project's "any rank count" invariant).
#pragma once

#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "linalg/backend.hpp"

namespace loftq {

// Shard s holds rows [row_offsets[s], row_offsets[s + 1]) and lives on group rank owner[s].
struct ShardLayout {
    std::vector<int64_t> row_offsets;  // S + 1 ascending offsets, first 0, last = rows
    std::vector<int> owner;            // S group ranks

    static ShardLayout single(int64_t rows) { return ShardLayout{{0, rows}, {0}}; }
    int count() const { return static_cast<int>(owner.size()); }
    int64_t rows(int s) const { return row_offsets[s + 1] - row_offsets[s]; }
    int64_t max_rows() const;
    // Shards owned by `group_rank`, ascending.
    std::vector<int> local_shards(int group_rank) const;
    // Throws Error unless the layout covers exactly [0, rows) with owners in [0, group_size).
    void validate(int64_t rows, int group_size) const;
};

// The exchange of per-shard slots over a group (comm == nullptr: one process holds every shard).
// Slot s of a buffer starts at s * stride floats; buffers live in the backend's memory.
class ShardExchange {
public:
    ShardExchange(LinalgBackend& be, Communicator* comm, ShardLayout layout);

    const ShardLayout& layout() const { return layout_; }
    const std::vector<int>& local() const { return local_; }
    int group_size() const { return comm_ ? comm_->size() : 1; }
    // True when there is nothing to exchange (one shard, one rank).
    bool trivial() const { return layout_.count() == 1 && group_size() == 1; }

    // After: every rank holds every slot (the owners' values). `stride` >= count.
    void share_slots(float* slots, size_t count, size_t stride);
    // out = slot 0 + slot 1 + ... + slot S-1 (shard order), after share_slots.
    void sum_slots(float* slots, size_t count, size_t stride, float* out);

    // Deterministic sign convention for a rank-r factorisation whose U is row-sharded: each pair
    // (column j of U, row j of Vt) is negated unless the entry of largest magnitude of column j
    // (the first in global row order on ties) is positive. `scratch` holds S * r floats.
    void canonical_signs(const std::vector<float*>& u_local, int64_t r, float* vt, int64_t n,
                         float* scratch);

private:
    LinalgBackend& be_;
    Communicator* comm_;
    ShardLayout layout_;
    std::vector<int> local_;
};

}  // namespace loftq
