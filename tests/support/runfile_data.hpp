// Test data for the run-file tests: a small layout covering the cases that matter (plain,
// double-quant, a matrix written in row shards, a tail partial block, rank 0 / no iterations)
// and a record whose every value is a pure function of (matrix index, dataset, element), so
// any rank count and any interruption must reproduce the same bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "io/runfile.hpp"

namespace loftq::testing {

inline MatrixLayout runfile_matrix(const std::string& name, int64_t rows, int64_t cols,
                                   int64_t blocksize, bool double_quant, int64_t rank,
                                   int64_t iters) {
    MatrixLayout m;
    m.name = name;
    m.rows = rows;
    m.cols = cols;
    m.bits = 4;
    m.format = "nf4";
    m.blocksize = blocksize;
    m.codes_bytes = (rows * cols * 4 + 7) / 8;
    m.nblocks = (rows * cols + blocksize - 1) / blocksize;
    m.double_quant = double_quant;
    m.rank = rank;
    m.iters = iters;
    return m;
}

// Index 2 is the one the tests write in row shards (128 rows of 64 = one block per row).
inline constexpr size_t kSplitMatrix = 2;

inline RunLayout runfile_test_layout() {
    return {runfile_matrix("model.layers.0.self_attn.q_proj.weight", 64, 128, 64, false, 8, 3),
            runfile_matrix("model.layers.0.mlp.down_proj.weight", 96, 64, 64, true, 4, 2),
            runfile_matrix("model.layers.1.mlp.up_proj.weight", 128, 64, 64, false, 16, 5),
            runfile_matrix("odd.tail", 5, 7, 32, false, 2, 1),
            runfile_matrix("lm_head.weight", 32, 96, 128, true, 0, 0),
            runfile_matrix("model.layers.1.self_attn.o_proj.weight", 64, 64, 64, false, 8, 2)};
}

inline std::string runfile_test_options(int rank = 64) {
    return "{\"rank\": " + std::to_string(rank) +
           ", \"bits\": 4, \"format\": \"nf4\", \"iters\": 5, \"seed\": 1234}";
}

inline uint64_t runfile_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

inline uint64_t runfile_value(size_t index, int dataset, size_t element) {
    return runfile_mix((uint64_t(index) << 48) ^ (uint64_t(dataset) << 40) ^ element);
}

// A float in [-1, 1) from the hash: exact, no rounding differences anywhere.
inline float runfile_float(uint64_t h) {
    return static_cast<float>(static_cast<int32_t>(h >> 40)) / 8388608.0f;
}

inline MatrixRecord runfile_test_record(const MatrixLayout& m, size_t index) {
    MatrixRecord r;
    r.layout = m;
    r.codes.resize(m.codes_bytes);
    for (size_t i = 0; i < r.codes.size(); ++i) r.codes[i] = uint8_t(runfile_value(index, 0, i));
    if (m.double_quant) {
        r.absmax_codes.resize(m.nblocks);
        for (size_t i = 0; i < r.absmax_codes.size(); ++i)
            r.absmax_codes[i] = uint8_t(runfile_value(index, 1, i));
        r.nested_absmax.resize((m.nblocks + 255) / 256);
        for (size_t i = 0; i < r.nested_absmax.size(); ++i)
            r.nested_absmax[i] = runfile_float(runfile_value(index, 2, i));
        r.nested_offset = runfile_float(runfile_value(index, 3, 0));
    } else {
        r.absmax.resize(m.nblocks);
        for (size_t i = 0; i < r.absmax.size(); ++i)
            r.absmax[i] = runfile_float(runfile_value(index, 1, i));
    }
    r.A.resize(m.rank * m.cols);
    for (size_t i = 0; i < r.A.size(); ++i) r.A[i] = runfile_float(runfile_value(index, 4, i));
    r.B.resize(m.rows * m.rank);
    for (size_t i = 0; i < r.B.size(); ++i) r.B[i] = runfile_float(runfile_value(index, 5, i));
    r.qlora_error = runfile_float(runfile_value(index, 6, 0));
    r.iteration_error.resize(m.iters);
    for (size_t i = 0; i < r.iteration_error.size(); ++i)
        r.iteration_error[i] = runfile_float(runfile_value(index, 7, i));
    r.chosen_iteration = static_cast<int32_t>(index % 3);
    r.fingerprint = runfile_value(index, 8, 0);
    return r;
}

// Rows [row_begin, row_end) of a full record, as the owning group member would hold them.
inline MatrixRows runfile_rows(const MatrixRecord& r, int64_t row_begin, int64_t row_end) {
    MatrixRows s;
    s.row_begin = row_begin;
    s.row_end = row_end;
    const auto e0 = row_begin * r.layout.cols, e1 = row_end * r.layout.cols;
    const auto byte = [&](int64_t e) { return e == r.layout.rows * r.layout.cols ? int64_t(r.codes.size()) : e * r.layout.bits / 8; };
    const auto block = [&](int64_t e) { return (e + r.layout.blocksize - 1) / r.layout.blocksize; };
    s.codes.assign(r.codes.begin() + byte(e0), r.codes.begin() + byte(e1));
    if (r.layout.double_quant)
        s.absmax_codes.assign(r.absmax_codes.begin() + block(e0), r.absmax_codes.begin() + block(e1));
    else
        s.absmax.assign(r.absmax.begin() + block(e0), r.absmax.begin() + block(e1));
    s.B.assign(r.B.begin() + row_begin * r.layout.rank, r.B.begin() + row_end * r.layout.rank);
    return s;
}

template <typename T>
std::vector<uint8_t> runfile_bytes(const std::vector<T>& v) {
    std::vector<uint8_t> b(v.size() * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
    return b;
}

}  // namespace loftq::testing
