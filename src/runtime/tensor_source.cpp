#include "runtime/tensor_source.hpp"

#include <algorithm>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "runtime/progress.hpp"

namespace loftq {
namespace {

constexpr int kTagRequest = 7401;
constexpr int kTagData = 7402;
constexpr int kTagFinished = 7403;
constexpr int64_t kChunk = int64_t{1} << 30;  // bytes per message (MPI counts are int)

class DirectSource final : public TensorSource {
public:
    explicit DirectSource(const std::string& dir) : ck_(dir) {}
    void read_rows(const MatrixPlan& m, int64_t row_begin, int64_t row_end, float* dst) override {
        ck_.read_f32_into(m.tensor, static_cast<uint64_t>(row_begin * m.cols),
                          static_cast<uint64_t>((row_end - row_begin) * m.cols), dst, FiniteCheck::reject);
    }

private:
    Checkpoint ck_;
};

class ScatterClient final : public TensorSource {
public:
    explicit ScatterClient(MPI_Comm comm) : comm_(comm) {}
    void read_rows(const MatrixPlan& m, int64_t row_begin, int64_t row_end, float* dst) override {
        const int64_t request[3] = {m.index, row_begin, row_end};
        MPI_CHECK(MPI_Send(request, 3, MPI_INT64_T, 0, kTagRequest, comm_));
        const size_t n = static_cast<size_t>((row_end - row_begin) * m.cols);
        const size_t item = dtype_size(m.dtype);
        raw_.resize(n * item);
        for (int64_t off = 0; off < static_cast<int64_t>(raw_.size()); off += kChunk) {
            const int count = static_cast<int>(std::min<int64_t>(kChunk, static_cast<int64_t>(raw_.size()) - off));
            MPI_CHECK(MPI_Recv(raw_.data() + off, count, MPI_BYTE, 0, kTagData, comm_, MPI_STATUS_IGNORE));
        }
        widen_to_f32(m.dtype, raw_.data(), n, dst);
        const uint64_t bad = first_non_finite(dst, n);
        if (bad != n)
            LOFTQ_THROW(InputError, "tensor '", m.tensor, "': non-finite value ", dst[bad], " at element ",
                        static_cast<uint64_t>(row_begin * m.cols) + bad, " (sent by rank 0)");
    }
    void finish() override {
        const int64_t none = 0;
        MPI_CHECK(MPI_Send(&none, 1, MPI_INT64_T, 0, kTagFinished, comm_));
    }

private:
    MPI_Comm comm_;
    std::vector<unsigned char> raw_;
};

}  // namespace

std::unique_ptr<TensorSource> make_direct_source(const std::string& model_dir) {
    return std::make_unique<DirectSource>(model_dir);
}

std::unique_ptr<TensorSource> make_scatter_client(MPI_Comm comm) {
    return std::make_unique<ScatterClient>(comm);
}

void serve_scatter(MPI_Comm comm, const std::string& model_dir, const Plan& plan, int clients,
                   ProgressReporter& progress) {
    Checkpoint ck(model_dir);
    int finished = 0;
    while (finished < clients) {
        MPI_Status st;
        MPI_CHECK(MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &st));
        if (st.MPI_TAG == kTagFinished) {
            int64_t none;
            MPI_CHECK(MPI_Recv(&none, 1, MPI_INT64_T, st.MPI_SOURCE, kTagFinished, comm, MPI_STATUS_IGNORE));
            ++finished;
        } else if (st.MPI_TAG == kTagRequest) {
            int64_t req[3];
            MPI_CHECK(MPI_Recv(req, 3, MPI_INT64_T, st.MPI_SOURCE, kTagRequest, comm, MPI_STATUS_IGNORE));
            LOFTQ_CHECK(req[0] >= 0 && req[0] < static_cast<int64_t>(plan.matrices.size()), "bad read request");
            const MatrixPlan& m = plan.matrices[static_cast<size_t>(req[0])];
            LOFTQ_CHECK(0 <= req[1] && req[1] <= req[2] && req[2] <= m.rows, "bad row range in read request");
            const size_t item = dtype_size(ck.info(m.tensor).dtype);
            const unsigned char* base = ck.raw(m.tensor) + static_cast<size_t>(req[1] * m.cols) * item;
            const int64_t bytes = (req[2] - req[1]) * m.cols * static_cast<int64_t>(item);
            for (int64_t off = 0; off < bytes; off += kChunk) {
                const int count = static_cast<int>(std::min(kChunk, bytes - off));
                MPI_CHECK(MPI_Send(base + off, count, MPI_BYTE, st.MPI_SOURCE, kTagData, comm));
            }
            release_mapped_pages(base, static_cast<uint64_t>(bytes));
        } else {
            progress.poll();  // a progress record
        }
    }
}

}  // namespace loftq
