// What makes a run file know its model and its data: the tensor fingerprint (io/fingerprint.hpp)
// and the per-matrix checksum (record_checksum, check_record_integrity in io/runfile.hpp). Both
// are sums over positions, so any split of the rows gives the same value; every stored result
// and the fingerprint are covered, the rank-dependent timings and owners are not.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/fingerprint.hpp"
#include "io/runfile.hpp"
#include "support/paths.hpp"
#include "support/runfile_data.hpp"

namespace loftq {
namespace {

using namespace loftq::testing;

std::vector<float> random_rows(int64_t rows, int64_t cols, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> d;
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (auto& x : v) x = d(gen);
    return v;
}

TEST(Fingerprint, AnySplitOfTheRowsGivesTheSameSum) {
    const int64_t rows = 13, cols = 7;
    const auto v = random_rows(rows, cols, 1);
    const uint64_t whole = fingerprint_rows(v.data(), 0, rows, cols);
    for (int64_t cut = 0; cut <= rows; ++cut) {
        const uint64_t parts = fingerprint_rows(v.data(), 0, cut, cols) +
                               fingerprint_rows(v.data() + cut * cols, cut, rows - cut, cols);
        EXPECT_EQ(parts, whole) << "cut at row " << cut;
    }
}

TEST(Fingerprint, ChangesWithAnyValueTheRowOrderOrTheHeader) {
    const int64_t rows = 6, cols = 5;
    auto v = random_rows(rows, cols, 2);
    const uint64_t base = fingerprint_rows(v.data(), 0, rows, cols);
    auto w = v;
    w[17] = std::nextafter(w[17], 10.0f);  // one ulp
    EXPECT_NE(fingerprint_rows(w.data(), 0, rows, cols), base);
    w = v;
    std::swap_ranges(w.begin(), w.begin() + cols, w.begin() + cols);  // rows 0 and 1 swapped
    EXPECT_NE(fingerprint_rows(w.data(), 0, rows, cols), base);
    const uint64_t h = fingerprint_header("a.weight", DType::BF16, rows, cols);
    EXPECT_NE(fingerprint_header("b.weight", DType::BF16, rows, cols), h);
    EXPECT_NE(fingerprint_header("a.weight", DType::F16, rows, cols), h);
    EXPECT_NE(fingerprint_header("a.weight", DType::BF16, cols, rows), h);
}

TEST(Fingerprint, OfACheckpointTensorIsHeaderPlusRows) {
    const Checkpoint ck(stories_dir());
    const std::string name = "model.layers.0.self_attn.q_proj.weight";
    const TensorInfo& t = ck.info(name);
    const auto values = ck.read_f32(name);
    EXPECT_EQ(tensor_fingerprint(ck, name), fingerprint_header(name, t.dtype, t.shape[0], t.shape[1]) +
                                                fingerprint_rows(values.data(), 0, t.shape[0], t.shape[1]));
    EXPECT_NE(tensor_fingerprint(ck, name), tensor_fingerprint(ck, "model.layers.0.self_attn.k_proj.weight"));
}

MatrixRecord sealed(size_t index) {
    MatrixRecord r = runfile_test_record(runfile_test_layout()[index], index);
    r.checksum = record_checksum(r);
    return r;
}

TEST(RecordChecksum, CoversEveryStoredResultButTimingsAndOwners) {
    for (size_t i : {size_t{0}, size_t{1}}) {  // without and with double quant
        const MatrixRecord base = sealed(i);
        const uint64_t sum = record_checksum(base);
        const std::vector<std::pair<const char*, std::function<void(MatrixRecord&)>>> changes = {
            {"codes", [](MatrixRecord& r) { r.codes[3] ^= 1; }},
            {"absmax", [](MatrixRecord& r) {
                 if (r.absmax.empty()) r.absmax_codes[0] ^= 1; else r.absmax[0] = -r.absmax[0];
             }},
            {"A", [](MatrixRecord& r) { r.A.back() = 0.5f + r.A.back(); }},
            {"B", [](MatrixRecord& r) { r.B[5] = 2 * r.B[5] + 1; }},
            {"qlora_error", [](MatrixRecord& r) { r.qlora_error += 1; }},
            {"loaded_error", [](MatrixRecord& r) { r.loaded_error += 1; }},
            {"iteration_error", [](MatrixRecord& r) { r.iteration_error[0] += 1; }},
            {"chosen_iteration", [](MatrixRecord& r) { r.chosen_iteration += 1; }},
            {"fingerprint", [](MatrixRecord& r) { r.fingerprint ^= 1; }},
            {"nested", [](MatrixRecord& r) {
                 if (r.layout.double_quant) r.nested_offset += 1; else r.codes[0] ^= 2;
             }},
        };
        for (const auto& [what, change] : changes) {
            MatrixRecord r = base;
            change(r);
            EXPECT_NE(record_checksum(r), sum) << what << " of matrix " << i;
        }
        MatrixRecord r = base;
        r.timings = {9, 9, 9, 9, 9};
        r.owner_first = 3;
        r.owner_count = 4;
        EXPECT_EQ(record_checksum(r), sum);
    }
}

std::string integrity_error(const MatrixRecord& r) {
    try {
        check_record_integrity(r, "RUN.h5");
        return "";
    } catch (const InputError& e) {
        return e.what();
    }
}

TEST(RecordIntegrity, DamageAndNonFiniteValuesAreRefusedNamingTheMatrix) {
    const MatrixRecord good = sealed(0);
    EXPECT_EQ(integrity_error(good), "");
    MatrixRecord r = good;
    r.codes[0] ^= 0x80;
    EXPECT_EQ(integrity_error(r), "run file RUN.h5 is damaged: matrix " + good.layout.name + " fails its checksum");
    // Forged with a matching checksum (or stored by a writer that produced it): still refused.
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const std::vector<std::pair<std::string, std::function<void(MatrixRecord&)>>> forged = {
        {"value in A", [&](MatrixRecord& m) { m.A[1] = nan; }},
        {"value in B", [&](MatrixRecord& m) { m.B[2] = -inf; }},
        {"absmax", [&](MatrixRecord& m) { m.absmax[0] = nan; }},
        {"loaded error", [&](MatrixRecord& m) { m.loaded_error = inf; }},
        {"iteration error", [&](MatrixRecord& m) { m.iteration_error[0] = nan; }},
    };
    for (const auto& [what, change] : forged) {
        MatrixRecord f = good;
        change(f);
        f.checksum = record_checksum(f);
        const std::string e = integrity_error(f);
        EXPECT_NE(e.find("matrix " + good.layout.name + " holds a non-finite " + what), std::string::npos) << e;
    }
    MatrixRecord dq = sealed(1);
    dq.nested_absmax[0] = nan;
    dq.checksum = record_checksum(dq);
    EXPECT_NE(integrity_error(dq).find("non-finite nested absmax"), std::string::npos);
}

}  // namespace
}  // namespace loftq
