// Distribution of the plan over ranks: a pure function, checked without MPI.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <cstdio>

#include "core/error.hpp"
#include "plan/distribution.hpp"

using namespace loftq;

namespace {

Plan plan_of(const std::string& preset, uint64_t split_threshold, int blocksize = 64) {
    const ModelConfig m = preset_model_config(preset);
    RunSpec o;
    o.split_threshold = split_threshold;
    o.loftq.quant.blocksize = blocksize;
    return build_plan(m, expected_catalogue(m, DType::BF16), o);
}

// Every matrix owned exactly once: its rows are tiled by the work items of distinct ranks.
void expect_consistent(const Plan& p, const Distribution& d) {
    ASSERT_EQ(d.matrices.size(), p.matrices.size());
    std::map<int, std::vector<WorkItem>> items;
    for (int r = 0; r < d.ranks; ++r)
        for (const auto& w : d.work[r]) items[w.matrix].push_back(w);
    for (const auto& mp : p.matrices) {
        const MatrixAssignment& a = d.matrices[mp.index];
        EXPECT_EQ(a.matrix, mp.index);
        ASSERT_EQ(a.bounds.size(), static_cast<size_t>(a.shards) + 1);
        EXPECT_EQ(a.bounds.front(), 0);
        EXPECT_EQ(a.bounds.back(), mp.rows);
        const int64_t align = row_alignment(mp.cols, p.spec.loftq.quant.blocksize);
        for (int s = 0; s < a.shards; ++s) {
            EXPECT_LT(a.bounds[s], a.bounds[s + 1]) << mp.tensor;
            EXPECT_EQ(a.bounds[s] % align, 0) << mp.tensor;
            EXPECT_EQ((a.bounds[s] * mp.cols) % p.spec.loftq.quant.blocksize, 0) << mp.tensor;
        }
        EXPECT_TRUE(std::is_sorted(a.group.begin(), a.group.end()));
        EXPECT_EQ(std::adjacent_find(a.group.begin(), a.group.end()), a.group.end());
        EXPECT_EQ(a.group.size(), static_cast<size_t>(std::min(a.shards, d.ranks)));
        auto& list = items[mp.index];
        ASSERT_EQ(list.size(), a.group.size()) << mp.tensor;
        std::sort(list.begin(), list.end(),
                  [](const WorkItem& x, const WorkItem& y) { return x.row_begin < y.row_begin; });
        int64_t next_row = 0;
        int next_shard = 0;
        for (const auto& w : list) {
            EXPECT_EQ(w.row_begin, next_row);
            EXPECT_EQ(w.shard_begin, next_shard);
            EXPECT_LT(w.shard_begin, w.shard_end);
            EXPECT_EQ(w.row_begin, a.bounds[w.shard_begin]);
            EXPECT_EQ(w.row_end, a.bounds[w.shard_end]);
            EXPECT_EQ(w.split, a.shards > 1);
            next_row = w.row_end;
            next_shard = w.shard_end;
        }
        EXPECT_EQ(next_row, mp.rows);
        EXPECT_EQ(next_shard, a.shards);
    }
}

double max_over_mean(const Distribution& d) {
    const double total = std::accumulate(d.load.begin(), d.load.end(), 0.0);
    return *std::max_element(d.load.begin(), d.load.end()) / (total / d.ranks);
}

}  // namespace

TEST(Distribution, RowAlignmentHoldsWholeBlocks) {
    EXPECT_EQ(row_alignment(8192, 64), 1);
    EXPECT_EQ(row_alignment(172, 64), 16);  // stories260K down_proj: gcd 4
    EXPECT_EQ(row_alignment(100, 64), 16);
    EXPECT_EQ(row_alignment(63, 64), 64);
    EXPECT_EQ(row_alignment(96, 4096), 128);
    const auto b = shard_row_bounds(100, 172, 3, 64);  // 6 units of 16 rows, 4 rows left over
    EXPECT_EQ(b, (std::vector<int64_t>{0, 32, 64, 100}));
    EXPECT_EQ(shard_row_bounds(28672, 8192, 7, 64).back(), 28672);
}

TEST(Distribution, ShardCountDependsOnMatrixAndThresholdOnly) {
    EXPECT_EQ(shard_count(28672, 8192, 0, 64), 1);
    EXPECT_EQ(shard_count(28672, 8192, 28672ull * 8192 * 4, 64), 1);  // not over the threshold
    EXPECT_EQ(shard_count(28672, 8192, 28672ull * 8192 * 4 - 1, 64), 2);
    EXPECT_EQ(shard_count(28672, 8192, 100000000, 64), 10);  // 939.5 MB / 100 MB
    EXPECT_EQ(shard_count(64, 172, 1000, 64), 4);            // capped by rows: 4 units of 16 rows
    EXPECT_EQ(shard_count(10, 63, 100, 64), 1);              // fewer rows than one unit
    // Each shard keeps at least the sketch width (rank + oversample) rows: 172 rows in 1-row
    // units with 24-row shards -> at most 7 shards, each 24 or 25 rows.
    EXPECT_EQ(shard_count(172, 64, 1000, 64, 24), 7);
    EXPECT_EQ(shard_count(64, 172, 1000, 64, 24), 2);        // 16-row units: 2 units (32 rows) each
    for (int64_t r : shard_row_bounds(172, 64, 7, 64)) EXPECT_EQ(r % 1, 0);
    const Plan p = plan_of("llama2-70b", 256ull << 20);
    for (int n : {1, 3, 8, 64}) {
        const Distribution d = distribute(p, n);
        for (const auto& mp : p.matrices) {
            const auto& a = d.matrices[mp.index];
            EXPECT_EQ(a.shards, shard_count(mp.rows, mp.cols, p.spec.split_threshold, 64));
            EXPECT_EQ(a.bounds, distribute(p, 1).matrices[mp.index].bounds);
        }
    }
}

TEST(Distribution, WholeMatricesOwnedOnceAndBalancedOn70B) {
    const Plan p = plan_of("llama2-70b", 0);
    for (int n : {1, 8, 32, 64}) {
        const Distribution d = distribute(p, n);
        expect_consistent(p, d);
        // Greedy largest-first: max load <= mean + the largest single cost.
        const double biggest = std::max_element(p.matrices.begin(), p.matrices.end(),
                                                [](auto& a, auto& b) { return a.cost < b.cost; })->cost;
        const double total = std::accumulate(d.load.begin(), d.load.end(), 0.0);
        EXPECT_LE(*std::max_element(d.load.begin(), d.load.end()), total / n + biggest);
        const double bound = n <= 32 ? 1.01 : 1.05;
        std::printf("70B whole, %d ranks: max/mean load %.4f\n", n, max_over_mean(d));
        EXPECT_LE(max_over_mean(d), bound) << n << " ranks";
    }
}

TEST(Distribution, SplitMatricesGoToGroupsAndBalance) {
    // 300 MB: each MLP matrix (939.5 MB) becomes 4 shards; attention (268 MB) stays whole.
    const Plan p = plan_of("llama2-70b", 300000000);
    for (int n : {2, 8, 32, 64}) {
        const Distribution d = distribute(p, n);
        expect_consistent(p, d);
        for (const auto& mp : p.matrices) {
            const auto& a = d.matrices[mp.index];
            EXPECT_EQ(a.shards, mp.rows == 28672 || mp.cols == 28672 ? 4 : 1) << mp.tensor;
            EXPECT_EQ(a.group.size(), static_cast<size_t>(std::min(a.shards, n)));
        }
        std::printf("70B split at 300 MB, %d ranks: max/mean load %.4f\n", n, max_over_mean(d));
        EXPECT_LE(max_over_mean(d), n <= 32 ? 1.01 : 1.03) << n << " ranks";
    }
}

TEST(Distribution, GroupsMeetSplitMatricesInOneOrder) {
    const Plan p = plan_of("llama2-70b", 300000000);
    const Distribution d = distribute(p, 6);
    // Position of each split matrix in the global assignment order must agree between ranks.
    for (int r = 0; r < d.ranks; ++r)
        for (int s = 0; s < d.ranks; ++s) {
            std::vector<int> a, b;
            for (const auto& w : d.work[r])
                if (w.split) a.push_back(w.matrix);
            for (const auto& w : d.work[s])
                if (w.split) b.push_back(w.matrix);
            std::vector<int> common_a, common_b;
            for (int m : a)
                if (std::find(b.begin(), b.end(), m) != b.end()) common_a.push_back(m);
            for (int m : b)
                if (std::find(a.begin(), a.end(), m) != a.end()) common_b.push_back(m);
            EXPECT_EQ(common_a, common_b) << "ranks " << r << ", " << s;
        }
}

TEST(Distribution, IsDeterministicAndLargestFirst) {
    const Plan p = plan_of("llama2-13b", 0);
    const Distribution a = distribute(p, 7), b = distribute(p, 7);
    for (int r = 0; r < 7; ++r) {
        ASSERT_EQ(a.work[r].size(), b.work[r].size());
        for (size_t i = 0; i < a.work[r].size(); ++i) EXPECT_EQ(a.work[r][i].matrix, b.work[r][i].matrix);
        EXPECT_EQ(a.load[r], b.load[r]);
        // Each rank's list is in non-increasing cost order.
        for (size_t i = 1; i < a.work[r].size(); ++i)
            EXPECT_GE(p.matrices[a.work[r][i - 1].matrix].cost, p.matrices[a.work[r][i].matrix].cost);
    }
    // The first 7 matrices by cost (the layer-0 MLP ones come first; ties by index) go to ranks 0..6.
    EXPECT_EQ(a.work[0].front().matrix, 4);  // layer 0 gate_proj
    EXPECT_EQ(a.work[1].front().matrix, 5);  // layer 0 up_proj
    EXPECT_EQ(a.work[2].front().matrix, 6);  // layer 0 down_proj (same flops as gate/up)
}

TEST(Distribution, MoreRanksThanMatrices) {
    const ModelConfig m = preset_model_config("tiny");
    RunSpec o;
    o.loftq.svd_options.rank = 8;
    o.targets = {"q_proj"};
    const Plan p = build_plan(m, expected_catalogue(m, DType::BF16), o);
    const Distribution d = distribute(p, 16);
    expect_consistent(p, d);
    int busy = 0;
    for (const auto& w : d.work) busy += !w.empty();
    EXPECT_EQ(busy, static_cast<int>(p.matrices.size()));
    EXPECT_THROW(distribute(p, 0), Error);
}

TEST(Distribution, GpuAndLocalRank) {
    EXPECT_EQ(gpu_for_local_rank(0, 8), 0);
    EXPECT_EQ(gpu_for_local_rank(9, 8), 1);
    EXPECT_EQ(gpu_for_local_rank(3, 0), -1);
    std::map<std::string, std::string> env;
    auto get = [&env](const char* k) -> const char* {
        auto it = env.find(k);
        return it == env.end() ? nullptr : it->second.c_str();
    };
    EXPECT_EQ(local_rank_from_env(get), 0);
    env["SLURM_LOCALID"] = "5";
    EXPECT_EQ(local_rank_from_env(get), 5);
    env["OMPI_COMM_WORLD_LOCAL_RANK"] = "3";
    EXPECT_EQ(local_rank_from_env(get), 3);
    env["OMPI_COMM_WORLD_LOCAL_RANK"] = "three";
    try {
        local_rank_from_env(get);
        FAIL() << "bad local rank accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("OMPI_COMM_WORLD_LOCAL_RANK"), std::string::npos);
    }
}
