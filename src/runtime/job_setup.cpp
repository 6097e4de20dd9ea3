#include "runtime/job_setup.hpp"

#include <nlohmann/json.hpp>

#include "quant/format.hpp"

namespace loftq {

LoftqOptions loftq_options_for(const Config& cfg, const MatrixPlan& m) {
    LoftqOptions o;
    o.quant.format = &select_format(cfg.quant, m.bits);
    o.quant.blocksize = cfg.blocksize;
    o.quant.double_quant = cfg.double_quant;
    o.backbone = parse_backbone(cfg.backbone);
    o.iters = cfg.iters;
    o.svd = cfg.svd;
    o.svd_options.rank = cfg.rank;
    o.svd_options.oversample = cfg.oversample;
    o.svd_options.power_iters = cfg.power_iters;
    o.svd_options.seed = cfg.seed;
    o.svd_options.name = m.tensor;
    o.lora_alpha = cfg.lora_alpha;
    o.rslora = cfg.rslora;
    o.keep_best = cfg.keep_best;
    o.compensate_scaling = cfg.compensate_scaling;
    return o;
}

RunLayout make_run_layout(const Config& cfg, const Plan& plan) {
    RunLayout layout;
    layout.reserve(plan.matrices.size());
    for (const auto& m : plan.matrices) {
        const QuantFormat& f = select_format(cfg.quant, m.bits);
        MatrixLayout l;
        l.name = m.tensor;
        l.rows = m.rows;
        l.cols = m.cols;
        l.bits = m.bits;
        l.format = f.name;
        l.blocksize = cfg.blocksize;
        l.codes_bytes = packed_bytes(f, m.rows * m.cols);
        l.nblocks = block_count(m.rows * m.cols, cfg.blocksize);
        l.double_quant = cfg.double_quant;
        l.rank = cfg.rank;
        l.iters = cfg.iters;
        layout.push_back(std::move(l));
    }
    return layout;
}

std::string run_options_json(const Config& cfg) {
    nlohmann::json j;
    j["bits"] = cfg.bits;
    j["quant"] = cfg.quant;
    j["blocksize"] = cfg.blocksize;
    j["rank"] = cfg.rank;
    j["iters"] = cfg.iters;
    j["targets"] = cfg.all_linear() ? nlohmann::json("all-linear") : nlohmann::json(cfg.targets);
    j["svd"] = cfg.svd;
    j["oversample"] = cfg.oversample;
    j["power-iters"] = cfg.power_iters;
    j["seed"] = cfg.seed;
    j["lora-alpha"] = cfg.lora_alpha;
    j["rslora"] = cfg.rslora;
    j["double-quant"] = cfg.double_quant;
    j["keep-best"] = cfg.keep_best;
    j["scale-compensation"] = cfg.compensate_scaling;
    j["backbone"] = cfg.backbone;
    j["split-threshold"] = cfg.split_threshold;
    return j.dump();
}

}  // namespace loftq
