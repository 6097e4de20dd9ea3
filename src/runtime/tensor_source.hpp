// Where a rank's weights come from (--io):
// - direct:  every rank opens the checkpoint itself (a shared file system) and reads only the
//            rows it owns, through mmap: memory is bounded by the rows it holds.
// - scatter: only rank 0 can see the files. With more than one rank, rank 0 becomes the reader:
//            it serves row ranges on request (raw bytes, widened by the receiver) and computes
//            nothing; ranks 1.. do the work. With one rank, scatter is direct.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "plan/plan.hpp"

namespace loftq {

class ProgressReporter;

class TensorSource {
public:
    virtual ~TensorSource() = default;
    // Rows [row_begin, row_end) of matrix m as float32 (row-major, (row_end - row_begin) * cols
    // floats). InputError naming the tensor on NaN or Inf.
    virtual void read_rows(const MatrixPlan& m, int64_t row_begin, int64_t row_end, float* dst) = 0;
    // This rank reads nothing more (lets a scatter server stop).
    virtual void finish() {}
};

std::unique_ptr<TensorSource> make_direct_source(const std::string& model_dir);
// A worker's source under --io scatter: asks rank 0 of comm.
std::unique_ptr<TensorSource> make_scatter_client(MPI_Comm comm);

// Rank 0 under --io scatter: answers read requests until `clients` ranks called finish(),
// feeding the progress reporter between requests.
void serve_scatter(MPI_Comm comm, const std::string& model_dir, const Plan& plan, int clients,
                   ProgressReporter& progress);

}  // namespace loftq
