// The quantize kernels for the scalar level (simd_kernels.inc; flags in src/CMakeLists.txt).
#define LOFTQ_SIMD_NS simd_scalar
#define LOFTQ_SIMD_LEVEL "scalar"
#include "quant/simd_kernels.inc"
