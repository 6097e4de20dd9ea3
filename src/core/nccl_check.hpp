// NCCL check macro (separate so that code without NCCL does not need nccl.h).
#pragma once

#include <nccl.h>

#include "core/cuda_check.hpp"

#define NCCL_CHECK(call)                                                                    \
    do {                                                                                    \
        const ncclResult_t loftq_r_ = (call);                                               \
        if (loftq_r_ != ncclSuccess && loftq_r_ != ncclInProgress)                          \
            LOFTQ_GPU_FAIL(call, ncclGetErrorString(loftq_r_));                             \
    } while (0)
