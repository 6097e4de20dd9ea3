// A dense float32 row-major matrix on the host: the unit the LoftQ loop works on.
#pragma once

#include <cstdint>
#include <vector>

namespace loftq {

struct Matrix {
    int64_t rows = 0;
    int64_t cols = 0;
    std::vector<float> data;  // rows * cols, row-major

    Matrix() = default;
    Matrix(int64_t r, int64_t c) : rows(r), cols(c), data(static_cast<size_t>(r * c), 0.0f) {}

    int64_t size() const { return rows * cols; }
    float& operator()(int64_t i, int64_t j) { return data[static_cast<size_t>(i * cols + j)]; }
    float operator()(int64_t i, int64_t j) const { return data[static_cast<size_t>(i * cols + j)]; }
    float* ptr() { return data.data(); }
    const float* ptr() const { return data.data(); }
};

}  // namespace loftq
