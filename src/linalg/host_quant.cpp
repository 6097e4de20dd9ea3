// Host quantize-as-loaded slots (see host_quant.hpp).
#include "linalg/host_quant.hpp"

#include <utility>
#include <vector>

#include "core/error.hpp"

namespace loftq {
namespace {

class HostQuantSlots final : public QuantSlots {
public:
    HostQuantSlots(LinalgBackend& be, const QuantParams& p, Backbone backbone, size_t n, float* scratch,
                   std::string tensor_name, HostStaging staging)
        : be_(be), p_(p), backbone_(backbone), n_(n), scratch_(scratch), name_(std::move(tensor_name)) {
        if (staging == HostStaging::staged) {
            x_host_.resize(n);
            q_host_.resize(n);
        }
    }

    void quantize_current(const float* x) override {
        quantize_as_loaded(p_, backbone_, read(x), static_cast<int64_t>(n_), q_[cur_], q_target(), name_);
        publish();
    }
    const float* current_loaded() override { return scratch_; }  // written by quantize_current
    void keep_current() override { cur_ = 1 - cur_; }
    const float* best_loaded() override {
        loaded_values(q_[1 - cur_], backbone_, q_target());
        publish();
        return scratch_;
    }

    double plain_error_squared(const float* x) override {
        const float* w = read(x);
        float* deq = q_target();
        QuantizedTensor& q = q_[cur_];
        quantize(p_, w, static_cast<int64_t>(n_), q, name_);
        dequantize(q, deq);
        double acc = 0;
        for (size_t i = 0; i < n_; ++i) {
            const double d = static_cast<double>(w[i]) - static_cast<double>(deq[i]);
            acc += d * d;
        }
        return acc;
    }

    QuantizedTensor take_best() override { return std::move(q_[1 - cur_]); }

private:
    bool staged() const { return !x_host_.empty(); }
    // x on the host: itself, or a downloaded copy.
    const float* read(const float* x) {
        if (!staged()) return x;
        be_.download(x_host_.data(), x, n_);
        return x_host_.data();
    }
    // Where the host writes a Q as loaded, and its upload to the scratch buffer.
    float* q_target() { return staged() ? q_host_.data() : scratch_; }
    void publish() {
        if (staged()) be_.upload(scratch_, q_host_.data(), n_);
    }

    LinalgBackend& be_;
    QuantParams p_;
    Backbone backbone_;
    size_t n_;
    float* scratch_;
    std::string name_;
    QuantizedTensor q_[2];
    int cur_ = 0;  // q_[cur_] is written next; q_[1 - cur_] holds the best kept
    std::vector<float> x_host_, q_host_;  // staged only
};

}  // namespace

std::unique_ptr<QuantSlots> make_host_quant_slots(LinalgBackend& be, const QuantParams& p, Backbone backbone,
                                                  size_t n, float* scratch, const std::string& tensor_name,
                                                  HostStaging staging) {
    LOFTQ_CHECK(n == 0 || scratch != nullptr, "quant slots for '", tensor_name, "' need a scratch buffer");
    return std::make_unique<HostQuantSlots>(be, p, backbone, n, scratch, tensor_name, staging);
}

}  // namespace loftq
