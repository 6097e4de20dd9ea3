#include "plan/distribution.hpp"

#include <algorithm>
#include <cstdlib>
#include <numeric>

#include "core/error.hpp"

namespace loftq {

int64_t row_alignment(int64_t cols, int blocksize) {
    LOFTQ_CHECK(cols > 0 && blocksize > 0, "cols ", cols, ", blocksize ", blocksize);
    return blocksize / std::gcd(cols, static_cast<int64_t>(blocksize));
}

int shard_count(int64_t rows, int64_t cols, uint64_t split_threshold, int blocksize, int64_t min_shard_rows) {
    const uint64_t bytes = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) * 4;
    if (split_threshold == 0 || bytes <= split_threshold) return 1;
    const uint64_t wanted = (bytes + split_threshold - 1) / split_threshold;
    // Balanced shards hold at least floor(units / S) units: S <= units / units_per_shard keeps
    // every shard at min_shard_rows or more.
    const int64_t align = row_alignment(cols, blocksize);
    const int64_t units_per_shard = std::max<int64_t>(1, (std::max<int64_t>(min_shard_rows, 1) + align - 1) / align);
    const int64_t max_shards = std::max<int64_t>(1, (rows / align) / units_per_shard);
    return static_cast<int>(std::min<uint64_t>(wanted, static_cast<uint64_t>(max_shards)));
}

int64_t min_shard_rows(int64_t rows, int64_t cols, const RunSpec& spec) {
    const SvdOptions& o = spec.loftq.svd_options;
    return std::min<int64_t>({static_cast<int64_t>(o.rank) + o.oversample, rows, cols});
}

std::vector<int64_t> shard_row_bounds(int64_t rows, int64_t cols, int shards, int blocksize) {
    const int64_t align = row_alignment(cols, blocksize);
    const int64_t units = rows / align;
    LOFTQ_CHECK(shards >= 1 && (shards == 1 || shards <= units), "shards ", shards, " for ", rows,
                " rows in units of ", align);
    std::vector<int64_t> b(shards + 1);
    for (int i = 0; i < shards; ++i) b[i] = align * (units * i / shards);
    b[shards] = rows;
    return b;
}

Distribution distribute(const Plan& plan, int ranks) {
    LOFTQ_CHECK(ranks >= 1, "ranks ", ranks);
    const auto& mats = plan.matrices;
    Distribution d;
    d.ranks = ranks;
    d.matrices.resize(mats.size());
    d.work.resize(ranks);
    d.load.assign(ranks, 0.0);

    std::vector<int> order(mats.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        if (mats[a].cost != mats[b].cost) return mats[a].cost > mats[b].cost;
        return a < b;
    });

    std::vector<int> by_load(ranks);
    for (int i : order) {
        const MatrixPlan& mp = mats[i];
        MatrixAssignment& a = d.matrices[i];
        a.matrix = i;
        a.shards = mp.shards;
        a.bounds = shard_row_bounds(mp.rows, mp.cols, a.shards, plan.spec.blocksize_for(mp.bits, mp.cols));

        std::iota(by_load.begin(), by_load.end(), 0);
        std::stable_sort(by_load.begin(), by_load.end(), [&](int x, int y) {
            if (d.load[x] != d.load[y]) return d.load[x] < d.load[y];
            return x < y;
        });
        const int g = a.shards > 1 ? std::min(a.shards, ranks) : 1;
        a.group.assign(by_load.begin(), by_load.begin() + g);
        std::sort(a.group.begin(), a.group.end());
        for (int j = 0; j < g; ++j) {
            const int s0 = static_cast<int>(int64_t{j} * a.shards / g);
            const int s1 = static_cast<int>(int64_t{j + 1} * a.shards / g);
            a.member_shard_begin.push_back(s0);
            a.member_shard_end.push_back(s1);
            WorkItem w;
            w.matrix = i;
            w.split = a.shards > 1;
            w.shard_begin = s0;
            w.shard_end = s1;
            w.row_begin = a.bounds[s0];
            w.row_end = a.bounds[s1];
            d.work[a.group[j]].push_back(w);
            d.load[a.group[j]] += mp.cost * static_cast<double>(w.row_end - w.row_begin) /
                                  static_cast<double>(mp.rows);
        }
    }
    return d;
}

int gpu_for_local_rank(int local_rank, int gpus_per_node) {
    if (gpus_per_node <= 0) return -1;
    LOFTQ_CHECK(local_rank >= 0, "local rank ", local_rank);
    return local_rank % gpus_per_node;
}

int local_rank_from_env(const std::function<const char*(const char*)>& getenv_fn) {
    for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
        const char* v = getenv_fn ? getenv_fn(var) : std::getenv(var);
        if (!v || !*v) continue;
        char* end = nullptr;
        const long x = std::strtol(v, &end, 10);
        if (*end != '\0' || x < 0 || x > 1 << 20)
            LOFTQ_THROW(ConfigError, "environment variable ", var, "='", v,
                        "' is not a node-local rank (a non-negative integer)");
        return static_cast<int>(x);
    }
    return 0;
}

}  // namespace loftq
