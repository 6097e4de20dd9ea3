// `loftq synth`: a valid, deterministic, LLM-like checkpoint that the reader and the plan accept.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <csignal>
#include <sys/resource.h>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "runtime/synth.hpp"
#include "plan/plan.hpp"
#include "support/paths.hpp"

using namespace loftq;
using loftq::testing::read_file;
using loftq::testing::TempDir;

namespace {

SynthOptions tiny(uint64_t seed, uint64_t max_shard = 5000000000ULL) {
    SynthOptions o;
    o.preset = "tiny";
    o.layers = 2;
    o.seed = seed;
    o.max_shard_size = max_shard;
    return o;
}

double kurtosis(const std::vector<float>& x) {
    double mean = 0;
    for (float v : x) mean += v;
    mean /= x.size();
    double m2 = 0, m4 = 0;
    for (float v : x) {
        const double d = v - mean;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    m2 /= x.size();
    m4 /= x.size();
    return m4 / (m2 * m2);
}

double stddev(const std::vector<float>& x) {
    double s = 0, s2 = 0;
    for (float v : x) s += v, s2 += double(v) * v;
    s /= x.size();
    return std::sqrt(s2 / x.size() - s * s);
}

std::vector<float> singular_values(std::vector<float> a, int m, int n) {
    std::vector<float> s(std::min(m, n));
    LAPACK_CHECK(LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'N', m, n, a.data(), n, s.data(), nullptr, m, nullptr, n));
    return s;
}

}  // namespace

TEST(Synth, TinyRoundTripsThroughTheReader) {
    TempDir dir;
    const std::string out = dir / "tiny";
    const SynthSummary s = write_synthetic_checkpoint(out, tiny(7));
    const ModelConfig m = read_model_config(out);
    EXPECT_EQ(m.num_hidden_layers, 2);
    EXPECT_EQ(m.torch_dtype, "bfloat16");
    EXPECT_EQ(m.hidden_size, preset_model_config("tiny").hidden_size);
    const Checkpoint ck(out);
    const auto want = expected_tensors(m);
    ASSERT_EQ(ck.names().size(), want.size());
    EXPECT_EQ(s.tensors, want.size());
    uint64_t total = 0;
    for (const auto& t : want) {
        const TensorInfo& info = ck.info(t.name);
        EXPECT_EQ(info.shape, t.shape) << t.name;
        EXPECT_EQ(info.dtype, DType::BF16) << t.name;
        total += info.nbytes();
    }
    EXPECT_EQ(total, s.total_bytes);
    EXPECT_EQ(ck.file_of(want[0].name).metadata().at("format"), "pt");
    // No temporary files left behind.
    for (const auto& e : std::filesystem::directory_iterator(out))
        EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
}

TEST(Synth, DeterministicPerSeedAndIndependentOfSharding) {
    TempDir dir;
    write_synthetic_checkpoint(dir / "a", tiny(3));
    write_synthetic_checkpoint(dir / "b", tiny(3));
    write_synthetic_checkpoint(dir / "c", tiny(4));
    const std::string a = read_file(dir / "a/model.safetensors");
    EXPECT_EQ(a, read_file(dir / "b/model.safetensors"));
    EXPECT_EQ(read_file(dir / "a/config.json"), read_file(dir / "b/config.json"));
    EXPECT_NE(a, read_file(dir / "c/model.safetensors"));

    // Sharded at 200 kB: several files + index, the same tensor bytes.
    const SynthSummary s = write_synthetic_checkpoint(dir / "d", tiny(3, 200000));
    EXPECT_GT(s.files.size(), 2u);
    EXPECT_TRUE(std::filesystem::exists(dir / "d/model.safetensors.index.json"));
    const Checkpoint one(dir / "a"), many(dir / "d");
    EXPECT_TRUE(many.sharded());
    for (const auto& name : one.names()) {
        const TensorInfo& i = one.info(name);
        ASSERT_EQ(i.nbytes(), many.info(name).nbytes());
        EXPECT_EQ(0, std::memcmp(one.raw(name), many.raw(name), i.nbytes())) << name;
    }
}

TEST(Synth, RowsArePureFunctionsOfTheirIndex) {
    TempDir dir;
    write_synthetic_checkpoint(dir / "m", tiny(11));
    const Checkpoint ck(dir / "m");
    const ModelConfig m = read_model_config(dir / "m");
    for (const auto& t : expected_tensors(m)) {
        if (t.shape.size() != 2) continue;
        const int64_t cols = t.shape[1], r0 = 5, r1 = 9;
        std::vector<float> chunk((r1 - r0) * cols);
        synth_rows(m, t, 11, r0, r1, chunk.data());
        std::vector<float> stored(chunk.size());
        ck.read_f32_into(t.name, r0 * cols, chunk.size(), stored.data());
        for (size_t k = 0; k < chunk.size(); ++k)
            ASSERT_EQ(stored[k], bf16_to_float(float_to_bf16(chunk[k]))) << t.name << " element " << k;
    }
}

TEST(Synth, WeightsAreHeavyTailedWithDecayingSpectrum) {
    TempDir dir;
    write_synthetic_checkpoint(dir / "m", tiny(0));
    const Checkpoint ck(dir / "m");
    for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.gate_proj.weight",
                             "model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight",
                             "lm_head.weight"}) {
        const std::vector<float> w = ck.read_f32(name);
        const double k = kurtosis(w), sd = stddev(w);
        std::printf("%s: std %.4f kurtosis %.2f\n", name, sd, k);
        EXPECT_GT(k, 4.0) << name;
        EXPECT_GT(sd, 0.01) << name;
        EXPECT_LT(sd, 0.04) << name;
    }
    const std::vector<float> norm = ck.read_f32("model.layers.0.input_layernorm.weight");
    double mean = 0;
    for (float v : norm) mean += v / norm.size();
    EXPECT_NEAR(mean, 1.0, 0.1);

    // Spectrum of one MLP matrix against an i.i.d. matrix of the same shape and std: the top
    // singular values stand well above the bulk and fall off one after the other.
    const TensorInfo& info = ck.info("model.layers.1.mlp.down_proj.weight");
    const int m = static_cast<int>(info.shape[0]), n = static_cast<int>(info.shape[1]);
    const auto s = singular_values(ck.read_f32(info.name), m, n);
    const float median = s[s.size() / 2];
    std::printf("down_proj singular values / median:");
    for (int i = 0; i < 10; ++i) std::printf(" %.2f", s[i] / median);
    std::printf("\n");
    EXPECT_GT(s[0], 4.0f * median);
    EXPECT_GT(s[0], 1.25f * s[1]);
    EXPECT_GT(s[1], 1.15f * s[3]);
    EXPECT_GT(s[2], 1.25f * s[8]);
    std::vector<float> iid(static_cast<size_t>(m) * n);
    std::mt19937_64 gen(1);
    std::normal_distribution<float> gauss(0.0f, 0.02f);
    for (auto& v : iid) v = gauss(gen);
    const auto g = singular_values(iid, m, n);
    std::printf("i.i.d. Gaussian: s0 / median %.2f\n", g[0] / g[g.size() / 2]);
    EXPECT_GT(s[0] / median, 2.0f * (g[0] / g[g.size() / 2]));
}

TEST(Synth, PlansCleanly) {
    TempDir dir;
    write_synthetic_checkpoint(dir / "m", tiny(1));
    RunSpec o;
    o.loftq.svd_options.rank = 16;
    const Plan p = build_plan(read_model_config(dir / "m"), read_catalogue(Checkpoint(dir / "m")), o);
    EXPECT_EQ(p.matrices.size(), 14u);
    EXPECT_EQ(p.matrices[0].dtype, DType::BF16);
}

TEST(Synth, CommandLineWritesOnceAndRefusesToOverwrite) {
    TempDir dir;
    const std::string cmd = loftq::testing::loftq_binary() + " synth --preset tiny --layers 1 --dtype fp32 --output " +
                            (dir / "m") + " 2>&1";
    auto r = loftq::testing::run_command(cmd);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(Checkpoint(dir / "m").info("model.norm.weight").dtype, DType::F32);
    EXPECT_EQ(read_model_config(dir / "m").torch_dtype, "float32");
    r = loftq::testing::run_command(cmd);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("--output"), std::string::npos) << r.output;
    EXPECT_EQ(loftq::testing::count_lines(r.output), 1) << r.output;
    r = loftq::testing::run_command(loftq::testing::loftq_binary() + " synth --preset gpt5 --output " +
                                    (dir / "x") + " 2>&1");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("--preset"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "x"));
}

namespace loftq {
namespace {

// A write that fails midway (RLIMIT_FSIZE: write() fails with EFBIG, as on a full disk; SIGXFSZ
// ignored) leaves no partial checkpoint: the folder synth created is gone, and a folder that
// existed before keeps only what it held.
TEST(Synth, FailedWriteLeavesNoPartialCheckpoint) {
    TempDir dir;
    std::filesystem::create_directory(dir / "existing");
    testing::write_file(dir / "existing/notes.txt", "keep");
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    auto* const old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = saved;
    small.rlim_cur = 16384;  // below tiny's first shard
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    bool thrown_new = false, thrown_existing = false;
    try {
        write_synthetic_checkpoint(dir / "new", tiny(1));
    } catch (const Error&) {
        thrown_new = true;
    }
    try {
        write_synthetic_checkpoint(dir / "existing", tiny(1));
    } catch (const Error&) {
        thrown_existing = true;
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    EXPECT_TRUE(thrown_new);
    EXPECT_TRUE(thrown_existing);
    EXPECT_FALSE(std::filesystem::exists(dir / "new"));
    std::vector<std::string> left;
    for (const auto& e : std::filesystem::directory_iterator(dir / "existing")) left.push_back(e.path().filename());
    EXPECT_EQ(left, std::vector<std::string>{"notes.txt"});
}

}  // namespace
}  // namespace loftq
