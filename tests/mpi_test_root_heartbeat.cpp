// runtime/root_heartbeat under mpirun -np 1, 2 and 4: off without a watchdog or with one rank;
// rank 0's heartbeats reach every other rank; finish() leaves no heartbeat unmatched (a later
// probe finds nothing), whether or not a rank took them all.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <thread>

#include "runtime/root_heartbeat.hpp"

namespace loftq {
namespace {

int world_rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int world_size() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

TEST(RootHeartbeat, OffWithoutAWatchdogOrASecondRank) {
    RootHeartbeat off(MPI_COMM_WORLD, 0.0);
    EXPECT_FALSE(off.on());
    off.send();
    EXPECT_FALSE(off.take());
    off.finish();
    RootHeartbeat on(MPI_COMM_WORLD, 2.0);
    EXPECT_EQ(on.on(), world_size() > 1);
    on.finish();
}

TEST(RootHeartbeat, ReachesEveryRankAndLeavesNothingUnmatched) {
    if (world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
    // A 0.4 s watchdog: heartbeats at most every 0.1 s.
    RootHeartbeat hb(MPI_COMM_WORLD, 0.4);
    if (world_rank() == 0) {
        for (int i = 0; i < 50; ++i) hb.send();  // within one interval
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        hb.send();  // a second one
    } else {
        bool heard = false;
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!heard && std::chrono::steady_clock::now() < give_up) {
            heard = hb.take();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        EXPECT_TRUE(heard);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    hb.finish();
    int pending = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &pending, MPI_STATUS_IGNORE);
    EXPECT_EQ(pending, 0);
    EXPECT_FALSE(hb.on());
}

}  // namespace
}  // namespace loftq
