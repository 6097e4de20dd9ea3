// The dense linear-algebra backend the low-rank engine runs on (STYLE.md 2): one interface, a CPU
// implementation (OpenBLAS + LAPACK) and a CUDA one (cuBLAS + cuSOLVER), chosen once. Nothing
// falls back from one to the other: a backend that cannot do something throws NotImplemented.
//
// The backend also owns quantization (QuantSlots): the LoftQ loop quantizes, forms residuals and
// keeps its best iterate through this interface alone, so it has one path for every backend.
//
// Conventions: every matrix is float32 ROW-MAJOR with an explicit leading dimension (the row
// stride, >= cols). Every pointer lives in the backend's memory (host memory for the CPU backend,
// device memory for CUDA) unless its name says `host`. Calls are ordered on the backend's stream;
// functions returning values to the host synchronise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "quant/quantize.hpp"

namespace loftq {

enum class BackendKind { cpu, cuda };
enum class Trans { no, yes };

class DeviceBuffer;
class LinalgBackend;

// Quantize-as-loaded slots of one matrix shard of n elements, in the backend's memory: the
// CURRENT slot, which quantize_current overwrites, and the BEST slot, which keep_current swaps in
// (the LoftQ loop's "keep the best iterate" without a copy). Codes, absmax and the float32 Q as
// loaded are those of quantize_as_loaded (quant/quantize.hpp), bit for bit, on every backend.
// A pointer returned by current_loaded / best_loaded is valid until the next call on the slots:
// a backend may keep only the codes of an iterate and rebuild its Q on demand (the CPU does, so
// that its memory stays at the loop's three matrices).
class QuantSlots {
public:
    virtual ~QuantSlots() = default;
    // The current slot = quantize_as_loaded(x); x: n floats in backend memory. Throws what
    // quantize_as_loaded throws (ConfigError, InputError naming the tensor).
    virtual void quantize_current(const float* x) = 0;
    // The current slot's Q as loaded (n floats, backend memory).
    virtual const float* current_loaded() = 0;
    // One LoftQ step: the current slot = quantize_as_loaded(w - low) (low == nullptr: w), and
    // res = w - that Q as loaded; all n floats in backend memory. `low` may be the slots'
    // scratch buffer (it is read before the scratch is written) or res itself (the loop forms
    // L Rt in res); res never aliases w. The
    // default is quantize_current on res = w - low, then res = w - current_loaded(), with the
    // backend's copy and axpy (quantize_residual_steps below); a backend may fuse it into one
    // pass (the CPU does: quantize_residual_as_loaded) as long as the bits are the same.
    virtual void quantize_residual(LinalgBackend& be, const float* w, const float* low, float* res) = 0;
    // The current iterate becomes the best one; the old best becomes the slot written next.
    virtual void keep_current() = 0;
    // The best slot's Q as loaded (n floats, backend memory).
    virtual const float* best_loaded() = 0;
    // QLoRA's squared error for weights x: sum_i (x_i - q(x)_i)^2 with q the plain quantization
    // (no backbone rounding: what QLoRA loads from the original weights). Overwrites the current
    // slot. InputError when x is not finite. A sum, not a residual buffer, so that each backend
    // keeps the accumulation it always had (the CPU sums the exact differences in double).
    virtual double plain_error_squared(const float* x) = 0;
    // The best slot's codes and absmax (double-quant fields included) on the host; downloads
    // once and leaves the best slot empty.
    virtual QuantizedTensor take_best() = 0;
};

class LinalgBackend {
public:
    virtual ~LinalgBackend() = default;
    virtual BackendKind kind() const = 0;
    virtual std::string name() const = 0;

    // Memory in the backend's space. allocate(0) returns nullptr.
    virtual float* allocate(size_t count) = 0;
    virtual void release(float* p) noexcept = 0;
    virtual void upload(float* dst, const float* host_src, size_t count) = 0;
    virtual void download(float* host_dst, const float* src, size_t count) = 0;
    virtual void copy(float* dst, const float* src, size_t count) = 0;
    // Copy an m x n block between two leading dimensions.
    virtual void copy_matrix(int64_t m, int64_t n, const float* src, int64_t ld_src, float* dst,
                             int64_t ld_dst) = 0;

    // C (m x n) = alpha * op(A) * op(B) + beta * C; op(A) is m x k, op(B) is k x n.
    virtual void gemm(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc) = 0;
    // y += alpha * x, element by element (hence bit-reproducible for any threading).
    virtual void axpy(size_t n, float alpha, const float* x, float* y) = 0;
    // sqrt(sum x^2) accumulated in double; returned on the host.
    virtual double norm2(size_t n, const float* x) = 0;

    // Householder QR of the tall A (m x k, m >= k, ld k): A is replaced by its orthonormal Q
    // factor; R (k x k upper triangular, ld k) is written to r when r is not null.
    // `work` holds qr_columns_work(m, k) floats.
    virtual size_t qr_columns_work(int64_t m, int64_t k) = 0;
    virtual void qr_columns(int64_t m, int64_t k, float* a, float* r, float* work) = 0;
    // The rows of the wide A (k x n, k <= n, ld n) are replaced by an orthonormal basis of the
    // same row space: A^T = Q R (Householder) and A becomes Q^T. R (k x k upper triangular, ld k,
    // so that A = R^T Q) is written to r when r is not null. A k x n row-major matrix is the
    // column-major n x k one, so this is also the QR of a column-major tall matrix, in place.
    // `work` holds qr_rows_work(k, n) floats.
    virtual size_t qr_rows_work(int64_t k, int64_t n) = 0;
    virtual void qr_rows(int64_t k, int64_t n, float* a, float* r, float* work) = 0;

    // Thin SVD A = U diag(s) Vt of A (m x n, ld n), p = min(m, n): u is m x p (ld p), s has p
    // values in descending order, vt is p x n (ld n). A is destroyed. `work` holds
    // svd_work(m, n) floats. The driver is accurate (LAPACK gesdd on CPU, cuSOLVER gesvd on GPU).
    virtual size_t svd_work(int64_t m, int64_t n) = 0;
    virtual void svd(int64_t m, int64_t n, float* a, float* u, float* s, float* vt,
                     float* work) = 0;
    // The same thin SVD for the randomized SVD's small projected matrix (wide, m <= n), where a
    // backend may take a faster route whose singular triplets agree with svd's to float32
    // rounding while the matrix is well conditioned, and svd's driver otherwise (the CPU goes
    // through the Gram matrix in double). A may be destroyed; `work` holds svd_work(m, n).
    // This default is svd itself.
    virtual void svd_wide(int64_t m, int64_t n, float* a, float* u, float* s, float* vt, float* work) {
        svd(m, n, a, u, s, vt, work);
    }

    // out[i] = standard normal number (offset + i) of the stream (seed, name_hash), see
    // core/philox.hpp: identical values on every backend.
    virtual void fill_gaussian(uint64_t seed, uint64_t name_hash, uint64_t offset, size_t n,
                               float* out) = 0;
    // out[j] = the entry of largest magnitude of column j of A (m x k, ld lda), the first
    // such entry on ties; 0 when m == 0.
    virtual void column_absmax(int64_t m, int64_t k, const float* a, int64_t lda, float* out) = 0;
    // Multiply column j (resp. row i) of A by host_scale[j] (resp. host_scale[i]).
    virtual void scale_columns(int64_t m, int64_t k, float* a, int64_t lda,
                               const float* host_scale) = 0;
    virtual void scale_rows(int64_t m, int64_t n, float* a, int64_t lda,
                            const float* host_scale) = 0;

    virtual void synchronize() = 0;

    // Quantize-as-loaded slots for one shard of n elements (QuantSlots). `scratch`: n floats of
    // this backend's memory that the caller never reads across a call on the slots (the loop's
    // low-rank buffer); a backend may build a Q as loaded there instead of holding its own.
    // Every format and backbone quantize_as_loaded accepts works on every backend (a backend
    // without a kernel for a combination stages it through the host itself); what it rejects
    // throws as it does, at the latest on the first quantization.
    virtual std::unique_ptr<QuantSlots> make_quant_slots(const QuantParams& p, Backbone backbone,
                                                         size_t n, float* scratch,
                                                         const std::string& tensor_name) = 0;
    // Host data to read in backend memory: `host` itself where the backend's memory is host
    // memory (nothing copied), else a copy uploaded into `storage`, which must outlive its use.
    virtual const float* adopt_host(const float* host, size_t n, DeviceBuffer& storage) = 0;
};

// QuantSlots::quantize_residual as its three steps: res = w - low (or w; in place when low is res);
// quantize_current(res);
// res = w - current_loaded(). n floats in be's memory.
void quantize_residual_steps(LinalgBackend& be, QuantSlots& slots, size_t n, const float* w, const float* low,
                             float* res);

std::unique_ptr<LinalgBackend> make_cpu_backend();
// Binds the calling thread to `device`. Throws NotImplemented in a build without CUDA and
// BackendError when the device cannot be used.
std::unique_ptr<LinalgBackend> make_cuda_backend(int device);
// Visible CUDA devices (0 in a build without CUDA or when the driver reports an error).
int cuda_device_count();
inline bool cuda_device_present() { return cuda_device_count() > 0; }
// The cudaStream_t of a CUDA backend (for make_nccl_communicator); throws for other backends.
void* cuda_backend_stream(LinalgBackend& be);
// "cpu" | "cuda" | "auto" (CUDA when a device is present). Throws ConfigError on other names.
std::unique_ptr<LinalgBackend> make_backend(const std::string& name, int device);

// RAII buffer in a backend's memory.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(LinalgBackend& be, size_t count) : be_(&be), p_(be.allocate(count)), n_(count) {}
    ~DeviceBuffer() { if (be_) be_->release(p_); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) { o.be_ = nullptr; o.p_ = nullptr; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            if (be_) be_->release(p_);
            be_ = o.be_; p_ = o.p_; n_ = o.n_;
            o.be_ = nullptr; o.p_ = nullptr;
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    float* get() const { return p_; }
    size_t size() const { return n_; }

private:
    LinalgBackend* be_ = nullptr;
    float* p_ = nullptr;
    size_t n_ = 0;
};

}  // namespace loftq
