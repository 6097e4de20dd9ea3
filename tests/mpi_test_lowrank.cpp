// Distributed randomized SVD under mpirun -np 1, 2, 4: a matrix cut into S = 4 fixed row shards
// gives BIT-identical U, S, Vt whatever the number of ranks holding them and whatever the
// shard-to-rank map (the project's any-rank-count invariant), and matches the unsharded one-rank
// randomized SVD within 1e-5 relative on U S Vt. Plus the MPI communicator's collectives.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <vector>

#include "comm/communicator.hpp"
#include "lowrank/randomized_svd.hpp"
#include "support/lowrank_fixtures.hpp"

using namespace loftq;
using namespace loftq::testing;

namespace {

constexpr double kShardedTol = 1e-5;  // sharded vs unsharded U S Vt, relative Frobenius

struct Result {
    std::vector<float> u, s, vt;  // u: all rows; only the rows of local shards are written
};

}  // namespace

TEST(MpiCommunicator, Collectives) {
    auto comm = make_mpi_communicator(MPI_COMM_WORLD);
    const int p = comm->size(), me = comm->rank();
    std::vector<float> x(5, static_cast<float>(me + 1));
    comm->allreduce_sum(x.data(), x.size());
    for (float v : x) EXPECT_EQ(v, p * (p + 1) / 2.0f);
    std::vector<float> b(3, me == p - 1 ? 42.0f : -1.0f);
    comm->broadcast(b.data(), b.size(), p - 1);
    for (float v : b) EXPECT_EQ(v, 42.0f);
    std::vector<float> mine{float(me), float(10 * me)}, all(2 * p, -1.0f), at_root(2 * p, -1.0f);
    comm->allgather(mine.data(), 2, all.data());
    comm->gather(mine.data(), 2, at_root.data(), 0);
    for (int r = 0; r < p; ++r) {
        EXPECT_EQ(all[2 * r], float(r));
        EXPECT_EQ(all[2 * r + 1], float(10 * r));
        if (me == 0) EXPECT_EQ(at_root[2 * r + 1], float(10 * r));
    }
}

TEST(DistributedSvd, BitIdenticalForAnyRankCountAndEqualToUnsharded) {
    auto comm = make_mpi_communicator(MPI_COMM_WORLD);
    const int p = comm->size(), me = comm->rank();
    const int64_t m = 240, n = 180;
    const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(n, 0.08), 77);  // same on all ranks
    SvdOptions opt;
    opt.rank = 8;
    opt.name = "model.layers.0.mlp.down_proj.weight";
    opt.seed = 3;
    const std::vector<int64_t> offsets{0, 70, 130, 185, 240};

    // Maps of the 4 shards onto the p ranks of the group: round-robin, reversed, and lopsided
    // (shards 0-2 on rank 0, shard 3 on the last rank: with 4 ranks, two ranks hold nothing).
    for (int map = 0; map < 3; ++map) {
        ShardLayout layout{offsets, {}};
        for (int s = 0; s < 4; ++s)
            layout.owner.push_back(map == 0 ? s % p : map == 1 ? (3 - s) % p : (s == 3 ? p - 1 : 0));
        const auto mine = layout.local_shards(me);
        for (int call = 0; call < 2; ++call) {  // the second call is warm-started
            // Reference: one process holding all 4 shards (what -np 1 computes).
            SvdOptions o = opt;
            auto be = make_cpu_backend();
            const ShardLayout all_here{offsets, {0, 0, 0, 0}};
            RandomizedSvd ref_svd(*be, m, n, o, all_here, nullptr);
            RandomizedSvd dist_svd(*be, m, n, o, layout, comm.get());
            auto run = [&](RandomizedSvd& svd, const ShardLayout& lay) {
                Result res{std::vector<float>(static_cast<size_t>(m * opt.rank), NAN),
                           std::vector<float>(opt.rank, NAN),
                           std::vector<float>(static_cast<size_t>(opt.rank * n), NAN)};
                std::vector<const float*> as;
                std::vector<float*> us;
                for (int s : svd.local_shards()) {
                    as.push_back(a.ptr() + lay.row_offsets[s] * n);
                    us.push_back(res.u.data() + lay.row_offsets[s] * opt.rank);
                }
                for (int c = 0; c <= call; ++c) svd.compute_shards(as, us, res.s.data(), res.vt.data());
                return res;
            };
            const Result ref = run(ref_svd, all_here);
            const Result got = run(dist_svd, layout);
            EXPECT_EQ(got.s, ref.s) << "map=" << map << " call=" << call;
            EXPECT_EQ(got.vt, ref.vt) << "map=" << map << " call=" << call;
            for (int s : mine)
                for (int64_t i = offsets[s] * opt.rank; i < offsets[s + 1] * opt.rank; ++i)
                    ASSERT_EQ(got.u[i], ref.u[i]) << "shard " << s << " element " << i;

            if (call == 0) {
                // Unsharded one-rank randomized SVD with the same seed: equal up to rounding.
                RandomizedSvd whole(*be, m, n, opt);
                Result w{std::vector<float>(static_cast<size_t>(m * opt.rank)), std::vector<float>(opt.rank),
                         std::vector<float>(static_cast<size_t>(opt.rank * n))};
                whole.compute(a.ptr(), w.u.data(), w.s.data(), w.vt.data());
                EXPECT_LT(relative_product_difference(ref.u, ref.s, ref.vt, w.u, w.s, w.vt, m, n, opt.rank),
                          kShardedTol);
            }
        }
    }
}
