// Communicator over NCCL on device buffers, one GPU per rank (STYLE.md 3, 10).
//
// Collectives run on the communicator's own stream, after an event recorded on the compute stream,
// and the compute stream waits on an event recorded after them: callers keep enqueueing on their
// compute stream as if the collective were a kernel. synchronize() polls the stream and
// ncclCommGetAsyncError under a timeout and aborts the communicator on error or timeout, so a dead
// peer becomes an exception instead of a hang.
#include <chrono>
#include <thread>

#include "comm/communicator.hpp"
#include "core/nccl_check.hpp"

namespace loftq {
namespace {

class NcclCommunicator final : public Communicator {
public:
    NcclCommunicator(MPI_Comm mpi, cudaStream_t compute, double timeout_s)
        : compute_(compute), timeout_s_(timeout_s) {
        MPI_CHECK(MPI_Comm_rank(mpi, &rank_));
        MPI_CHECK(MPI_Comm_size(mpi, &size_));
        ncclUniqueId id{};
        if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
        MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi));
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        CUDA_CHECK(cudaEventCreateWithFlags(&before_, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&after_, cudaEventDisableTiming));
        NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
    }
    ~NcclCommunicator() override {
        if (comm_) ncclCommDestroy(comm_);
        cudaEventDestroy(after_);
        cudaEventDestroy(before_);
        cudaStreamDestroy(stream_);
    }
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    bool device_buffers() const override { return true; }

    void allreduce_sum(float* buf, size_t n) override {
        enter();
        NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, comm_, stream_));
        leave();
    }
    void broadcast(float* buf, size_t n, int root) override {
        enter();
        NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclFloat, root, comm_, stream_));
        leave();
    }
    void gather(const float* send, size_t n, float* recv, int root) override {
        enter();
        NCCL_CHECK(ncclGroupStart());
        if (rank_ == root) {
            for (int r = 0; r < size_; ++r) {
                if (r == root)
                    CUDA_CHECK(cudaMemcpyAsync(recv + r * n, send, n * sizeof(float),
                                               cudaMemcpyDeviceToDevice, stream_));
                else
                    NCCL_CHECK(ncclRecv(recv + r * n, n, ncclFloat, r, comm_, stream_));
            }
        } else {
            NCCL_CHECK(ncclSend(send, n, ncclFloat, root, comm_, stream_));
        }
        NCCL_CHECK(ncclGroupEnd());
        leave();
    }
    void allgather(const float* send, size_t n, float* recv) override {
        enter();
        NCCL_CHECK(ncclAllGather(send, recv, n, ncclFloat, comm_, stream_));
        leave();
    }
    void group_start() override {
        enter();
        NCCL_CHECK(ncclGroupStart());
        ++depth_;
    }
    void group_end() override {
        --depth_;
        NCCL_CHECK(ncclGroupEnd());
        leave();
    }

    void synchronize() override {
        const auto start = std::chrono::steady_clock::now();
        for (;;) {
            const cudaError_t q = cudaStreamQuery(stream_);
            if (q == cudaSuccess) return;
            if (q != cudaErrorNotReady) CUDA_CHECK(q);
            ncclResult_t async = ncclSuccess;
            NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
            if (async != ncclSuccess && async != ncclInProgress) {
                ncclCommAbort(comm_);
                comm_ = nullptr;
                LOFTQ_THROW(BackendError, "NCCL asynchronous error: ", ncclGetErrorString(async),
                            " [", process_tag(), ", ", cuda_device_tag(), "]");
            }
            const double waited =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (waited > timeout_s_) {
                ncclCommAbort(comm_);
                comm_ = nullptr;
                LOFTQ_THROW(BackendError, "NCCL collective did not complete within ", timeout_s_,
                            " s; communicator aborted [", process_tag(), ", ", cuda_device_tag(), "]");
            }
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }

private:
    // Order the NCCL stream after the compute stream (outside a group only).
    void enter() {
        LOFTQ_CHECK(comm_ != nullptr, "NCCL communicator used after abort");
        if (depth_ > 0) return;
        CUDA_CHECK(cudaEventRecord(before_, compute_));
        CUDA_CHECK(cudaStreamWaitEvent(stream_, before_, 0));
    }
    void leave() {
        if (depth_ > 0) return;
        CUDA_CHECK(cudaEventRecord(after_, stream_));
        CUDA_CHECK(cudaStreamWaitEvent(compute_, after_, 0));
    }

    cudaStream_t compute_;
    cudaStream_t stream_ = nullptr;
    cudaEvent_t before_ = nullptr, after_ = nullptr;
    ncclComm_t comm_ = nullptr;
    int rank_ = 0, size_ = 1;
    int depth_ = 0;
    double timeout_s_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, void* stream, double timeout_s) {
    return std::make_unique<NcclCommunicator>(comm, static_cast<cudaStream_t>(stream), timeout_s);
}

}  // namespace loftq
