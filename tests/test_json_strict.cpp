// io/json_strict: read_json_file refuses anything but a small regular file of strict JSON, never
// hangs on a FIFO, and names the file in every error.
#include "io/json_strict.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;
using loftq::testing::TempDir;
using loftq::testing::write_file;

namespace loftq {
namespace {

// The InputError message of f(), or "" when f() did not throw one.
std::string input_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

void expect_refused(const std::string& path, const std::string& reason, uint64_t max_bytes = kMaxJsonFileBytes) {
    const std::string msg = input_error_of([&] { read_json_file(path, "file", max_bytes); });
    ASSERT_FALSE(msg.empty()) << path << " was accepted";
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;  // names the file first
    EXPECT_NE(msg.find(reason), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(JsonStrict, ReadsAGoodFile) {
    TempDir dir;
    write_file(dir / "config.json", "{\"a\": {\"b\": [1, 2]}, \"c\": \"\xc3\xa9\"}\n");
    const nlohmann::json j = read_json_file(dir / "config.json");
    EXPECT_EQ(j["a"]["b"][1], 2);
    EXPECT_EQ(j["c"], "\xc3\xa9");
}

TEST(JsonStrict, FifoIsRefusedWithoutHanging) {
    TempDir dir;
    const std::string fifo = dir / "config.json";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    // On a thread, so a regression that blocks in open() fails the test instead of hanging it.
    // (A hung thread is left to the process exit; the FIFO then gets a writer from the cleanup.)
    auto result = std::async(std::launch::async, [&] {
        return input_error_of([&] { read_json_file(fifo, "file"); });
    });
    const auto status = result.wait_for(std::chrono::milliseconds(500));
    if (status != std::future_status::ready) {
        FILE* unblock = std::fopen(fifo.c_str(), "w");  // let the blocked open() return
        if (unblock) std::fclose(unblock);
        FAIL() << "read_json_file blocked on a FIFO";
    }
    const std::string msg = result.get();
    EXPECT_EQ(msg.rfind(fifo + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find("not a regular file (a FIFO)"), std::string::npos) << msg;
}

TEST(JsonStrict, FolderAndMissingFileAreRefused) {
    TempDir dir;
    fs::create_directory(dir / "adapter_config.json");
    expect_refused(dir / "adapter_config.json", "not a regular file (a folder)");
    expect_refused(dir / "report.json", "cannot open: No such file or directory");
}

TEST(JsonStrict, OversizedFileIsRefusedBeforeParsing) {
    TempDir dir;
    // Invalid JSON past the limit: the size check must come first to give this message.
    write_file(dir / "index.json", "{\"k\": 1}" + std::string(100, '!'));
    expect_refused(dir / "index.json", "108 bytes, over the 100-byte limit", 100);
    write_file(dir / "small.json", "{\"k\": 1}");
    EXPECT_EQ(read_json_file(dir / "small.json", "file", 8)["k"], 1);  // exactly at the limit
}

TEST(JsonStrict, DuplicateKeysAreRefusedAtEveryDepth) {
    TempDir dir;
    write_file(dir / "top.json", "{\"a\": 1, \"a\": 2}");
    expect_refused(dir / "top.json", "duplicate key 'a'");
    write_file(dir / "nested.json", "{\"p\": {\"x\": 1, \"x\": 1}}");
    expect_refused(dir / "nested.json", "'p': duplicate key 'x'");
    write_file(dir / "apart.json", "{\"p\": {\"x\": 1}, \"q\": {\"x\": 1}}");  // same key, two objects: fine
    EXPECT_NO_THROW(read_json_file(dir / "apart.json"));
}

TEST(JsonStrict, ByteOrderMarkIsRefused) {
    TempDir dir;
    write_file(dir / "bom.json", "\xef\xbb\xbf{\"a\": 1}");
    expect_refused(dir / "bom.json", "byte order mark");
    // In memory too: nlohmann alone would skip it.
    const std::string msg = input_error_of([] { parse_strict_json("run file R: options", "\xef\xbb\xbf{}"); });
    EXPECT_EQ(msg.rfind("run file R: options: ", 0), 0u) << msg;
}

TEST(JsonStrict, MalformedTextNamesTheFile) {
    TempDir dir;
    write_file(dir / "cut.json", "{\"model_type\": \"llama\", ");
    expect_refused(dir / "cut.json", "file is not valid JSON");
    write_file(dir / "latin1.json", "{\"a\": \"\xe9\"}");
    expect_refused(dir / "latin1.json", "not valid UTF-8 (byte 7)");
    write_file(dir / "nul.json", std::string("{}\0{\"a\":1}", 10));
    expect_refused(dir / "nul.json", "NUL byte (byte 2)");
    const std::string msg = input_error_of([] { parse_strict_json("plan from rank 0", "{\"a\": }"); });
    EXPECT_EQ(msg.rfind("plan from rank 0: content is not valid JSON", 0), 0u) << msg;
}

}  // namespace
}  // namespace loftq
