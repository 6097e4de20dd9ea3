// Who does what: the assignment of plan matrices to ranks, the row shards of split matrices, and
// the GPU of a rank. Pure functions of the plan and the rank count (no MPI), so every rank
// computes the same answer and the tests check it without a launcher (STYLE.md 4).
//
// Splitting. A matrix is split when split_threshold > 0 and its float32 bytes exceed it. Its shard
// count S = min(ceil(bytes / threshold), max_shards) depends on the matrix and the threshold only,
// never on the rank count: the distributed SVD then runs the same reductions over the same
// shards for any N, which keeps results bit-identical across rank counts.
// Shard boundaries are balanced contiguous row blocks whose every boundary is a multiple of
// row_alignment(cols, blocksize) = blocksize / gcd(cols, blocksize) rows: then boundary * cols is a
// multiple of blocksize, so every shard holds whole quantization blocks of the row-major flattened
// matrix (bitsandbytes blocks run over the flattened tensor, FORMATS.md section 2) and the
// blockwise quantizer can run on a shard alone. max_shards keeps every shard at least
// min_shard_rows tall (the randomized SVD's sketch width: TSQR factors each shard alone).
//
// Assignment over N ranks. Matrices in decreasing cost (ties: plan index). A whole matrix goes to
// the least-loaded rank (ties: lowest id). A split matrix goes to the g = min(S, N) least-loaded
// ranks (ties: lowest id), sorted by id; member j of the group takes the contiguous shard run
// [floor(j S / g), floor((j+1) S / g)); each member's load grows by cost * its rows / rows.
// Each rank's work list is in assignment order, so any two ranks meet their shared split matrices
// in the same order: the collectives of the distributed SVD cannot deadlock.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "plan/plan.hpp"

namespace loftq {

// Rows per alignment unit: blocksize / gcd(cols, blocksize).
int64_t row_alignment(int64_t cols, int blocksize);
// 1 for a matrix that is not split; otherwise S as above (>= 2 unless rows allow only 1).
// min_shard_rows: the fewest rows a shard may hold (the randomized SVD's sketch width).
int shard_count(int64_t rows, int64_t cols, uint64_t split_threshold, int blocksize,
                int64_t min_shard_rows = 1);
// The sketch width k = min(rank + oversample, rows, cols): every row shard needs k rows (TSQR).
int64_t min_shard_rows(int64_t rows, int64_t cols, const RunSpec& spec);
// S + 1 ascending row boundaries, first 0, last rows, inner ones multiples of row_alignment.
std::vector<int64_t> shard_row_bounds(int64_t rows, int64_t cols, int shards, int blocksize);

// One piece of work of one rank: a whole matrix, or a contiguous run of shards of a split one.
struct WorkItem {
    int matrix = 0;         // plan index
    bool split = false;
    int shard_begin = 0;    // [shard_begin, shard_end) of the matrix's S shards (0, 1 if whole)
    int shard_end = 1;
    int64_t row_begin = 0;  // rows [row_begin, row_end) this rank holds
    int64_t row_end = 0;
};

struct MatrixAssignment {
    int matrix = 0;
    int shards = 1;                       // S
    std::vector<int64_t> bounds;          // S + 1 row boundaries
    std::vector<int> group;               // owning ranks, ascending; size 1 if whole
    std::vector<int> member_shard_begin;  // per group member: its first shard
    std::vector<int> member_shard_end;    // per group member: one past its last shard
    int owner() const { return group.front(); }  // the rank that records the result
};

struct Distribution {
    int ranks = 1;
    std::vector<MatrixAssignment> matrices;     // by plan index
    std::vector<std::vector<WorkItem>> work;    // by rank, in assignment order
    std::vector<double> load;                   // estimated cost by rank
};

// Distribute `plan` over `ranks` ranks (>= 1): each matrix in its plan.matrices[i].shards shards.
Distribution distribute(const Plan& plan, int ranks);

// The GPU a rank drives: local_rank modulo gpus_per_node; -1 when gpus_per_node <= 0 (CPU).
int gpu_for_local_rank(int local_rank, int gpus_per_node);
// The node-local rank from the launcher: OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID,
// SLURM_LOCALID, else 0. A value that is not a non-negative integer is a ConfigError naming the
// variable. `getenv_fn` exists for tests.
int local_rank_from_env(const std::function<const char*(const char*)>& getenv_fn = nullptr);

}  // namespace loftq
