// The fingerprint of a model tensor that a run file records per matrix, so that `--resume` and
// `export` can tell that the model is the one the results were made from.
//
// Definition: keyed sum (core/hash64.hpp) of the header entry (name, dtype, shape) and of every
// row r of the tensor's values widened to float32, keyed by r. Widening bf16/fp16/fp32 to float32
// is exact and one-to-one on finite values, so this identifies the stored bytes; it is computed
// where the quantize job already holds the widened rows, and a group of ranks holding row shards
// adds its partial sums, so it is identical for any rank count.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.hpp"

namespace loftq {

class Checkpoint;

uint64_t fingerprint_header(const std::string& name, DType dtype, int64_t rows, int64_t cols);
// Partial sum over rows [row_begin, row_begin + nrows) given row-major in `values`.
uint64_t fingerprint_rows(const float* values, int64_t row_begin, int64_t nrows, int64_t cols);
// The whole fingerprint of a 2-D tensor of the checkpoint, read in blocks of rows.
uint64_t tensor_fingerprint(const Checkpoint& ck, const std::string& name);

}  // namespace loftq
