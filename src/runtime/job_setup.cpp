#include "runtime/job_setup.hpp"

#include "quant/format.hpp"

namespace loftq {

RunLayout make_run_layout(const Plan& plan) {
    const LoftqOptions& o = plan.spec.loftq;
    RunLayout layout;
    layout.reserve(plan.matrices.size());
    for (const auto& m : plan.matrices) {
        const QuantFormat& f = select_format(plan.spec.quant, m.bits);
        MatrixLayout l;
        l.name = m.tensor;
        l.rows = m.rows;
        l.cols = m.cols;
        l.bits = m.bits;
        l.format = f.name;
        l.blocksize = plan.spec.blocksize_for(m.bits, m.cols);
        l.codes_bytes = packed_bytes(f, m.rows * m.cols);
        l.nblocks = block_count(m.rows * m.cols, static_cast<int>(l.blocksize));
        l.double_quant = o.quant.double_quant;
        l.rank = m.rank;  // min(--rank, rows, cols)
        l.iters = o.iters;
        layout.push_back(std::move(l));
    }
    return layout;
}

}  // namespace loftq
