// Collective communication in one place (STYLE.md 3): an MPI implementation on host buffers and
// an NCCL one on device buffers (one GPU per rank). Every call is collective over the group.
//
// Reductions whose bits must not depend on the rank count (the project invariant) do NOT use
// allreduce_sum, whose summation order is the library's: they gather per-shard partials with
// broadcast()/allgather() and sum them in a fixed order (lowrank/distributed_svd.hpp).
#pragma once

#include <cstddef>
#include <memory>

#include <mpi.h>

namespace loftq {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // True when buffers are device pointers (NCCL), false for host pointers (MPI).
    virtual bool device_buffers() const = 0;

    virtual void allreduce_sum(float* buf, size_t count) = 0;          // in place
    virtual void broadcast(float* buf, size_t count, int root) = 0;     // in place
    // recv (size() * count) gets every rank's `send` in rank order: on `root` only (gather) or on
    // every rank (allgather).
    virtual void gather(const float* send, size_t count, float* recv, int root) = 0;
    virtual void allgather(const float* send, size_t count, float* recv) = 0;
    // Calls between group_start and group_end may be fused (NCCL groups); no-ops for MPI.
    virtual void group_start() {}
    virtual void group_end() {}
    // Block until every collective issued so far completed. Throws BackendError (and aborts the
    // communicator) after `timeout_s` without progress, so no rank hangs.
    virtual void synchronize() = 0;
};

// MPI on host buffers over `comm` (duplicated; the caller keeps ownership of `comm`).
std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm);

// NCCL over the ranks of `comm`, each on its current CUDA device; the NCCL unique id is broadcast
// over `comm`. `stream` is the compute stream (cudaStream_t, nullptr = legacy default): the
// collectives run on their own stream, ordered after the work already queued on `stream`, and
// `stream` waits for them. Throws NotImplemented in a build without CUDA.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, void* stream,
                                                     double timeout_s = 600.0);

}  // namespace loftq
