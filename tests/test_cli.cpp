// The command-line contract: subcommands, --help, validation, and one-line rejections.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/config.hpp"
#include "core/error.hpp"

#include <nlohmann/json.hpp>
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
        // The line the user sees: a setting's error is named by its option (error_line).
        EXPECT_NE(error_line(e).find(names), std::string::npos) << error_line(e);
    }
}
}  // namespace

TEST(Cli, DefaultsMatchTheContract) {
    Config c = parse({"quantize", "--model", "m", "--work", "w.h5"});
    EXPECT_EQ(c.spec.bits, 4);
    EXPECT_EQ(c.spec.quant, "nf");
    EXPECT_EQ(c.spec.loftq.quant.blocksize, 64);
    EXPECT_EQ(c.spec.loftq.svd_options.rank, 64);
    EXPECT_EQ(c.spec.loftq.iters, 5);
    EXPECT_TRUE(c.spec.targets.empty());  // all-linear
    EXPECT_EQ(c.spec.loftq.svd, SvdChoice::automatic);
    EXPECT_EQ(c.spec.loftq.lora_alpha, 16);
    EXPECT_TRUE(c.spec.loftq.keep_best);
    EXPECT_TRUE(c.spec.loftq.compensate_scaling);
    EXPECT_EQ(c.spec.loftq.backbone, Backbone::BF16);
    EXPECT_EQ(c.quantize.io, IoMode::direct);
    EXPECT_EQ(c.quantize.device, "auto");
}

TEST(Cli, ParsesListsSizesAndSwitches) {
    Config c = parse({"quantize", "--model", "m", "--work", "w.h5", "--targets", "q_proj,v_proj",
                      "--split-threshold", "512MiB", "--bits", "2.5", "--no-keep-best",
                      "--no-scale-compensation", "--resume", "--double-quant"});
    ASSERT_EQ(c.spec.targets.size(), 2u);
    EXPECT_EQ(c.spec.targets[1], "v_proj");
    EXPECT_EQ(c.spec.split_threshold, 512ull * 1024 * 1024);
    EXPECT_TRUE(c.spec.mixed_bits());
    EXPECT_FALSE(c.spec.loftq.keep_best);
    EXPECT_FALSE(c.spec.loftq.compensate_scaling);
    EXPECT_TRUE(c.quantize.resume);
    EXPECT_TRUE(c.spec.loftq.quant.double_quant);
    Config e = parse({"export", "--work", "w", "--model", "m", "--output", "o", "--max-shard-size", "2GB"});
    EXPECT_EQ(e.exp.max_shard_size, 2000000000ull);
    EXPECT_FALSE(e.exp.backbone.has_value());  // not given: export takes the run file's own backbone
    EXPECT_EQ(parse({"export", "--work", "w", "--model", "m", "--output", "o", "--backbone", "bnb4"}).exp.backbone,
              Backbone::BNB4);
    Config r = parse({"run", "--model", "m", "--output", "o", "--work", "o.h5", "--overwrite", "--svd", "exact",
                      "--io", "scatter", "--backbone", "fp16"});
    EXPECT_EQ(r.work_path, "o.h5");
    EXPECT_EQ(r.spec.loftq.backbone, Backbone::FP16);
    EXPECT_EQ(r.spec.loftq.svd, SvdChoice::exact);
    EXPECT_EQ(r.quantize.io, IoMode::scatter);
    EXPECT_TRUE(r.exp.overwrite);
    Config i = parse({"inspect", "some/path"});
    EXPECT_EQ(i.inspect_path, "some/path");
}

TEST(Cli, Int8ImpliesEightBits) {
    const Config c = parse({"quantize", "--model", "m", "--work", "w", "--quant", "int8", "--backbone", "int8"});
    EXPECT_EQ(c.spec.bits, 8);
    EXPECT_EQ(c.spec.loftq.backbone, Backbone::INT8);
    EXPECT_EQ(c.spec.blocksize_for(8, 172), 172);  // one scale per row
    EXPECT_EQ(RunSpec::from_json(c.spec.to_json(), "t").to_json(), c.spec.to_json());
}

TEST(Cli, RejectsBadOptionsNamingThem) {
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--frobnicate"}, "frobnicate");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--rank", "abc"}, "rank");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--rank", "0"}, "--rank");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--bits", "3.7"}, "--bits");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--quant", "fp4", "--bits", "2"}, "--bits");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--quant", "int8", "--bits", "4"}, "--bits");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--quant", "int8", "--backbone", "bnb4"}, "--backbone");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--quant", "int8", "--double-quant"}, "--double-quant");
    expect_rejected({"quantize", "--model", "m", "--work", "w", "--backbone", "int8"}, "--backbone");
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

// Upper bounds: nothing overflows (oversample + rank in int) or runs for ever (power iterations),
// and the LoRA scaling keeps the compensated factors finite (issue #16).
TEST(Cli, RejectsOutOfBoundSettingsNamingThem) {
    const std::vector<std::pair<std::vector<const char*>, const char*>> bad{
        {{"--oversample", "2147483647"}, "--oversample"}, {{"--oversample", "4097"}, "--oversample"},
        {{"--power-iters", "2147483647"}, "--power-iters"}, {{"--power-iters", "65"}, "--power-iters"},
        {{"--warm-power-iters", "65"}, "--warm-power-iters"}, {{"--warm-power-iters", "-1"}, "--warm-power-iters"},
        {{"--rank", "65537"}, "--rank"},                    {{"--iters", "1001"}, "--iters"},
        {{"--lora-alpha", "1e-300"}, "--lora-alpha"},       {{"--lora-alpha", "1e300"}, "--lora-alpha"},
        {{"--lora-alpha", "1e-5", "--rank", "64"}, "--lora-alpha"},
        {{"--lora-alpha", "1e7", "--rslora", "--rank", "4"}, "--lora-alpha"},
        {{"--watchdog", "-1"}, "--watchdog"},              {{"--watchdog", "nan"}, "--watchdog"},
        {{"--watchdog", "1e9"}, "--watchdog"},              {{"--power-scheme", "lanczos"}, "--power-scheme"},
    };
    for (const auto& [extra, name] : bad) {
        std::vector<const char*> args{"quantize", "--model", "m", "--work", "w"};
        args.insert(args.end(), extra.begin(), extra.end());
        expect_rejected(args, name);
    }
    Config c = parse({"quantize", "--model", "m", "--work", "w", "--oversample", "4096", "--power-iters", "64",
                      "--rank", "65536", "--iters", "1000", "--lora-alpha", "1"});
    EXPECT_EQ(c.spec.loftq.svd_options.oversample, 4096);
    EXPECT_EQ(c.spec.loftq.svd_options.power_iters, 64);
    EXPECT_EQ(parse({"run", "--model", "m", "--output", "o", "--watchdog", "600"}).quantize.watchdog, 600);
    EXPECT_EQ(parse({"quantize", "--model", "m", "--work", "w"}).quantize.watchdog, 0);  // off
    // The run file's copy is held to the same bounds.
    auto j = nlohmann::json::parse(parse({"quantize", "--model", "m", "--work", "w"}).spec.to_json());
    j["power-iters"] = 2147483647;
    EXPECT_THROW(RunSpec::from_json(j.dump(), "x"), InputError);
}

TEST(Cli, RejectsEmptyTargetsNegativeSeedsAndStrayArguments) {
    for (const char* t : {"", "q_proj,", ",q_proj", "q_proj,,v_proj"})
        expect_rejected({"quantize", "--model", "m", "--work", "w", "--targets", t}, "--targets");
    for (const char* s : {"-1", "1.5", "18446744073709551616", "0x10", "", " 1"}) {
        expect_rejected({"quantize", "--model", "m", "--work", "w", "--seed", s}, "--seed");
        expect_rejected({"synth", "--output", "o", "--seed", s}, "--seed");
    }
    EXPECT_EQ(parse({"quantize", "--model", "m", "--work", "w", "--seed", "18446744073709551615"})
                  .spec.loftq.svd_options.seed,
              18446744073709551615ull);
    EXPECT_EQ(parse({"synth", "--output", "o", "--seed", "7"}).synth.seed, 7u);
    expect_rejected({"quantize", "--model", "m", "--work", "w", "leftover"}, "'leftover'");
    expect_rejected({"inspect", "a", "b"}, "'b'");
    EXPECT_EQ(parse({"inspect", "a"}).inspect_path, "a");
}

// The run file stores the spec once; reading it back gives the same spec and refuses what it
// cannot trust, naming the setting: nothing falls back to a default.
TEST(RunSpec, RoundTripsAndRefusesMissingOrUnknownKeys) {
    Config c = parse({"quantize", "--model", "m", "--work", "w", "--bits", "2.5", "--rank", "8", "--svd", "exact",
                      "--seed", "7", "--lora-alpha", "8", "--rslora", "--targets", "q_proj", "--backbone", "fp16"});
    const std::string text = c.spec.to_json();
    const RunSpec back = RunSpec::from_json(text, "run file 'x'");
    EXPECT_EQ(back.to_json(), text);
    EXPECT_EQ(back.loftq.svd, SvdChoice::exact);
    EXPECT_EQ(back.loftq.svd_options.seed, 7u);
    EXPECT_EQ(back.loftq.backbone, Backbone::FP16);
    auto j = nlohmann::json::parse(text);
    for (const char* key : {"rank", "lora-alpha", "backbone", "scale-compensation"}) {
        auto k = j;
        k.erase(key);
        try {
            RunSpec::from_json(k.dump(), "run file 'x'");
            ADD_FAILURE() << "accepted a spec without " << key;
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("run file 'x'"), std::string::npos) << e.what();
        }
    }
    auto extra = j;
    extra["colour"] = "blue";
    EXPECT_THROW(RunSpec::from_json(extra.dump(), "x"), InputError);
    auto bad = j;
    bad["rank"] = 0;  // parsed, then validated
    EXPECT_THROW(RunSpec::from_json(bad.dump(), "x"), InputError);
    bad = j;
    bad["svd"] = 3;
    EXPECT_THROW(RunSpec::from_json(bad.dump(), "x"), InputError);
    bad = j;
    bad["power-scheme"] = "lanczos";
    EXPECT_THROW(RunSpec::from_json(bad.dump(), "x"), InputError);
    // Run files written before these settings existed ran 1 warm power iteration and kept only
    // the last block of a fresh sketch: they resume so, not with today's defaults.
    EXPECT_EQ(back.loftq.svd_options.scheme, PowerScheme::krylov);
    auto old = j;
    old.erase("warm-power-iters");
    old.erase("power-scheme");
    const RunSpec before = RunSpec::from_json(old.dump(), "x");
    EXPECT_EQ(before.loftq.svd_options.warm_power_iters, 1);
    EXPECT_EQ(before.loftq.svd_options.scheme, PowerScheme::subspace);
}

// A lower layer names a setting in its own words; the command line names the option.
TEST(Cli, SettingErrorsAreNamedByTheirOption) {
    const ConfigError e("rank 80 exceeds min(rows, cols) = 64", "rank");
    EXPECT_EQ(error_line(e), "option --rank: rank 80 exceeds min(rows, cols) = 64");
    const InputError i("config.json: broken");
    EXPECT_EQ(error_line(i), "config.json: broken");
}

TEST(Cli, BinaryPrintsOneLineAndFailsOnBadOption) {
    auto r = run_command(loftq_binary() + " quantize --model m --work w --rank -3");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find("--rank"), std::string::npos) << r.output;
}

// LOFTQ_SIMD is checked with the options: an unknown level is one line naming it, exit 2, and
// nothing written (no run file, no output folder).
TEST(Cli, BadSimdLevelIsRefusedBeforeAnythingIsWritten) {
    loftq::testing::TempDir dir;
    const std::string out = dir / "out";
    auto r = run_command("LOFTQ_SIMD=avx9 " + loftq_binary() + " run --model " + loftq::testing::stories_dir() +
                         " --output " + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find("LOFTQ_SIMD"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(out)) << r.output;
    EXPECT_FALSE(std::filesystem::exists(out + ".run.h5")) << r.output;
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
