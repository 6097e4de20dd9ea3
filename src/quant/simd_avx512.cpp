// The quantize kernels for the avx512 level (simd_kernels.inc; flags in src/CMakeLists.txt).
#define LOFTQ_SIMD_NS simd_avx512
#define LOFTQ_SIMD_LEVEL "avx512"
#include "quant/simd_kernels.inc"
