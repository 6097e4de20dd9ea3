// LOFTQ_HD marks functions compiled for both the host (g++) and the device (nvcc), so that a
// table or a generator is declared once for both (STYLE.md 5).
#pragma once

#if defined(__CUDACC__)
#define LOFTQ_HD __host__ __device__ __forceinline__
#else
#define LOFTQ_HD inline
#endif
