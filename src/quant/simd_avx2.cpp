// The quantize kernels for the avx2 level (simd_kernels.inc; flags in src/CMakeLists.txt).
#define LOFTQ_SIMD_NS simd_avx2
#define LOFTQ_SIMD_LEVEL "avx2"
#include "quant/simd_kernels.inc"
