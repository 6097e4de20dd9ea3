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
        current_in_scratch_ = true;
    }
    // In host memory the step is one fused pass that leaves the scratch alone; staged (a device
    // backend's memory) it takes the three steps.
    void quantize_residual(LinalgBackend& be, const float* w, const float* low, float* res) override {
        if (staged()) return quantize_residual_steps(be, *this, n_, w, low, res);
        quantize_residual_as_loaded(p_, backbone_, w, low, static_cast<int64_t>(n_), q_[cur_], res, scratch_, name_);
        current_in_scratch_ = false;
    }
    const float* current_loaded() override {
        if (!current_in_scratch_) {  // after a fused step: rebuilt from the codes, as best_loaded is
            loaded_values(q_[cur_], backbone_, q_target());
            publish();
            current_in_scratch_ = true;
        }
        return scratch_;
    }
    void keep_current() override {
        cur_ = 1 - cur_;
        current_in_scratch_ = false;  // the scratch holds the kept iterate's Q, no longer current
    }
    const float* best_loaded() override {
        loaded_values(q_[1 - cur_], backbone_, q_target());
        publish();
        current_in_scratch_ = false;
        return scratch_;
    }

    double plain_error_squared(const float* x) override {
        current_in_scratch_ = false;  // the current slot becomes the plain quantization of x
        const float* w = read(x);
        QuantizedTensor& q = q_[cur_];
        return quantize_plain_error(p_, w, static_cast<int64_t>(n_), q, name_);
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
    bool current_in_scratch_ = false;  // the scratch holds q_[cur_]'s Q as loaded
    std::vector<float> x_host_, q_host_;  // staged only
};

}  // namespace

void quantize_residual_steps(LinalgBackend& be, QuantSlots& slots, size_t n, const float* w, const float* low,
                             float* res) {
    const float* x = w;
    if (low == res) {  // res = -(low - w): the bits of w - low (rounding is symmetric), in place
        be.axpy(n, -1.0f, w, res);
        be.axpy(n, -2.0f, res, res);  // y + (-2 y) = -y exactly
        x = res;
    } else if (low) {
        be.copy(res, w, n);
        be.axpy(n, -1.0f, low, res);
        x = res;
    }
    slots.quantize_current(x);
    be.copy(res, w, n);
    be.axpy(n, -1.0f, slots.current_loaded(), res);
}

std::unique_ptr<QuantSlots> make_host_quant_slots(LinalgBackend& be, const QuantParams& p, Backbone backbone,
                                                  size_t n, float* scratch, const std::string& tensor_name,
                                                  HostStaging staging) {
    LOFTQ_CHECK(n == 0 || scratch != nullptr, "quant slots for '", tensor_name, "' need a scratch buffer");
    return std::make_unique<HostQuantSlots>(be, p, backbone, n, scratch, tensor_name, staging);
}

}  // namespace loftq
