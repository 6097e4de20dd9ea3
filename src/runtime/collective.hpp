// Steps that one rank performs for all (rank 0 reads the checkpoint and builds the plan), with
// failures that end every rank the same way: the error is broadcast and re-raised on every rank
// with its type and message, marked collective, so that main prints it once and no rank is left
// waiting in a collective (STYLE.md 9, 18).
#pragma once

#include <mpi.h>

#include <functional>
#include <string>

namespace loftq {

// Runs fn on `root` only and broadcasts its result to every rank of comm. If fn throws, every
// rank throws the same error type with the same message (collective). Collective over comm.
std::string root_computes(MPI_Comm comm, int root, const std::function<std::string()>& fn);

// Runs fn on every rank; if it threw on any rank, every rank throws (collective) the error of the
// lowest failing rank. Collective over comm.
void all_or_none(MPI_Comm comm, const std::function<void()>& fn);

// Runs fn, the part of a job where ranks work independently and meet in collectives (group SVDs,
// the run file's collective close). An error there is printed as one line and ends the whole job
// with MPI_Abort at once: unwinding first would run destructors that enter collectives (closing a
// parallel HDF5 file) while the other ranks are busy elsewhere, and the job would hang.
void abort_on_error(const std::function<void()>& fn);

}  // namespace loftq
