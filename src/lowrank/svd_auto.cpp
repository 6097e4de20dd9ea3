// --svd auto|exact|randomized and the factory of TruncatedSvd objects.
#include <algorithm>

#include "core/error.hpp"
#include "lowrank/exact_svd.hpp"
#include "lowrank/randomized_svd.hpp"

namespace loftq {

const char* svd_method_name(SvdMethod m) { return m == SvdMethod::exact ? "exact" : "randomized"; }

const char* svd_choice_name(SvdChoice c) {
    switch (c) {
        case SvdChoice::automatic: return "auto";
        case SvdChoice::exact: return "exact";
        case SvdChoice::randomized: return "randomized";
    }
    return "?";
}

SvdChoice parse_svd_choice(const std::string& name) {
    for (SvdChoice c : {SvdChoice::automatic, SvdChoice::exact, SvdChoice::randomized})
        if (name == svd_choice_name(c)) return c;
    LOFTQ_THROW_SETTING("svd", "unknown SVD method '", name, "' (expected auto, exact or randomized)");
}

SvdMethod parse_svd_method(const std::string& name) {
    const SvdChoice c = parse_svd_choice(name);
    if (c == SvdChoice::automatic) LOFTQ_THROW_SETTING("svd", "'auto' is not a method");
    return c == SvdChoice::exact ? SvdMethod::exact : SvdMethod::randomized;
}

const char* power_scheme_name(PowerScheme s) { return s == PowerScheme::krylov ? "krylov" : "subspace"; }

PowerScheme parse_power_scheme(const std::string& s) {
    for (PowerScheme p : {PowerScheme::krylov, PowerScheme::subspace})
        if (s == power_scheme_name(p)) return p;
    LOFTQ_THROW_SETTING("power-scheme", "unknown power scheme '", s, "' (expected krylov or subspace)");
}

SvdMethod choose_svd_method(SvdChoice requested, int64_t rows, int64_t cols, const SvdOptions& opt) {
    const int64_t p = std::min(rows, cols);
    if (opt.rank < 1 || opt.rank > p)
        LOFTQ_THROW_SETTING("rank", "rank ", opt.rank, " is outside [1, ", p, "] for '", opt.name,
                            "' (", rows, " x ", cols, ")");
    if (requested == SvdChoice::exact) return SvdMethod::exact;
    if (requested == SvdChoice::randomized) return SvdMethod::randomized;
    // The sketch costs ~(2q + 2) m n k flops against ~4 m n p + O(p^3) for gesdd: randomized wins
    // clearly once its widest basis is at most half of p (k <= p / 4 with the subspace scheme,
    // the q + 1 Krylov blocks (q + 1) k <= p / 2); below a few hundred columns the exact SVD is
    // cheap anyway.
    const int64_t k = static_cast<int64_t>(opt.rank) + opt.oversample;
    const int64_t widest = opt.scheme == PowerScheme::krylov ? 2 * (opt.power_iters + 1) * k : 4 * k;
    return (p >= 256 && widest <= p) ? SvdMethod::randomized : SvdMethod::exact;
}

std::unique_ptr<TruncatedSvd> make_truncated_svd(LinalgBackend& be, SvdMethod method, int64_t rows,
                                                 int64_t cols, const SvdOptions& opt) {
    if (method == SvdMethod::exact) return std::make_unique<ExactSvd>(be, rows, cols, opt.rank);
    return std::make_unique<RandomizedSvd>(be, rows, cols, opt);
}

}  // namespace loftq
