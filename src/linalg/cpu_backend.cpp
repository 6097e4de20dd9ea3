// CPU backend: OpenBLAS for the GEMMs, LAPACK (through LAPACKE's *_work entry points, which do
// not allocate in column-major mode) for QR and SVD.
//
// Row-major A (m x n) is the column-major A^T (n x m), so LAPACK is called on the transpose:
//  - QR of the tall row-major A is the LQ factorisation of column-major A^T (gelqf + orglq),
//    and L read back row-major is R;
//  - SVD of row-major A is gesdd of column-major A^T = V S U^T, whose "U" is our Vt and whose
//    "VT" is our U, both already in row-major layout.
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/buffer_cache.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/philox.hpp"
#include "linalg/backend.hpp"
#include "linalg/host_quant.hpp"

namespace loftq {
namespace {

lapack_int li(int64_t v) {
    LOFTQ_CHECK(v >= 0 && v <= 0x7fffffff, "dimension ", v, " exceeds the 32-bit LAPACK range");
    return static_cast<lapack_int>(v);
}

size_t query_size(float q) { return static_cast<size_t>(std::ceil(q)) + 1; }


// dst (cols x rows, row-major) = src (rows x cols, row-major) transposed, in 32 x 32 tiles.
void transpose(int64_t rows, int64_t cols, const float* src, float* dst) {
    constexpr int64_t kTile = 32;
    for (int64_t i0 = 0; i0 < rows; i0 += kTile)
        for (int64_t j0 = 0; j0 < cols; j0 += kTile)
            for (int64_t i = i0; i < std::min(rows, i0 + kTile); ++i)
                for (int64_t j = j0; j < std::min(cols, j0 + kTile); ++j) dst[j * rows + i] = src[i * cols + j];
}

// r (k x k, row-major) = the upper triangle of the top k x k block of the column-major geqrf
// output t (ld m), zeros below: the R factor.
void upper_rows(int64_t k, const float* t, int64_t m, float* r) {
    for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) r[i * k + j] = j >= i ? t[j * m + i] : 0.0f;
}

class CpuBackend final : public LinalgBackend {
public:
    BackendKind kind() const override { return BackendKind::cpu; }
    std::string name() const override { return "cpu"; }

    // Through the buffer cache: the next matrix reuses these pages (core/buffer_cache.hpp).
    float* allocate(size_t count) override { return static_cast<float*>(cache_acquire(count * sizeof(float))); }
    void release(float* p) noexcept override { cache_release(p); }
    void upload(float* dst, const float* src, size_t n) override { copy(dst, src, n); }
    void download(float* dst, const float* src, size_t n) override { copy(dst, src, n); }
    void copy(float* dst, const float* src, size_t n) override {
        if (n && dst != src) std::memmove(dst, src, n * sizeof(float));
    }
    void copy_matrix(int64_t m, int64_t n, const float* src, int64_t lds, float* dst,
                     int64_t ldd) override {
        for (int64_t i = 0; i < m; ++i) std::memmove(dst + i * ldd, src + i * lds, n * sizeof(float));
    }

    void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc) override {
        if (m == 0 || n == 0) return;
        cblas_sgemm(CblasRowMajor, ta == Trans::yes ? CblasTrans : CblasNoTrans,
                    tb == Trans::yes ? CblasTrans : CblasNoTrans, li(m), li(n), li(k), alpha, a,
                    li(lda), b, li(ldb), beta, c, li(ldc));
    }
    void axpy(size_t n, float alpha, const float* x, float* y) override {
        const auto len = static_cast<int64_t>(n);
#pragma omp parallel for schedule(static) if (len >= kParallelMinElements)
        for (int64_t i = 0; i < len; ++i) y[i] += alpha * x[i];
    }
    // In double, in an order fixed by n (core/parallel.hpp ordered_sum): the same bits for any
    // thread count.
    double norm2(size_t n, const float* x) override {
        return std::sqrt(ordered_sum(static_cast<int64_t>(n), [x](int64_t i) {
            const double v = x[i];
            return v * v;
        }));
    }

    // The tall row-major A (m x k) is copied into column-major order and factored there by
    // geqrf + orgqr, then copied back: LAPACK's blocked QR of a tall column-major matrix runs on
    // contiguous columns, where the LQ of the row-major view (gelqf + orglq on k x m, lda k)
    // updated strided rows one Householder vector at a time (a third of the SVD phase went to
    // OpenBLAS's saxpy). Workspace: the column-major copy (m k), tau (k), LAPACK's own.
    size_t qr_columns_work(int64_t m, int64_t k) override {
        float q1 = 0, q2 = 0;
        LAPACK_CHECK(LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, li(m), li(k), nullptr, li(m), nullptr, &q1, -1));
        LAPACK_CHECK(LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, li(m), li(k), li(k), nullptr, li(m), nullptr, &q2, -1));
        return static_cast<size_t>(m * k + k) + query_size(std::max(q1, q2));
    }
    void qr_columns(int64_t m, int64_t k, float* a, float* r, float* work) override {
        LOFTQ_CHECK(m >= k, "qr_columns needs m >= k, got ", m, " x ", k);
        float* t = work;  // column-major m x k
        float* tau = work + m * k;
        float* w = tau + k;
        const lapack_int lw = li(static_cast<int64_t>(qr_columns_work(m, k)) - m * k - k);
        transpose(m, k, a, t);
        LAPACK_CHECK(LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, li(m), li(k), t, li(m), tau, w, lw));
        if (r) upper_rows(k, t, m, r);
        LAPACK_CHECK(LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, li(m), li(k), li(k), t, li(m), tau, w, lw));
        transpose(k, m, t, a);
    }
    size_t qr_rows_work(int64_t k, int64_t n) override {
        float q1 = 0, q2 = 0;
        LAPACK_CHECK(LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, li(n), li(k), nullptr, li(n), nullptr, &q1, -1));
        LAPACK_CHECK(LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, li(n), li(k), li(k), nullptr, li(n), nullptr, &q2, -1));
        return static_cast<size_t>(k) + query_size(std::max(q1, q2));
    }
    void qr_rows(int64_t k, int64_t n, float* a, float* r, float* work) override {
        LOFTQ_CHECK(k <= n, "qr_rows needs k <= n, got ", k, " x ", n);
        float* tau = work;
        float* w = work + k;
        const lapack_int lw = li(static_cast<int64_t>(qr_rows_work(k, n) - k));
        LAPACK_CHECK(LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, li(n), li(k), a, li(n), tau, w, lw));
        if (r) upper_rows(k, a, n, r);
        LAPACK_CHECK(LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, li(n), li(k), li(k), a, li(n), tau, w, lw));
    }

    size_t svd_work(int64_t m, int64_t n) override {
        const int64_t p = std::min(m, n);
        float q = 0;
        LAPACK_CHECK(LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', li(n), li(m), nullptr, li(n), nullptr,
                                         nullptr, li(n), nullptr, li(std::max<int64_t>(p, 1)), &q, -1, nullptr));
        return query_size(q) + 8 * static_cast<size_t>(p);  // + iwork (8 p ints, 4 bytes each)
    }
    void svd(int64_t m, int64_t n, float* a, float* u, float* s, float* vt, float* work) override {
        const int64_t p = std::min(m, n);
        const size_t total = svd_work(m, n);
        const size_t lw = total - 8 * static_cast<size_t>(p);
        static_assert(sizeof(lapack_int) == sizeof(float), "iwork shares the float workspace");
        auto* iwork = reinterpret_cast<lapack_int*>(work + lw);
        LAPACK_CHECK(LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', li(n), li(m), a, li(n), s, vt, li(n),
                                         u, li(std::max<int64_t>(p, 1)), work, li(static_cast<int64_t>(lw)), iwork));
    }

    // Through the Gram matrix in double: G = A A^T (dsyrk), G = V diag(l) V^T (dsyevd), s = sqrt(l)
    // descending, U = V in that order, Vt = diag(1/s) U^T A (dgemm), rounded to float32 once. A
    // singular value s_i carries a relative error of about 1e-16 (s_1 / s_i)^2 there, below
    // float32's rounding while s_min >= 1e-4 s_max; below that (or a zero or non-finite value)
    // it takes the accurate driver. At 192 x 2048 it took 25 ms with gesdd here (a LAPACK of
    // BLAS-2 steps), at 64 x 2048 4 ms.
    void svd_wide(int64_t m, int64_t n, float* a, float* u, float* s, float* vt, float* work) override {
        if (m > n || m == 0) return svd(m, n, a, u, s, vt, work);
        const size_t mn = static_cast<size_t>(m * n), mm = static_cast<size_t>(m * m);
        std::vector<double> ad(mn), g(mm), l(static_cast<size_t>(m)), ud(mm), vd(mn);
        for (size_t i = 0; i < mn; ++i) ad[i] = a[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, li(m), li(n), 1.0, ad.data(), li(n), 0.0, g.data(),
                    li(m));
        if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', li(m), g.data(), li(m), l.data()) != 0 ||
            !std::isfinite(l[static_cast<size_t>(m - 1)]) || !(l[0] >= 1e-8 * l[static_cast<size_t>(m - 1)]) ||
            !(l[0] > 0))
            return svd(m, n, a, u, s, vt, work);
        for (int64_t j = 0; j < m; ++j) {  // eigenvalues ascend: singular value j is eigenpair m - 1 - j
            const int64_t e = m - 1 - j;
            s[j] = static_cast<float>(std::sqrt(l[static_cast<size_t>(e)]));
            for (int64_t i = 0; i < m; ++i) ud[static_cast<size_t>(i * m + j)] = g[static_cast<size_t>(i * m + e)];
        }
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, li(m), li(n), li(m), 1.0, ud.data(), li(m), ad.data(),
                    li(n), 0.0, vd.data(), li(n));
        for (int64_t j = 0; j < m; ++j) {
            const double inv = 1.0 / std::sqrt(l[static_cast<size_t>(m - 1 - j)]);
            for (int64_t c = 0; c < n; ++c)
                vt[j * n + c] = static_cast<float>(vd[static_cast<size_t>(j * n + c)] * inv);
        }
        for (size_t i = 0; i < mm; ++i) u[i] = static_cast<float>(ud[i]);
    }

    void fill_gaussian(uint64_t seed, uint64_t name_hash, uint64_t offset, size_t n,
                       float* out) override {
        const philox::Key key = philox::make_key(seed, name_hash);
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(n) >= kParallelMinElements)
        for (int64_t i = 0; i < static_cast<int64_t>(n); ++i)
            out[i] = philox::gaussian(key, offset + static_cast<uint64_t>(i));
    }
    void column_absmax(int64_t m, int64_t k, const float* a, int64_t lda, float* out) override {
        for (int64_t j = 0; j < k; ++j) {
            float best = 0.0f;
            for (int64_t i = 0; i < m; ++i)
                if (std::fabs(a[i * lda + j]) > std::fabs(best)) best = a[i * lda + j];
            out[j] = best;
        }
    }
    void scale_columns(int64_t m, int64_t k, float* a, int64_t lda, const float* sc) override {
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < k; ++j) a[i * lda + j] *= sc[j];
    }
    void scale_rows(int64_t m, int64_t n, float* a, int64_t lda, const float* sc) override {
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) a[i * lda + j] *= sc[i];
    }
    void synchronize() override {}

    std::unique_ptr<QuantSlots> make_quant_slots(const QuantParams& p, Backbone backbone, size_t n,
                                                 float* scratch, const std::string& tensor_name) override {
        return make_host_quant_slots(*this, p, backbone, n, scratch, tensor_name, HostStaging::in_place);
    }
    const float* adopt_host(const float* host, size_t, DeviceBuffer&) override { return host; }
};

}  // namespace

std::unique_ptr<LinalgBackend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

#ifndef LOFTQ_HAVE_CUDA
std::unique_ptr<LinalgBackend> make_cuda_backend(int) {
    LOFTQ_THROW(NotImplemented, "the CUDA device: this loftq was built without CUDA");
}
int cuda_device_count() { return 0; }
void* cuda_backend_stream(LinalgBackend& be) {
    LOFTQ_THROW(NotImplemented, "backend ", be.name(), ": this loftq was built without CUDA");
}
#endif

std::unique_ptr<LinalgBackend> make_backend(const std::string& name, int device) {
    if (name == "cpu") return make_cpu_backend();
    if (name == "cuda") return make_cuda_backend(device);
    if (name == "auto") return cuda_device_present() ? make_cuda_backend(device) : make_cpu_backend();
    LOFTQ_THROW_SETTING("device", "unknown device '", name, "' (expected auto, cpu or cuda)");
}

}  // namespace loftq
