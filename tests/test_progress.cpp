// The progress line rank 0 prints (runtime/progress.hpp, ProgressReporter::format_line, a pure
// function of the counts): matrices done/total, processed/total in GB for real models and MB
// below 1 GB, the rate in the same unit, and the ETA (remaining bytes / rate) as h:mm:ss,
// rounded to the second; "0:00:00" once every matrix is done, "?" while the rate is unknown.
// Expected strings are worked out by hand from those rules.
#include <gtest/gtest.h>

#include "runtime/progress.hpp"

namespace loftq {
namespace {

std::string line(int64_t done, int64_t total, double done_bytes, double total_bytes, double rate) {
    return ProgressReporter::format_line(done, total, done_bytes, total_bytes, rate);
}

TEST(ProgressLine, GigabytesForRealModels) {
    // (1.04 - 0.42) GB / 0.01 GB/s = 62 s.
    EXPECT_EQ(line(12, 35, 0.42e9, 1.04e9, 0.01e9), "12/35 matrices  0.42/1.04 GB  0.01 GB/s  ETA 0:01:02");
    // 70B-sized: (275 - 25) GB at 0.05 GB/s = 5000 s = 1 h 23 min 20 s.
    EXPECT_EQ(line(80, 560, 25e9, 275e9, 0.05e9), "80/560 matrices  25.00/275.00 GB  0.05 GB/s  ETA 1:23:20");
    // Exactly 1 GB in all switches to GB.
    EXPECT_EQ(line(0, 7, 0, 1e9, 0.5e9), "0/7 matrices  0.00/1.00 GB  0.50 GB/s  ETA 0:00:02");
}

TEST(ProgressLine, MegabytesBelowOneGigabyte) {
    // stories260K-sized: (4 - 1) MB at 0.5 MB/s = 6 s; a GB display would read 0.00/0.00.
    EXPECT_EQ(line(1, 35, 1e6, 4e6, 0.5e6), "1/35 matrices  1.00/4.00 MB  0.50 MB/s  ETA 0:00:06");
    EXPECT_EQ(line(3, 7, 0.25e9, 0.999e9, 1e6), "3/7 matrices  250.00/999.00 MB  1.00 MB/s  ETA 0:12:29");
}

TEST(ProgressLine, EtaRoundingAndEdges) {
    // 59.6 s rounds to a full minute; 100 hours keep counting in the hour field.
    EXPECT_EQ(line(1, 2, 0, 59.6e6, 1e6), "1/2 matrices  0.00/59.60 MB  1.00 MB/s  ETA 0:01:00");
    EXPECT_EQ(line(1, 2, 0, 360e9, 1e6), "1/2 matrices  0.00/360.00 GB  0.00 GB/s  ETA 100:00:00");
    // Rate unknown (nothing processed yet in this run): no ETA to give.
    EXPECT_EQ(line(0, 35, 0, 4e6, 0), "0/35 matrices  0.00/4.00 MB  0.00 MB/s  ETA ?");
    // Done: ETA 0 even when the rate is unknown (a resume that found everything complete).
    EXPECT_EQ(line(35, 35, 4e6, 4e6, 0), "35/35 matrices  4.00/4.00 MB  0.00 MB/s  ETA 0:00:00");
}

}  // namespace
}  // namespace loftq
