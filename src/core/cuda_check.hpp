// Check macros for the CUDA libraries. Included only by CUDA translation units and by host
// code compiled with LOFTQ_HAVE_CUDA. Each names the call, file:line, rank@host and device.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "core/error.hpp"

namespace loftq {
inline std::string cuda_device_tag() {
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) return "device ?";
    return cat("device ", dev);
}
}  // namespace loftq

#define LOFTQ_GPU_FAIL(call, detail)                                                        \
    throw ::loftq::BackendError(::loftq::call_failure(                                      \
        #call, ::loftq::cat(detail, ", ", ::loftq::cuda_device_tag()), __FILE__, __LINE__))

#define CUDA_CHECK(call)                                                                    \
    do {                                                                                    \
        const cudaError_t loftq_e_ = (call);                                                \
        if (loftq_e_ != cudaSuccess) LOFTQ_GPU_FAIL(call, cudaGetErrorString(loftq_e_));    \
    } while (0)

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        const cublasStatus_t loftq_s_ = (call);                                             \
        if (loftq_s_ != CUBLAS_STATUS_SUCCESS)                                              \
            LOFTQ_GPU_FAIL(call, cublasGetStatusString(loftq_s_));                          \
    } while (0)

#define CUSOLVER_CHECK(call)                                                                \
    do {                                                                                    \
        const cusolverStatus_t loftq_s_ = (call);                                           \
        if (loftq_s_ != CUSOLVER_STATUS_SUCCESS)                                            \
            LOFTQ_GPU_FAIL(call, ::loftq::cat("cusolver status ", static_cast<int>(loftq_s_))); \
    } while (0)

// cuSOLVER reports convergence through a device-side info; pass its host copy here.
// `what` is a string naming the cuSOLVER call whose devInfo `info` is.
#define CUSOLVER_INFO_CHECK(what, info)                                                     \
    do {                                                                                    \
        if ((info) != 0)                                                                    \
            throw ::loftq::BackendError(::loftq::call_failure(                              \
                what, ::loftq::cat("devInfo ", (info), ", ", ::loftq::cuda_device_tag()),   \
                __FILE__, __LINE__));                                                       \
    } while (0)
