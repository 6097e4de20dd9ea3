// The distributed randomized SVD of mpi_test_lowrank.cpp on GPUs over NCCL, under mpirun -np 1,
// 2, 4 (GPU-only: ctest label gpu, Skipped unless every rank has its own CUDA device). Apart from
// the CPU cases so that a run without GPUs reports this one as Skipped (tests/mpi_main.cpp).
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

struct Result {
    std::vector<float> u, s, vt;  // u: all rows; only the rows of local shards are written
};

}  // namespace

// The same sharded SVD on GPUs over NCCL (one GPU per rank; skipped unless every rank has one):
// bit-identical to one GPU holding all shards, and equal to the CPU/MPI result within rounding.
TEST(DistributedSvd, NcclOnGpusMatchesOneGpuAndTheCpu) {
    auto mpi = make_mpi_communicator(MPI_COMM_WORLD);
    const int p = mpi->size(), me = mpi->rank();
    // Ranks of one node, device = rank: every rank must see at least p devices.
    float enough = cuda_device_count() >= p ? 1.0f : 0.0f;
    mpi->allreduce_sum(&enough, 1);
    if (enough < p) GTEST_SKIP() << "needs one CUDA device per rank";
    auto gpu = make_cuda_backend(me);
    auto nccl = make_nccl_communicator(MPI_COMM_WORLD, cuda_backend_stream(*gpu));
    const int64_t m = 240, n = 180, r = 8;
    const Matrix a = matrix_with_spectrum(m, n, decaying_spectrum(n, 0.08), 77);
    SvdOptions opt;
    opt.rank = static_cast<int>(r);
    opt.name = "nccl";
    const std::vector<int64_t> offsets{0, 70, 130, 185, 240};
    ShardLayout layout{offsets, {}};
    for (int s = 0; s < 4; ++s) layout.owner.push_back(s % p);
    DeviceBuffer da(*gpu, a.data.size()), du(*gpu, m * r), ds(*gpu, r), dvt(*gpu, r * n);
    gpu->upload(da.get(), a.ptr(), a.data.size());
    auto run = [&](RandomizedSvd& svd, Result& res) {
        std::vector<const float*> as;
        std::vector<float*> us;
        for (int s : svd.local_shards()) {
            as.push_back(da.get() + offsets[s] * n);
            us.push_back(du.get() + offsets[s] * r);
        }
        svd.compute_shards(as, us, ds.get(), dvt.get());
        res.u.assign(m * r, NAN);
        res.s.assign(r, NAN);
        res.vt.assign(r * n, NAN);
        for (int s : svd.local_shards())
            gpu->download(res.u.data() + offsets[s] * r, du.get() + offsets[s] * r, layout.rows(s) * r);
        gpu->download(res.s.data(), ds.get(), r);
        gpu->download(res.vt.data(), dvt.get(), r * n);
    };
    Result dist, one;
    RandomizedSvd dist_svd(*gpu, m, n, opt, layout, nccl.get());
    run(dist_svd, dist);
    RandomizedSvd one_svd(*gpu, m, n, opt, ShardLayout{offsets, {0, 0, 0, 0}}, nullptr);
    run(one_svd, one);
    EXPECT_EQ(dist.s, one.s);
    EXPECT_EQ(dist.vt, one.vt);
    for (int s : layout.local_shards(me))
        for (int64_t i = offsets[s] * r; i < offsets[s + 1] * r; ++i) ASSERT_EQ(dist.u[i], one.u[i]);
    auto cpu = make_cpu_backend();
    RandomizedSvd cpu_svd(*cpu, m, n, opt);
    Result c{std::vector<float>(m * r), std::vector<float>(r), std::vector<float>(r * n)};
    cpu_svd.compute(a.ptr(), c.u.data(), c.s.data(), c.vt.data());
    EXPECT_LT(relative_product_difference(one.u, one.s, one.vt, c.u, c.s, c.vt, m, n, r), 1e-4);
}
