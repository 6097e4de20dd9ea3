// Every malformed checkpoint is rejected with one InputError line naming the file (and the
// tensor when there is one), whether it is a single file, a sharded folder or a bad weight value.
// Each case corrupts exactly one thing of a small valid checkpoint that itself loads fine.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors_writer.hpp"
#include "support/paths.hpp"

using namespace loftq;
using loftq::testing::count_lines;
using loftq::testing::loftq_binary;
using loftq::testing::read_file;
using loftq::testing::run_command;
using loftq::testing::TempDir;
using loftq::testing::write_file;
namespace fs = std::filesystem;

namespace {

// w: F32 [2, 2] = 16 bytes at [0, 16); b: BF16 [3] = 6 bytes at [16, 22).
const std::string kHeader =
    R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
    R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}})";
const std::string kData(22, '\x01');

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xffu);
    return s;
}

// A file of `header` (space-padded to 8) and `data`.
std::string st_file(std::string header, const std::string& data = kData) {
    header.append((8 - header.size() % 8) % 8, ' ');
    return le64(header.size()) + header + data;
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    if (at == std::string::npos) throw std::runtime_error("test bug: '" + from + "' not in header");
    return s.replace(at, from.size(), to);
}

// What a loader does: open, validate every shard, read every float tensor with the finite check.
void load_everything(const std::string& path) {
    Checkpoint ck(path);
    ck.validate_all();
    for (const auto& name : ck.names())
        if (is_float_weight_dtype(ck.info(name).dtype)) ck.read_f32(name, FiniteCheck::reject);
}

// Three shards of one tensor each: a (F32 [2]), b (F32 [2]), c (F32 [2]); returns the folder.
std::string sharded_folder(const TempDir& dir, const std::string& name) {
    const std::string folder = dir / name;
    fs::create_directories(folder);
    const std::vector<TensorSpec> specs{{"a", DType::F32, {2}}, {"b", DType::F32, {2}}, {"c", DType::F32, {2}}};
    ShardedSafetensorsWriter w(folder, specs, 8);
    const float v[2] = {1, 2};
    for (const auto& s : specs) w.write(s.name, v, 8);
    w.finish();
    return folder;
}
const std::string kShard1 = "model-00001-of-00003.safetensors";
const std::string kShard2 = "model-00002-of-00003.safetensors";
const std::string kIndex = "model.safetensors.index.json";

struct Case {
    std::string label;
    // Builds the bad checkpoint in `dir`; returns {path to load, substrings the message must hold}.
    std::function<std::pair<std::string, std::vector<std::string>>(const TempDir& dir)> build;
};

// A single-file case: the file holds `bytes`; the message names the file and `tensor` (if any).
Case file_case(const std::string& label, const std::string& bytes, const std::string& tensor = "") {
    return {label, [=](const TempDir& dir) {
                const std::string path = dir / (label + ".safetensors");
                write_file(path, bytes);
                std::vector<std::string> want{path};
                if (!tensor.empty()) want.push_back("'" + tensor + "'");
                return std::make_pair(path, want);
            }};
}

Case header_case(const std::string& label, const std::string& from, const std::string& to,
                 const std::string& tensor = "") {
    return file_case(label, st_file(replaced(kHeader, from, to)), tensor);
}

std::string float_file(const std::vector<TensorSpec>& specs, const std::vector<std::string>& bytes) {
    TempDir tmp;
    SafetensorsWriter w(tmp / "f", specs);
    for (size_t i = 0; i < specs.size(); ++i) w.write(specs[i].name, bytes[i].data(), bytes[i].size());
    w.finish();
    return read_file(tmp / "f");
}

std::string as_bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

std::vector<Case> all_cases() {
    const std::string good = st_file(kHeader);
    std::vector<Case> c;
    c.push_back(file_case("shorter_than_8", "abc"));
    c.push_back(file_case("empty_file", ""));
    c.push_back(file_case("truncated", good.substr(0, good.size() - 3), "b"));
    c.push_back(file_case("header_length_past_end", le64(1000) + std::string(92, ' ')));
    c.push_back(file_case("header_length_over_100MB", le64(100000001) + good.substr(8)));
    c.push_back(file_case("header_length_zero", le64(0) + kData));
    c.push_back(file_case("bad_json", st_file(kHeader.substr(0, 60))));
    c.push_back(header_case("invalid_utf8", "\"b\":", "\"b\xff\":"));
    c.push_back(file_case("not_an_object", st_file("[1, 2, 3]", "")));
    c.push_back(header_case("duplicate_name", "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}",
                            "\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}", "w"));
    c.push_back(header_case("unknown_dtype", "\"BF16\"", "\"BF17\"", "b"));
    c.push_back(header_case("dtype_not_string", "\"BF16\"", "16", "b"));
    c.push_back(header_case("negative_dim", "[2,2]", "[-2,-2]", "w"));
    c.push_back(header_case("fractional_dim", "[2,2]", "[2.0,2]", "w"));
    c.push_back(header_case("shape_not_array", "[3]", "3", "b"));
    c.push_back(header_case("shape_overflow", "[3]", "[4294967296,4294967296,3]", "b"));
    c.push_back(header_case("missing_data_offsets", ",\"data_offsets\":[16,22]", "", "b"));
    c.push_back(header_case("missing_dtype", "\"dtype\":\"BF16\",", "", "b"));
    c.push_back(file_case("utf8_bom", st_file("\xEF\xBB\xBF" + kHeader)));  // serde_json refuses it
    c.push_back(header_case("duplicate_entry_key", "\"dtype\":\"BF16\",", "\"dtype\":\"BF16\",\"dtype\":\"F16\",", "b"));
    c.push_back(header_case("entry_not_object", "{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}", "5", "b"));
    c.push_back(header_case("offsets_reversed", "[16,22]", "[22,16]", "b"));
    c.push_back(header_case("offsets_three_numbers", "[16,22]", "[16,22,28]", "b"));
    c.push_back(header_case("offsets_negative", "[16,22]", "[-16,22]", "b"));
    c.push_back(file_case("offsets_hole", st_file(replaced(kHeader, "[16,22]", "[20,26]"), kData + "1234"), "b"));
    c.push_back(file_case("first_tensor_not_at_zero",
                          st_file(replaced(replaced(kHeader, "[0,16]", "[4,20]"), "[16,22]", "[20,26]"), kData + "1234"),
                          "w"));
    c.push_back(file_case("offsets_overlap", st_file(replaced(kHeader, "[16,22]", "[10,16]"), kData.substr(0, 16)), "b"));
    c.push_back(header_case("wrong_byte_size", "[0,16]", "[0,10]", "w"));
    c.push_back(file_case("trailing_bytes", good + "xyz"));
    c.push_back(header_case("metadata_non_string", "{\"format\":\"pt\"}", "{\"format\":1}"));
    c.push_back(header_case("metadata_not_object", "{\"format\":\"pt\"}", "[\"pt\"]"));
    c.push_back({"fifo_not_a_file", [](const TempDir& d) {
                     const std::string p = d / "fifo.safetensors";
                     if (::mkfifo(p.c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
                     return std::make_pair(p, std::vector<std::string>{p, "not a regular file"});
                 }});
    c.push_back(file_case("nul_padding", le64(kHeader.size() + 2) + kHeader + std::string(2, '\0') + kData));
    // Bad weight values, seen by read_f32 with the finite check.
    const float nan4[4] = {1, 2, 3, std::numeric_limits<float>::quiet_NaN()};
    const uint16_t bf16_inf[3] = {0x3f80, 0x7f80, 0x0000};
    const uint16_t f16_inf[3] = {0x3c00, 0x3c00, 0xfc00};
    c.push_back(file_case("nan_in_f32", float_file({{"w", DType::F32, {2, 2}}}, {as_bytes(nan4, 16)}), "w"));
    c.push_back(file_case("inf_in_bf16", float_file({{"b", DType::BF16, {3}}}, {as_bytes(bf16_inf, 6)}), "b"));
    c.push_back(file_case("inf_in_f16", float_file({{"h", DType::F16, {3}}}, {as_bytes(f16_inf, 6)}), "h"));
    // Checkpoint-level: paths and sharded folders.
    c.push_back({"no_such_path", [](const TempDir& d) {
                     return std::make_pair(d / "nope", std::vector<std::string>{d / "nope"});
                 }});
    c.push_back({"folder_without_model", [](const TempDir& d) {
                     fs::create_directories(d / "empty");
                     return std::make_pair(d / "empty", std::vector<std::string>{d / "empty"});
                 }});
    auto sharded = [](const std::string& label, std::function<std::vector<std::string>(const std::string&)> corrupt) {
        return Case{label, [=](const TempDir& d) {
                        const std::string folder = sharded_folder(d, label);
                        return std::make_pair(folder, corrupt(folder));
                    }};
    };
    c.push_back(sharded("missing_shard", [](const std::string& f) {
        fs::remove(f + "/" + kShard2);
        return std::vector<std::string>{f + "/" + kShard2, kIndex};
    }));
    c.push_back(sharded("index_bad_json", [](const std::string& f) {
        write_file(f + "/" + kIndex, "{\"weight_map\": {\"a\": ");
        return std::vector<std::string>{f + "/" + kIndex};
    }));
    c.push_back(sharded("index_without_weight_map", [](const std::string& f) {
        write_file(f + "/" + kIndex, "{\"metadata\": {\"total_size\": 24}}");
        return std::vector<std::string>{f + "/" + kIndex, "weight_map"};
    }));
    c.push_back(sharded("index_escapes_folder", [](const std::string& f) {
        write_file(f + "/" + kIndex, R"({"weight_map": {"a": "../model-00001-of-00003.safetensors",)"
                                     R"( "b": ")" + kShard2 + R"(", "c": "model-00003-of-00003.safetensors"}})");
        return std::vector<std::string>{f + "/" + kIndex, "'a'", "../"};
    }));
    c.push_back(sharded("index_total_size_not_integer", [](const std::string& f) {
        write_file(f + "/" + kIndex, R"({"metadata": {"total_size": "24"}, "weight_map": {"a": ")" + kShard1 + R"("}})");
        return std::vector<std::string>{f + "/" + kIndex, "total_size"};
    }));
    c.push_back(sharded("index_shard_not_string", [](const std::string& f) {
        write_file(f + "/" + kIndex, R"({"weight_map": {"a": 1}})");
        return std::vector<std::string>{f + "/" + kIndex, "'a'"};
    }));
    c.push_back(sharded("index_duplicate_tensor", [](const std::string& f) {
        write_file(f + "/" + kIndex, R"({"weight_map": {"a": ")" + kShard1 + R"(", "a": ")" + kShard1 + R"("}})");
        return std::vector<std::string>{f + "/" + kIndex, "'a'"};
    }));
    c.push_back(sharded("index_names_tensor_shard_lacks", [](const std::string& f) {
        write_file(f + "/" + kIndex, R"({"weight_map": {"a": ")" + kShard1 + R"(", "b": ")" + kShard2 +
                                         R"(", "c": "model-00003-of-00003.safetensors", "z": ")" + kShard2 + R"("}})");
        return std::vector<std::string>{f + "/" + kShard2, "'z'", kIndex};
    }));
    // Shard 2 rewritten with one more tensor: the index does not list it, or maps it elsewhere.
    auto rewrite_shard2 = [](const std::string& f, const std::string& extra) {
        SafetensorsWriter w(f + "/" + kShard2, {{"b", DType::F32, {2}}, {extra, DType::F32, {2}}});
        const float v[2] = {1, 2};
        w.write("b", v, 8);
        w.write(extra, v, 8);
        w.finish();
    };
    c.push_back(sharded("tensor_not_in_index", [=](const std::string& f) {
        rewrite_shard2(f, "stray");
        return std::vector<std::string>{f + "/" + kShard2, "'stray'"};
    }));
    c.push_back(sharded("duplicate_across_shards", [=](const std::string& f) {
        rewrite_shard2(f, "a");
        return std::vector<std::string>{f + "/" + kShard2, "'a'"};
    }));
    c.push_back(sharded("bad_shard_file", [](const std::string& f) {
        write_file(f + "/" + kShard2, "garbage");
        return std::vector<std::string>{f + "/" + kShard2};
    }));
    return c;
}

}  // namespace

TEST(SafetensorsMalformed, TheUncorruptedBaseLoads) {
    TempDir dir;
    write_file(dir / "good.safetensors", st_file(kHeader));
    EXPECT_NO_THROW(load_everything(dir / "good.safetensors"));
    EXPECT_NO_THROW(load_everything(sharded_folder(dir, "sharded")));
}

// What the reference loader accepts loads here too: an unknown key in a tensor entry is ignored
// (serde skips unknown fields), and the tensor reads as without it.
TEST(SafetensorsMalformed, UnknownEntryKeyIsIgnoredAsTheReferenceLoaderDoes) {
    TempDir dir;
    write_file(dir / "extra.safetensors", st_file(replaced(kHeader, "[16,22]", "[16,22],\"align\":8")));
    EXPECT_NO_THROW(load_everything(dir / "extra.safetensors"));
    const SafetensorsFile f(dir / "extra.safetensors");
    EXPECT_EQ(f.info("b").shape, std::vector<int64_t>{3});
}

TEST(SafetensorsMalformed, EveryCaseIsOneInputErrorNamingFileAndTensor) {
    TempDir dir;
    const auto cases = all_cases();
    EXPECT_GE(cases.size(), 25u);
    for (const auto& c : cases) {
        SCOPED_TRACE(c.label);
        const auto [path, want] = c.build(dir);
        try {
            load_everything(path);
            ADD_FAILURE() << c.label << ": accepted";
        } catch (const InputError& e) {
            const std::string msg = e.what();
            EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
            for (const auto& w : want) EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.label << ": not an InputError: " << e.what();
        }
    }
}

TEST(SafetensorsMalformed, NonFiniteMessageNamesTheElement) {
    TempDir dir;
    std::vector<float> w(6 * 5, 0.5f);
    w[2 * 5 + 3] = INFINITY;
    write_file(dir / "w.safetensors", float_file({{"m.weight", DType::F32, {6, 5}}}, {as_bytes(w.data(), 120)}));
    SafetensorsFile f(dir / "w.safetensors");
    EXPECT_NO_THROW(f.read_f32("m.weight"));  // the check is opt-in
    try {
        f.read_f32("m.weight", FiniteCheck::reject);
        ADD_FAILURE() << "Inf accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("element 13 [2, 3] is Inf"), std::string::npos) << e.what();
    }
}

TEST(SafetensorsMalformed, NonFiniteInALargeTensorReportsTheFirst) {
    TempDir dir;
    std::vector<uint16_t> w(3000000, 0x3f80);  // BF16 1.0; several parallel chunks
    w[2500000] = 0x7f80;                        // Inf
    w[1200000] = 0x7fc0;                        // NaN: the first
    write_file(dir / "big.safetensors", float_file({{"big", DType::BF16, {3000, 1000}}}, {as_bytes(w.data(), 6000000)}));
    SafetensorsFile f(dir / "big.safetensors");
    try {
        f.read_f32("big", FiniteCheck::reject);
        ADD_FAILURE() << "NaN accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("element 1200000 [1200, 0] is NaN"), std::string::npos) << e.what();
    }
    std::vector<float> tail(1000);
    f.read_f32_into("big", 2500000, 1000, tail.data());  // unchecked range read
    EXPECT_TRUE(std::isinf(tail[0]));
    try {
        f.read_f32_into("big", 2000000, 1000000, std::vector<float>(1000000).data(), FiniteCheck::reject);
        ADD_FAILURE() << "Inf accepted";
    } catch (const InputError& e) {  // the index is the tensor's, not the range's
        EXPECT_NE(std::string(e.what()).find("element 2500000 [2500, 0] is Inf"), std::string::npos) << e.what();
    }
}

TEST(SafetensorsMalformed, InspectPrintsOneLineAndFails) {
    TempDir dir;
    for (const auto& c : all_cases()) {
        if (c.label != "shorter_than_8" && c.label != "duplicate_name" && c.label != "missing_shard" &&
            c.label != "offsets_hole" && c.label != "duplicate_across_shards")
            continue;
        SCOPED_TRACE(c.label);
        const auto [path, want] = c.build(dir);
        const auto r = run_command(loftq_binary() + " inspect '" + path + "'");
        EXPECT_NE(r.exit_code, 0);
        EXPECT_EQ(count_lines(r.output), 1) << r.output;
        EXPECT_NE(r.output.find(want[0]), std::string::npos) << r.output;
    }
}

TEST(SafetensorsMalformed, InspectListsStories260K) {
    const auto r = run_command(loftq_binary() + " inspect " + loftq::testing::stories_dir());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(count_lines(r.output), 1 + 47 + 2);  // header, tensors, totals, what stays 16-bit
    EXPECT_NE(r.output.find("kept in 16-bit by transformers + bitsandbytes: embedding 1 tensor (12.6%"), std::string::npos);
    EXPECT_NE(r.output.find("model.layers.0.mlp.down_proj.weight"), std::string::npos);
    EXPECT_NE(r.output.find("[64, 172]"), std::string::npos);
    EXPECT_NE(r.output.find("47 tensors, 260032 parameters, 1040128 bytes, 1 shard\n"), std::string::npos);
    EXPECT_EQ(run_command(loftq_binary() + " inspect " + loftq::testing::stories_dir()).output, r.output);
}
