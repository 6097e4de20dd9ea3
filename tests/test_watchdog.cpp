// The watchdog (--watchdog): one line naming the rank and what it was doing, exit 1, when no beat
// comes for the limit; beats and pauses keep it quiet; 0 is off.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "runtime/watchdog.hpp"

using namespace loftq;

namespace {
void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }
}  // namespace

TEST(WatchdogDeathTest, SilenceEndsTheProcessNamingRankAndMatrix) {
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_EXIT(
        {
            Watchdog w(0.3, 5);
            w.beat("on matrix model.layers.1.mlp.up_proj.weight");
            sleep_s(5);
        },
        ::testing::ExitedWithCode(1),
        "loftq: error: watchdog: rank 5 made no progress for .* s \\(on matrix model.layers.1.mlp.up_proj.weight\\)");
}

TEST(Watchdog, BeatsPausesAndZeroKeepItQuiet) {
    {
        Watchdog w(0.5, 0);
        for (int i = 0; i < 8; ++i) {
            sleep_s(0.2);
            w.beat("on matrix " + std::to_string(i));
        }
        w.pause();
        sleep_s(1.2);  // paused: another rank judges this wait
    }
    {
        Watchdog off(0, 0);
        off.beat("x");
        sleep_s(0.3);
    }
    SUCCEED();  // reaching here: no _exit
}
