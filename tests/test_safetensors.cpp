// safetensors reading, writing and sharding: the API the driver and exporter rely on, and
// bit-exact, byte-deterministic round trips of the real stories260K checkpoint.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "support/paths.hpp"

using namespace loftq;
using loftq::testing::read_file;
using loftq::testing::write_file;
using loftq::testing::stories_dir;
using loftq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string stories_file() { return stories_dir() + "/model.safetensors"; }

std::vector<TensorSpec> specs_of(const SafetensorsFile& f) {
    std::vector<TensorSpec> specs;
    for (const auto& t : f.tensors()) specs.push_back({t.name, t.dtype, t.shape});
    return specs;
}

// Copy every tensor of `f` into a new file at `path` (spec order = storage order).
void copy_file(const SafetensorsFile& f, const std::string& path) {
    SafetensorsWriter w(path, specs_of(f), f.metadata());
    for (const auto& t : f.tensors()) w.write(t.name, f.raw(t.name), t.nbytes());
    w.finish();
}

std::vector<std::string> folder_entries(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST(Safetensors, OpensStories260K) {
    SafetensorsFile f(stories_file());
    ASSERT_EQ(f.tensors().size(), 47u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    const TensorInfo& up = f.info("model.layers.0.mlp.up_proj.weight");
    EXPECT_EQ(up.dtype, DType::F32);
    EXPECT_EQ(up.shape, (std::vector<int64_t>{172, 64}));
    EXPECT_EQ(up.nbytes(), 172u * 64 * 4);
    uint64_t params = 0, pos = 0;
    for (const auto& t : f.tensors()) {  // storage order tiles the buffer
        EXPECT_EQ(t.begin, pos);
        pos = t.end;
        params += t.numel();
    }
    EXPECT_EQ(params, 260032u);
    EXPECT_EQ(8 + f.header_size() + pos, f.file_size());
    EXPECT_FALSE(f.contains("lm_head.weight"));
    EXPECT_THROW(f.info("lm_head.weight"), InputError);
}

TEST(Safetensors, ReadF32MatchesRawBytesAndRanges) {
    SafetensorsFile f(stories_file());
    const std::string name = "model.layers.3.self_attn.k_proj.weight";
    const std::vector<float> w = f.read_f32(name, FiniteCheck::reject);
    ASSERT_EQ(w.size(), 32u * 64);
    EXPECT_EQ(std::memcmp(w.data(), f.raw(name), w.size() * 4), 0);
    std::vector<float> part(100, -1.0f);
    f.read_f32_into(name, 500, 100, part.data());
    for (size_t i = 0; i < part.size(); ++i) EXPECT_EQ(part[i], w[500 + i]);
    EXPECT_THROW(f.read_f32_into(name, 2000, 100, part.data()), Error);
    EXPECT_EQ(f.read_as<float>(name), w);
    EXPECT_THROW(f.read_as<int32_t>(name), InputError);
}

TEST(Safetensors, WidensBf16F16AndCopiesIntegers) {
    TempDir dir;
    const std::vector<uint16_t> bf16{0x3f80, 0xc000, 0x0000, 0x3e80, 0x7f7f, 0x0001};  // 1, -2, 0, .25, max, tiny
    const std::vector<uint16_t> f16{0x3c00, 0xc000, 0x0001, 0x7bff};                    // 1, -2, 2^-24, 65504
    const std::vector<int64_t> i64{-5, 0, 1LL << 40};
    const std::vector<uint8_t> u8{1, 2, 3, 255};
    const std::vector<TensorSpec> specs{{"b", DType::BF16, {2, 3}},
                                        {"h", DType::F16, {4}},
                                        {"i", DType::I64, {3}},
                                        {"u", DType::U8, {4, 1}},
                                        {"empty", DType::F32, {0, 7}},
                                        {"scalar", DType::F32, {}}};
    const float scalar = 3.5f;
    SafetensorsWriter w(dir / "x.safetensors", specs);
    w.write("b", bf16.data(), 12);
    w.write("h", f16.data(), 8);
    w.write("i", i64.data(), 24);
    w.write("u", u8.data(), 4);
    w.write("empty", nullptr, 0);
    w.write("scalar", &scalar, 4);
    w.finish();

    SafetensorsFile f(dir / "x.safetensors");
    EXPECT_EQ(f.read_f32("b"), (std::vector<float>{1.0f, -2.0f, 0.0f, 0.25f, bf16_to_float(0x7f7f), bf16_to_float(1)}));
    EXPECT_EQ(f.read_f32("h"), (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24), 65504.0f}));
    EXPECT_EQ(f.read_as<int64_t>("i"), i64);
    EXPECT_EQ(f.read_as<uint8_t>("u"), u8);
    EXPECT_THROW(f.read_f32("u"), InputError);
    EXPECT_TRUE(f.read_f32("empty").empty());
    EXPECT_EQ(f.info("empty").shape, (std::vector<int64_t>{0, 7}));
    EXPECT_EQ(f.read_f32("scalar"), std::vector<float>{3.5f});
    EXPECT_EQ(f.info("scalar").numel(), 1u);
}

TEST(Safetensors, FirstNonFiniteFindsTheFirstBadValue) {
    std::vector<float> v(10000, 1.0f);
    EXPECT_EQ(first_non_finite(v.data(), v.size()), v.size());
    v[9000] = INFINITY;
    v[5000] = -INFINITY;
    EXPECT_EQ(first_non_finite(v.data(), v.size()), 5000u);
    v[4097] = NAN;
    EXPECT_EQ(first_non_finite(v.data(), v.size()), 4097u);
}

TEST(SafetensorsWriter, RoundTripIsBitExactAndDeterministic) {
    TempDir dir;
    SafetensorsFile src(stories_file());
    copy_file(src, dir / "a.safetensors");
    copy_file(src, dir / "b.safetensors");
    EXPECT_EQ(read_file(dir / "a.safetensors"), read_file(dir / "b.safetensors"));
    EXPECT_EQ(folder_entries(dir.path()), (std::vector<std::string>{"a.safetensors", "b.safetensors"}));

    SafetensorsFile back(dir / "a.safetensors");
    EXPECT_EQ((8 + back.header_size()) % 8, 0u);
    EXPECT_EQ(back.metadata(), src.metadata());
    ASSERT_EQ(back.tensors().size(), src.tensors().size());
    for (const auto& t : src.tensors()) {
        const TensorInfo& b = back.info(t.name);
        EXPECT_EQ(b.dtype, t.dtype);
        EXPECT_EQ(b.shape, t.shape);
        ASSERT_EQ(b.nbytes(), t.nbytes());
        EXPECT_EQ(std::memcmp(back.raw(t.name), src.raw(t.name), t.nbytes()), 0) << t.name;
    }
    // The header is exactly what safetensors_header() promises, __metadata__ first.
    const std::string bytes = read_file(dir / "a.safetensors");
    EXPECT_EQ(bytes.substr(0, 8 + back.header_size()), safetensors_header(specs_of(src), src.metadata()));
    EXPECT_EQ(bytes.substr(8, 30), "{\"__metadata__\":{\"format\":\"pt\"");
}

TEST(SafetensorsWriter, RejectsWrongOrderSizeAndLeavesNothingBehind) {
    TempDir dir;
    const std::vector<TensorSpec> specs{{"a", DType::F32, {2}}, {"b", DType::BF16, {3}}};
    const float a[2] = {1, 2};
    {
        SafetensorsWriter w(dir / "x.safetensors", specs);
        EXPECT_THROW(w.write("b", a, 6), Error);  // out of order
        EXPECT_THROW(w.write("a", a, 4), Error);  // wrong size
        w.write("a", a, 8);
        EXPECT_THROW(w.finish(), Error);  // "b" missing
        EXPECT_EQ(folder_entries(dir.path()).size(), 1u);  // only the temporary file
        EXPECT_EQ(folder_entries(dir.path())[0].rfind(".x.safetensors.tmp-", 0), 0u);
    }
    EXPECT_TRUE(folder_entries(dir.path()).empty());
    EXPECT_THROW(SafetensorsWriter(dir / "y", {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}}), Error);
    EXPECT_THROW(SafetensorsWriter(dir / "y", {{"a", DType::F32, {-1}}}), Error);
    EXPECT_THROW(SafetensorsWriter(dir / "y", {{"bad\xff", DType::F32, {1}}}), Error);  // not UTF-8
    EXPECT_THROW(SafetensorsWriter(dir / "no/such/folder/y", {}), Error);
    EXPECT_TRUE(folder_entries(dir.path()).empty());
}

TEST(SafetensorsWriter, AppendedPartsGiveTheSameFile) {
    TempDir dir;
    SafetensorsFile src(stories_file());
    copy_file(src, dir / "whole.safetensors");
    {
        ShardedSafetensorsWriter w(dir.path(), specs_of(src), uint64_t{1} << 40);  // K = 1: model.safetensors
        for (const auto& t : src.tensors())
            for (uint64_t b = 0; b < t.nbytes(); b += 1000)
                w.append(t.name, src.raw(t.name) + b, std::min<uint64_t>(1000, t.nbytes() - b));
        w.finish();
    }
    EXPECT_EQ(read_file(dir / "model.safetensors"), read_file(dir / "whole.safetensors"));

    const uint8_t bytes[8] = {};
    SafetensorsWriter w(dir / "x", {{"a", DType::U8, {8}}, {"b", DType::U8, {2}}});
    w.append("a", bytes, 5);
    EXPECT_THROW(w.append("a", bytes, 4), Error);  // past the tensor's 8 bytes
    EXPECT_THROW(w.write("a", bytes, 8), Error);   // whole while half appended
    EXPECT_THROW(w.append("b", bytes, 1), Error);  // next tensor before this one completes
    w.append("a", bytes, 3);
    w.write("b", bytes, 2);
    EXPECT_NO_THROW(w.finish());
}

// Opening a checkpoint and reading one tensor must not read the rest: a 3 GB sparse tensor
// next to a small one costs neither disk nor memory.
TEST(Safetensors, ReadingOneTensorTouchesOnlyItsPages) {
    TempDir dir;
    const uint64_t big = 3000000000ULL;
    const std::vector<TensorSpec> specs{{"big", DType::U8, {static_cast<int64_t>(big)}}, {"small", DType::F32, {4}}};
    const std::string header = safetensors_header(specs, default_metadata());
    const float small[4] = {1, -2, 3, -4};
    write_file(dir / "sparse.safetensors", header);
    fs::resize_file(dir / "sparse.safetensors", header.size() + big + 16);
    {
        std::FILE* f = std::fopen((dir / "sparse.safetensors").c_str(), "r+b");
        ASSERT_NE(f, nullptr);
        std::fseek(f, static_cast<long>(header.size() + big), SEEK_SET);
        std::fwrite(small, 4, 4, f);
        std::fclose(f);
    }
    struct rusage before {}, after {};
    getrusage(RUSAGE_SELF, &before);
    Checkpoint ck(dir / "sparse.safetensors");
    EXPECT_EQ(ck.read_f32("small", FiniteCheck::reject), (std::vector<float>{1, -2, 3, -4}));
    EXPECT_EQ(ck.info("big").nbytes(), big);
    getrusage(RUSAGE_SELF, &after);
    EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB of peak RSS grew";  // far below 3 GB
}

TEST(ShardPlan, GreedyInOrderWithOversizedTensorsAlone) {
    const std::vector<TensorSpec> specs{{"a", DType::U8, {10}}, {"b", DType::U8, {10}}, {"c", DType::U8, {100}},
                                        {"d", DType::U8, {5}},  {"e", DType::U8, {20}}, {"f", DType::U8, {1}}};
    const auto plan = plan_shards(specs, 20);
    ASSERT_EQ(plan.size(), 5u);
    EXPECT_EQ(plan[0].tensors, (std::vector<size_t>{0, 1}));
    EXPECT_EQ(plan[1].tensors, (std::vector<size_t>{2}));
    EXPECT_EQ(plan[2].tensors, (std::vector<size_t>{3}));
    EXPECT_EQ(plan[3].tensors, (std::vector<size_t>{4}));  // 5 + 20 > 20
    EXPECT_EQ(plan[4].tensors, (std::vector<size_t>{5}));  // 20 + 1 > 20
    const auto plan21 = plan_shards(specs, 21);
    ASSERT_EQ(plan21.size(), 4u);
    EXPECT_EQ(plan21[3].tensors, (std::vector<size_t>{4, 5}));
    EXPECT_EQ(plan[0].file_name, "model-00001-of-00005.safetensors");
    EXPECT_EQ(plan[4].file_name, "model-00005-of-00005.safetensors");
    const auto one = plan_shards(specs, 1000);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].file_name, "model.safetensors");
    EXPECT_EQ(one[0].nbytes, 146u);
}

TEST(ShardedWriter, StoriesRoundTripThroughCheckpoint) {
    SafetensorsFile src(stories_file());
    const auto specs = specs_of(src);
    auto write_sharded = [&](const std::string& folder) {
        fs::create_directories(folder);
        ShardedSafetensorsWriter w(folder, specs, 300000);
        for (const auto& t : src.tensors()) w.write(t.name, src.raw(t.name), t.nbytes());
        w.finish();
        return w.shards().size();
    };
    TempDir dir;
    const size_t k = write_sharded(dir / "one");
    write_sharded(dir / "two");
    ASSERT_EQ(k, 4u);  // 1,040,128 bytes at <= 300,000 per shard
    for (const auto& name : folder_entries(dir / "one"))
        EXPECT_EQ(read_file(dir / "one/" + name), read_file(dir / "two/" + name)) << name;
    EXPECT_EQ(folder_entries(dir / "one").size(), k + 1);  // shards + index, no temporaries

    const auto index = nlohmann::json::parse(read_file(dir / "one/model.safetensors.index.json"));
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 1040128u);
    EXPECT_EQ(index["weight_map"].size(), 47u);
    EXPECT_EQ(index["weight_map"]["model.norm.weight"], "model-00004-of-00004.safetensors");

    Checkpoint ck(dir / "one");
    EXPECT_TRUE(ck.sharded());
    ck.validate_all();
    ASSERT_EQ(ck.names().size(), 47u);
    EXPECT_TRUE(std::is_sorted(ck.names().begin(), ck.names().end()));
    EXPECT_EQ(ck.shard_paths().size(), k);
    for (const auto& t : src.tensors()) {
        EXPECT_EQ(ck.info(t.name).shape, t.shape);
        EXPECT_EQ(std::memcmp(ck.raw(t.name), src.raw(t.name), t.nbytes()), 0) << t.name;
        EXPECT_EQ(ck.read_f32(t.name), src.read_f32(t.name));
    }
    for (const auto& p : ck.shard_paths()) EXPECT_EQ(SafetensorsFile(p).metadata().at("format"), "pt");
}

TEST(ShardedWriter, UnfinishedWriterRemovesEveryTemporary) {
    TempDir dir;
    const std::vector<TensorSpec> specs{{"a", DType::U8, {8}}, {"b", DType::U8, {8}}, {"c", DType::U8, {8}}};
    const uint8_t bytes[8] = {};
    {
        ShardedSafetensorsWriter w(dir.path(), specs, 8);
        w.write("a", bytes, 8);
        w.write("b", bytes, 8);
        EXPECT_EQ(folder_entries(dir.path()).size(), 2u);  // two temporaries, nothing final
        EXPECT_THROW(w.finish(), Error);
    }
    EXPECT_TRUE(folder_entries(dir.path()).empty());
}

TEST(Checkpoint, OpensAFileAFolderAndRejectsAnEmptyFolder) {
    Checkpoint by_folder(stories_dir());
    Checkpoint by_file(stories_file());
    EXPECT_FALSE(by_folder.sharded());
    EXPECT_EQ(by_folder.names(), by_file.names());
    EXPECT_EQ(by_folder.names().size(), 47u);
    EXPECT_TRUE(std::is_sorted(by_folder.names().begin(), by_folder.names().end()));
    EXPECT_EQ(by_folder.shard_of("model.norm.weight"), stories_dir() + "/model.safetensors");
    EXPECT_THROW(by_folder.info("nope"), InputError);
    TempDir empty;
    try {
        Checkpoint c(empty.path());
        ADD_FAILURE() << "an empty folder was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(empty.path()), std::string::npos) << e.what();
    }
    EXPECT_THROW(Checkpoint(empty / "missing"), InputError);
}

TEST(Inspect, ListsAShardedFolderWithShardsAndTotals) {
    SafetensorsFile src(stories_file());
    TempDir dir;
    {
        ShardedSafetensorsWriter w(dir.path(), specs_of(src), 300000);
        for (const auto& t : src.tensors()) w.write(t.name, src.raw(t.name), t.nbytes());
        w.finish();
    }
    const auto r = loftq::testing::run_command(loftq::testing::loftq_binary() + " inspect " + dir.path());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(loftq::testing::count_lines(r.output), 1 + 47 + 2);
    EXPECT_NE(r.output.find("47 tensors, 260032 parameters, 1040128 bytes, 4 shards\n"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("model.norm.weight"), std::string::npos);
    EXPECT_NE(r.output.find("model-00004-of-00004.safetensors\n"), std::string::npos) << r.output;
}

TEST(Inspect, OnlyRankZeroPrints) {
    const auto r = loftq::testing::run_command(
        "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 " +
        loftq::testing::mpiexec() + " -np 2 " + loftq::testing::loftq_binary() + " inspect " + stories_dir());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(loftq::testing::count_lines(r.output), 1 + 47 + 2) << r.output;
}
