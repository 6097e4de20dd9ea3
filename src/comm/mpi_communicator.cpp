// Communicator over MPI on host float buffers. MPI calls block, so synchronize() has nothing to do;
// a dead peer is the launcher's business (mpirun kills the job when a rank calls MPI_Abort).
#include <limits>

#include "comm/communicator.hpp"
#include "core/error.hpp"

namespace loftq {
namespace {

int count_arg(size_t n) {
    LOFTQ_CHECK(n <= static_cast<size_t>(std::numeric_limits<int>::max()),
                "MPI message of ", n, " floats exceeds the int count range");
    return static_cast<int>(n);
}

class MpiCommunicator final : public Communicator {
public:
    explicit MpiCommunicator(MPI_Comm comm) {
        MPI_CHECK(MPI_Comm_dup(comm, &comm_));
        MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
        MPI_CHECK(MPI_Comm_size(comm_, &size_));
    }
    ~MpiCommunicator() override {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Comm_free(&comm_);
    }
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    bool device_buffers() const override { return false; }

    void allreduce_sum(float* buf, size_t n) override {
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, count_arg(n), MPI_FLOAT, MPI_SUM, comm_));
    }
    void broadcast(float* buf, size_t n, int root) override {
        MPI_CHECK(MPI_Bcast(buf, count_arg(n), MPI_FLOAT, root, comm_));
    }
    void gather(const float* send, size_t n, float* recv, int root) override {
        MPI_CHECK(MPI_Gather(send, count_arg(n), MPI_FLOAT, recv, count_arg(n), MPI_FLOAT, root, comm_));
    }
    void allgather(const float* send, size_t n, float* recv) override {
        MPI_CHECK(MPI_Allgather(send, count_arg(n), MPI_FLOAT, recv, count_arg(n), MPI_FLOAT, comm_));
    }
    void synchronize() override {}

private:
    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) {
    return std::make_unique<MpiCommunicator>(comm);
}

#ifndef LOFTQ_HAVE_CUDA
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, void*, double) {
    LOFTQ_THROW(NotImplemented, "NCCL communicator: this loftq was built without CUDA");
}
#endif

}  // namespace loftq
