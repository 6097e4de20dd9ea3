#include "io/fingerprint.hpp"

#include <algorithm>
#include <memory>

#include "core/error.hpp"
#include "core/hash64.hpp"
#include "core/parallel.hpp"
#include "io/checkpoint.hpp"

namespace loftq {
namespace {
constexpr uint64_t kHeaderSalt = 0x46505f4845414452ull;  // "FP_HEADR"
constexpr uint64_t kRowSalt = 0x46505f524f575321ull;     // "FP_ROWS!"
}  // namespace

uint64_t fingerprint_header(const std::string& name, DType dtype, int64_t rows, int64_t cols) {
    const std::string entry = cat(name, '\0', dtype_name(dtype), '\0', rows, 'x', cols);
    return splitmix64(hash_bytes(entry.data(), entry.size(), kHeaderSalt));
}

// Rows hash independently and their keyed hashes add modulo 2^64, so the sum is the same in any
// order: OpenMP over rows.
uint64_t fingerprint_rows(const float* values, int64_t row_begin, int64_t nrows, int64_t cols) {
    uint64_t sum = 0;
    const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
#pragma omp parallel for schedule(static) reduction(+ : sum) if (nrows * cols >= kParallelMinElements)
    for (int64_t r = 0; r < nrows; ++r)
        sum += keyed(kRowSalt, static_cast<uint64_t>(row_begin + r),
                     hash_bytes(values + r * cols, row_bytes, kRowSalt));
    return sum;
}

uint64_t tensor_fingerprint(const Checkpoint& ck, const std::string& name) {
    const TensorInfo& t = ck.info(name);
    LOFTQ_CHECK(t.shape.size() == 2, "tensor '", name, "' is not 2-D");
    const int64_t rows = t.shape[0], cols = t.shape[1];
    // Blocks of about 8 MB of float32 (two of read_f32_into's parallel chunks), one buffer reused:
    // 64 MB blocks were a fresh buffer the size of most matrices, every page of it faulted in.
    // The sum does not depend on the blocking.
    const int64_t block = std::max<int64_t>(1, (int64_t{1} << 21) / std::max<int64_t>(cols, 1));
    // Not zero-filled: read_f32_into writes every element it is given.
    const std::unique_ptr<float[]> buf(new float[static_cast<size_t>(std::min(block, rows) * cols)]);
    uint64_t sum = fingerprint_header(name, t.dtype, rows, cols);
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
        const int64_t n = std::min(block, rows - r0);
        ck.read_f32_into(name, static_cast<uint64_t>(r0 * cols), static_cast<uint64_t>(n * cols), buf.get());
        sum += fingerprint_rows(buf.get(), r0, n, cols);
    }
    return sum;
}

}  // namespace loftq
