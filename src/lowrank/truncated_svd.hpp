// The truncated-SVD interface the LoftQ loop calls, its options, and the --svd auto choice.
//
// An object is built once per matrix shape (its workspace is allocated then and reused: no
// allocation inside compute) and called once per LoftQ iteration:
//   compute(A) -> U (rows x rank), S (rank, descending), Vt (rank x cols), all row-major in the
//   backend's memory, with the deterministic sign convention of ShardExchange::canonical_signs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "linalg/backend.hpp"

namespace loftq {

class TruncatedSvd {
public:
    virtual ~TruncatedSvd() = default;
    // a: rows x cols (ld cols); u: rows x rank (ld rank); s: rank; vt: rank x cols (ld cols).
    // `a` is not modified. Outputs may not alias `a`.
    virtual void compute(const float* a, float* u, float* s, float* vt) = 0;
    // Forget the previous call's subspace (randomized warm start); no-op for exact.
    virtual void reset_warm_start() {}
    virtual std::string method() const = 0;  // "exact" | "randomized"
    // Randomized: the sketch width k, the passes over A (2q + 2) of the last compute and the
    // columns they multiplied (k per pass; a Krylov projection (q + 1) k); 0 for the exact SVD.
    virtual int sketch_width() const { return 0; }
    virtual int last_gemm_passes() const { return 0; }
    virtual int last_gemm_columns() const { return 0; }
};

// How the fresh sketch's power iterations are used (randomized_svd.hpp): krylov keeps every
// block they make, subspace only the last (the method of run files written before the choice).
enum class PowerScheme { krylov, subspace };
const char* power_scheme_name(PowerScheme s);          // "krylov" | "subspace"
PowerScheme parse_power_scheme(const std::string& s);  // ConfigError (setting "power-scheme")

struct SvdOptions {
    int rank = 64;
    int oversample = 0;         // p: sketch width k = rank + p (clamped to min(rows, cols))
    int power_iters = 2;        // q for a fresh Gaussian sketch
    PowerScheme scheme = PowerScheme::krylov;
    bool warm_start = true;     // start from the previous call's k-dimensional right subspace
    int warm_power_iters = 0;   // q when warm-started (bench/results/passes.md: 1.006 of exact)
    uint64_t seed = 0;
    std::string name;           // matrix name: keys the sketch with the seed
};

enum class SvdMethod { exact, randomized };
// What a run asks for: a method, or `automatic` (chosen per matrix shape).
enum class SvdChoice { automatic, exact, randomized };

const char* svd_method_name(SvdMethod m);  // "exact" | "randomized"
const char* svd_choice_name(SvdChoice c);  // "auto" | "exact" | "randomized"
// "auto" | "exact" | "randomized"; ConfigError (setting "svd") otherwise.
SvdChoice parse_svd_choice(const std::string& name);
SvdMethod parse_svd_method(const std::string& name);  // "exact" | "randomized"

// The method for a rows x cols matrix. automatic picks randomized when the sketch is small
// against the matrix (min(rows, cols) >= 256 and >= 2 (q + 1) k with the Krylov scheme, >= 4 k
// with the subspace scheme; k = rank + oversample), exact otherwise.
// Throws ConfigError (setting "rank") when the rank does not fit the matrix.
SvdMethod choose_svd_method(SvdChoice requested, int64_t rows, int64_t cols, const SvdOptions& opt);

// Build the SVD object of the chosen method for one (unsharded) matrix shape.
std::unique_ptr<TruncatedSvd> make_truncated_svd(LinalgBackend& be, SvdMethod method,
                                                 int64_t rows, int64_t cols,
                                                 const SvdOptions& opt);

}  // namespace loftq
