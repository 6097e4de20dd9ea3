// CUDA backend: cuBLAS GEMMs, cuSOLVER QR (geqrf + orgqr) and SVD, kernels/lowrank.cu for the
// sketch and element-wise helpers, linalg/cuda_quant.cu for quantization. Everything is enqueued on one stream owned by the backend.
//
// Row-major A (m x n) is column-major A^T: a row-major GEMM is the column-major GEMM of the
// transposes with the operands swapped; qr_rows is a direct geqrf/orgqr of A^T; qr_columns and
// the exact SVD transpose with geam where cuSOLVER needs the other orientation.
//
// TF32: LOFTQ_TF32=1 in the environment runs the cuBLAS GEMMs on the TF32 tensor cores (for the
// precision measurement of issue #7; the name() then ends in "+tf32"). Default: full float32.
//
// SVD driver: gesvd (Householder bidiagonalisation + implicit QR, LAPACK-grade accuracy). gesvdj
// (Jacobi) stops at a tolerance and loses accuracy on large matrices, gesvda only targets tall
// skinny matrices with approximate small values; the exact path is the reference, so it gets the
// accurate driver, and the randomized path's small k x n SVD costs nothing with it either.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/cuda_check.hpp"
#include "kernels/lowrank.cuh"
#include "linalg/backend.hpp"
#include "linalg/cuda_quant.hpp"

namespace loftq {

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

namespace {

int ci(int64_t v) {
    LOFTQ_CHECK(v >= 0 && v <= 0x7fffffff, "dimension ", v, " exceeds the 32-bit cuBLAS range");
    return static_cast<int>(v);
}

cublasOperation_t op(Trans t) { return t == Trans::yes ? CUBLAS_OP_T : CUBLAS_OP_N; }

constexpr int kNormBlocks = 1024;

class CudaBackend final : public LinalgBackend {
public:
    explicit CudaBackend(int device) : device_(device) {
        CUDA_CHECK(cudaSetDevice(device));
        CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        CUBLAS_CHECK(cublasCreate(&blas_));
        CUBLAS_CHECK(cublasSetStream(blas_, stream_));
        // Bitwise reproducibility: no atomics-based reductions inside cuBLAS.
        CUBLAS_CHECK(cublasSetAtomicsMode(blas_, CUBLAS_ATOMICS_NOT_ALLOWED));
        const char* tf32 = std::getenv("LOFTQ_TF32");
        tf32_ = tf32 != nullptr && std::strcmp(tf32, "1") == 0;
        if (tf32_) CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_TF32_TENSOR_OP_MATH));
        CUSOLVER_CHECK(cusolverDnCreate(&solver_));
        CUSOLVER_CHECK(cusolverDnSetStream(solver_, stream_));
        CUDA_CHECK(cudaMalloc(&info_, sizeof(int)));
        CUDA_CHECK(cudaMalloc(&partials_, kNormBlocks * sizeof(double)));
    }
    ~CudaBackend() override {
        cudaStreamSynchronize(stream_);
        cudaFree(scale_);
        cudaFree(partials_);
        cudaFree(info_);
        cusolverDnDestroy(solver_);
        cublasDestroy(blas_);
        cudaStreamDestroy(stream_);
    }
    BackendKind kind() const override { return BackendKind::cuda; }
    std::string name() const override { return cat("cuda:", device_, tf32_ ? "+tf32" : ""); }
    void* stream() const { return stream_; }

    float* allocate(size_t count) override {
        if (count == 0) return nullptr;
        float* p = nullptr;
        CUDA_CHECK(cudaMalloc(&p, count * sizeof(float)));
        return p;
    }
    void release(float* p) noexcept override { if (p) cudaFree(p); }
    void upload(float* dst, const float* src, size_t n) override {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    void download(float* dst, const float* src, size_t n) override {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    void copy(float* dst, const float* src, size_t n) override {
        if (n && dst != src)
            CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    }
    void copy_matrix(int64_t m, int64_t n, const float* src, int64_t lds, float* dst,
                     int64_t ldd) override {
        if (m == 0 || n == 0) return;
        CUDA_CHECK(cudaMemcpy2DAsync(dst, ldd * sizeof(float), src, lds * sizeof(float),
                                     n * sizeof(float), m, cudaMemcpyDeviceToDevice, stream_));
    }

    void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc) override {
        if (m == 0 || n == 0) return;
        CUBLAS_CHECK(cublasSgemm(blas_, op(tb), op(ta), ci(n), ci(m), ci(k), &alpha, b, ci(ldb), a,
                                 ci(lda), &beta, c, ci(ldc)));
    }
    void axpy(size_t n, float alpha, const float* x, float* y) override {
        CUDA_CHECK(kernels::axpy(n, alpha, x, y, stream_));
    }
    double norm2(size_t n, const float* x) override {
        CUDA_CHECK(kernels::sum_squares(n, x, partials_, kNormBlocks, stream_));
        std::vector<double> h(kNormBlocks);
        CUDA_CHECK(cudaMemcpyAsync(h.data(), partials_, h.size() * sizeof(double),
                                   cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        double s = 0;
        for (double v : h) s += v;
        return std::sqrt(s);
    }

    // Layout of the qr_columns work: [col-major copy m x k][tau k][cuSOLVER lwork].
    size_t qr_columns_work(int64_t m, int64_t k) override {
        return static_cast<size_t>(m * k + k) + geqrf_orgqr_lwork(m, k);
    }
    void qr_columns(int64_t m, int64_t k, float* a, float* r, float* work) override {
        LOFTQ_CHECK(m >= k, "qr_columns needs m >= k, got ", m, " x ", k);
        float* t = work;
        float* tau = work + m * k;
        float* w = tau + k;
        const int lw = static_cast<int>(geqrf_orgqr_lwork(m, k));
        transpose(k, m, a, t);  // row-major (col-major k x m) -> col-major m x k
        CUSOLVER_CHECK(cusolverDnSgeqrf(solver_, ci(m), ci(k), t, ci(m), tau, w, lw, info_));
        check_info("cusolverDnSgeqrf");
        if (r) {
            transpose(k, k, t, r, m, k);  // top k x k of col-major t (ld m) -> row-major r
            CUDA_CHECK(kernels::keep_upper(k, r, stream_));
        }
        CUSOLVER_CHECK(cusolverDnSorgqr(solver_, ci(m), ci(k), ci(k), t, ci(m), tau, w, lw, info_));
        check_info("cusolverDnSorgqr");
        transpose(m, k, t, a);  // col-major m x k -> row-major m x k
    }
    size_t qr_rows_work(int64_t k, int64_t n) override {
        return static_cast<size_t>(k) + geqrf_orgqr_lwork(n, k);
    }
    void qr_rows(int64_t k, int64_t n, float* a, float* r, float* work) override {
        LOFTQ_CHECK(k <= n, "qr_rows needs k <= n, got ", k, " x ", n);
        float* tau = work;
        float* w = work + k;
        const int lw = static_cast<int>(geqrf_orgqr_lwork(n, k));
        CUSOLVER_CHECK(cusolverDnSgeqrf(solver_, ci(n), ci(k), a, ci(n), tau, w, lw, info_));
        check_info("cusolverDnSgeqrf");
        if (r) {
            transpose(k, k, a, r, n, k);  // top k x k of col-major a (ld n) -> row-major r
            CUDA_CHECK(kernels::keep_upper(k, r, stream_));
        }
        CUSOLVER_CHECK(cusolverDnSorgqr(solver_, ci(n), ci(k), ci(k), a, ci(n), tau, w, lw, info_));
        check_info("cusolverDnSorgqr");
    }

    // cuSOLVER gesvd needs rows >= cols (column-major). Row-major m x n with n >= m is
    // column-major n x m: direct. Otherwise: [col-major copy m x n][U m x p][VT p x n] first.
    size_t svd_work(int64_t m, int64_t n) override {
        const int64_t p = std::min(m, n);
        int lw = 0;
        if (n >= m) {
            CUSOLVER_CHECK(cusolverDnSgesvd_bufferSize(solver_, ci(n), ci(m), &lw));
            return static_cast<size_t>(p + lw);
        }
        CUSOLVER_CHECK(cusolverDnSgesvd_bufferSize(solver_, ci(m), ci(n), &lw));
        return static_cast<size_t>(m * n + m * p + p * n + p + lw);
    }
    void svd(int64_t m, int64_t n, float* a, float* u, float* s, float* vt, float* work) override {
        const int64_t p = std::min(m, n);
        int lw = 0;
        if (n >= m) {
            CUSOLVER_CHECK(cusolverDnSgesvd_bufferSize(solver_, ci(n), ci(m), &lw));
            float* rwork = work;
            float* w = work + p;
            // A^T (n x m) = V S U^T: cuSOLVER's U (n x p, ld n) is our Vt, its VT (p x m) our U.
            CUSOLVER_CHECK(cusolverDnSgesvd(solver_, 'S', 'S', ci(n), ci(m), a, ci(n), s, vt, ci(n),
                                            u, ci(p), w, lw, rwork, info_));
            check_info("cusolverDnSgesvd");
            return;
        }
        CUSOLVER_CHECK(cusolverDnSgesvd_bufferSize(solver_, ci(m), ci(n), &lw));
        float* t = work;
        float* uc = t + m * n;
        float* vc = uc + m * p;
        float* rwork = vc + p * n;
        float* w = rwork + p;
        transpose(n, m, a, t);  // row-major m x n -> col-major m x n
        CUSOLVER_CHECK(cusolverDnSgesvd(solver_, 'S', 'S', ci(m), ci(n), t, ci(m), s, uc, ci(m), vc,
                                        ci(p), w, lw, rwork, info_));
        check_info("cusolverDnSgesvd");
        transpose(m, p, uc, u);  // col-major m x p -> row-major m x p
        transpose(p, n, vc, vt);  // col-major p x n -> row-major p x n
    }

    void fill_gaussian(uint64_t seed, uint64_t name_hash, uint64_t offset, size_t n,
                       float* out) override {
        CUDA_CHECK(kernels::fill_gaussian(seed, name_hash, offset, n, out, stream_));
    }
    void column_absmax(int64_t m, int64_t k, const float* a, int64_t lda, float* out) override {
        CUDA_CHECK(kernels::column_absmax(m, k, a, lda, out, stream_));
    }
    void scale_columns(int64_t m, int64_t k, float* a, int64_t lda, const float* sc) override {
        CUDA_CHECK(kernels::scale(m, k, a, lda, upload_scale(sc, k), true, stream_));
    }
    void scale_rows(int64_t m, int64_t n, float* a, int64_t lda, const float* sc) override {
        CUDA_CHECK(kernels::scale(m, n, a, lda, upload_scale(sc, m), false, stream_));
    }
    void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

    std::unique_ptr<QuantSlots> make_quant_slots(const QuantParams& p, Backbone backbone, size_t n,
                                                 float* scratch, const std::string& tensor_name) override {
        return make_cuda_quant_slots(*this, p, backbone, n, scratch, tensor_name);
    }
    const float* adopt_host(const float* host, size_t n, DeviceBuffer& storage) override {
        storage = DeviceBuffer(*this, n);
        upload(storage.get(), host, n);
        return storage.get();
    }

private:
    size_t geqrf_orgqr_lwork(int64_t m, int64_t k) {
        int l1 = 0, l2 = 0;
        CUSOLVER_CHECK(cusolverDnSgeqrf_bufferSize(solver_, ci(m), ci(k), nullptr, ci(m), &l1));
        CUSOLVER_CHECK(cusolverDnSorgqr_bufferSize(solver_, ci(m), ci(k), ci(k), nullptr, ci(m),
                                                   nullptr, &l2));
        return static_cast<size_t>(std::max(l1, l2));
    }
    // dst (column-major cols x rows, ld ldd) = transpose of src (column-major rows x cols, ld lds).
    void transpose(int64_t rows, int64_t cols, const float* src, float* dst, int64_t lds = -1,
                   int64_t ldd = -1) {
        const float one = 1.0f, zero = 0.0f;
        if (lds < 0) lds = rows;
        if (ldd < 0) ldd = cols;
        CUBLAS_CHECK(cublasSgeam(blas_, CUBLAS_OP_T, CUBLAS_OP_N, ci(cols), ci(rows), &one, src,
                                 ci(lds), &zero, dst, ci(ldd), dst, ci(ldd)));
    }
    void check_info(const char* what) {
        int h = 0;
        CUDA_CHECK(cudaMemcpyAsync(&h, info_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        CUSOLVER_INFO_CHECK(what, h);
    }
    // Grows once to the largest rank seen; not per call.
    const float* upload_scale(const float* host, int64_t n) {
        if (n > scale_cap_) {
            CUDA_CHECK(cudaStreamSynchronize(stream_));
            cudaFree(scale_);
            CUDA_CHECK(cudaMalloc(&scale_, n * sizeof(float)));
            scale_cap_ = n;
        }
        CUDA_CHECK(cudaMemcpyAsync(scale_, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));  // `host` may be a temporary
        return scale_;
    }

    int device_;
    bool tf32_ = false;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    cusolverDnHandle_t solver_ = nullptr;
    int* info_ = nullptr;
    double* partials_ = nullptr;
    float* scale_ = nullptr;
    int64_t scale_cap_ = 0;
};

}  // namespace

std::unique_ptr<LinalgBackend> make_cuda_backend(int device) {
    const int count = cuda_device_count();
    if (device < 0 || device >= count)
        LOFTQ_THROW(BackendError, "CUDA device ", device, " requested, ", count,
                    " visible [", process_tag(), "]");
    return std::make_unique<CudaBackend>(device);
}

void* cuda_backend_stream(LinalgBackend& be) {
    auto* c = dynamic_cast<CudaBackend*>(&be);
    LOFTQ_CHECK(c != nullptr, "backend ", be.name(), " is not a CUDA backend");
    return c->stream();
}

}  // namespace loftq
