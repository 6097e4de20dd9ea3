// The command-line contract: subcommands, --help, validation, and one-line rejections.
#include <gtest/gtest.h>

#include "cli/config.hpp"
#include "core/error.hpp"
#include "support/paths.hpp"

using namespace loftq;
using loftq::testing::count_lines;
using loftq::testing::loftq_binary;
using loftq::testing::run_command;

namespace {
Config parse(std::vector<const char*> args) {
    args.insert(args.begin(), "loftq");
    Config c;
    EXPECT_TRUE(parse_command_line(static_cast<int>(args.size()), args.data(), c));
    return c;
}
void expect_rejected(std::vector<const char*> args, const std::string& names) {
    args.insert(args.begin(), "loftq");
    Config c;
    try {
        parse_command_line(static_cast<int>(args.size()), args.data(), c);
        ADD_FAILURE() << "accepted, expected a rejection naming " << names;
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << e.what();
    }
}
}  // namespace

TEST(Cli, DefaultsMatchTheContract) {
    Config c = parse({"quantize", "--model", "m", "--work", "w.h5"});
    EXPECT_EQ(c.bits, 4);
    EXPECT_EQ(c.quant, "nf");
    EXPECT_EQ(c.blocksize, 64);
    EXPECT_EQ(c.rank, 64);
    EXPECT_EQ(c.iters, 5);
    EXPECT_TRUE(c.all_linear());
    EXPECT_EQ(c.svd, "auto");
    EXPECT_EQ(c.lora_alpha, 16);
    EXPECT_TRUE(c.keep_best);
    EXPECT_TRUE(c.compensate_scaling);
    EXPECT_EQ(c.io, "direct");
    EXPECT_EQ(c.device, "auto");
}

TEST(Cli, ParsesListsSizesAndSwitches) {
    Config c = parse({"quantize", "--model", "m", "--work", "w.h5", "--targets", "q_proj,v_proj",
                      "--split-threshold", "512MiB", "--bits", "2.5", "--no-keep-best",
                      "--no-scale-compensation", "--resume", "--double-quant"});
    ASSERT_EQ(c.targets.size(), 2u);
    EXPECT_EQ(c.targets[1], "v_proj");
    EXPECT_EQ(c.split_threshold, 512ull * 1024 * 1024);
    EXPECT_TRUE(c.mixed_bits());
    EXPECT_FALSE(c.keep_best);
    EXPECT_FALSE(c.compensate_scaling);
    EXPECT_TRUE(c.resume);
    EXPECT_TRUE(c.double_quant);
    Config e = parse({"export", "--work", "w", "--model", "m", "--output", "o", "--max-shard-size", "2GB"});
    EXPECT_EQ(e.max_shard_size, 2000000000ull);
    EXPECT_EQ(e.backbone, "");  // not given: export takes the run file's own backbone
    EXPECT_EQ(parse({"export", "--work", "w", "--model", "m", "--output", "o", "--backbone", "bnb4"}).backbone, "bnb4");
    Config r = parse({"run", "--model", "m", "--output", "o", "--work", "o.h5", "--overwrite"});
    EXPECT_EQ(r.work_path, "o.h5");
    EXPECT_EQ(r.backbone, "bf16");
    EXPECT_TRUE(r.overwrite);
    Config i = parse({"inspect", "some/path"});
    EXPECT_EQ(i.inspect_path, "some/path");
}

TEST(Cli, RejectsBadOptionsNamingThem) {
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--frobnicate"}, "frobnicate");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--rank", "abc"}, "rank");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--rank", "0"}, "--rank");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--bits", "3.7"}, "--bits");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--quant", "fp4", "--bits", "2"}, "--bits");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--blocksize", "48"}, "--blocksize");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--blocksize", "8192"}, "--blocksize");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--svd", "fast"}, "--svd");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--io", "nfs"}, "--io");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--device", "tpu"}, "--device");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--split-threshold", "lots"}, "split-threshold");
    expect_rejected({"quantize", "--work", "w"}, "--model");
    expect_rejected({"quantize", "--model", "m"}, "--work");
    expect_rejected({"export", "--work", "w", "--model", "m", "--output", "o", "--backbone", "int3"}, "--backbone");
    expect_rejected({"synth", "--output", "o", "--preset", "gpt5"}, "--preset");
    expect_rejected({"inspect"}, "PATH");
    expect_rejected({"frobnicate"}, "frobnicate");
    // An option of another subcommand is unknown here.
    expect_rejected({"inspect", "x", "--rank", "4"}, "rank");
}

TEST(Cli, BinaryPrintsOneLineAndFailsOnBadOption) {
    auto r = run_command(loftq_binary() + " quantize --model m --work w --rank -3");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find("--rank"), std::string::npos) << r.output;
}

TEST(Cli, HelpPerSubcommand) {
    for (const char* cmd : {"quantize", "export", "run", "verify", "inspect", "synth"}) {
        auto r = run_command(loftq_binary() + " " + cmd + " --help");
        EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.output;
        EXPECT_NE(r.output.find(std::string("loftq ") + cmd + " options"), std::string::npos) << r.output;
    }
    auto top = run_command(loftq_binary() + " --help");
    EXPECT_EQ(top.exit_code, 0);
    EXPECT_NE(top.output.find("loftq synth"), std::string::npos);
}
