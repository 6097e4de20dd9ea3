#include "runtime/synth.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/safetensors_writer.hpp"

namespace loftq {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr int kLowRank = 12;
constexpr double kWeightStd = 0.02;
constexpr double kRowSigma = 0.2;
constexpr double kColSigma = 0.4;

// SplitMix64's output function.
inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One independent stream of a tensor: element i is SplitMix64's i-th output from `key`.
struct Stream {
    uint64_t key;
    uint64_t at(uint64_t i) const { return mix64(key + (i + 1) * kGolden); }
};

// Tags of the streams of one tensor.
enum : uint64_t { kElements = 0, kRows = 1, kCols = 2, kU = 16, kV = 64 };

Stream stream_of(uint64_t tensor_key, uint64_t tag) {
    return {mix64(tensor_key ^ mix64(tag * 0xD1B54A32D192ED03ull + 0x5851F42D4C957F2Dull))};
}

uint64_t tensor_key(uint64_t seed, const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
    for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
    return mix64(mix64(seed) ^ h);
}

inline double unit_open(uint64_t bits, int nbits) {  // in (0, 1)
    return (static_cast<double>(bits) + 0.5) * std::ldexp(1.0, -nbits);
}

inline double normal(uint64_t x) {  // Box-Muller on the two 32-bit halves
    const double u1 = unit_open(x >> 32, 32), u2 = unit_open(x & 0xffffffffull, 32);
    return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

inline double laplace(uint64_t x) {  // unit variance: b = 1 / sqrt(2)
    const double mag = -std::log(unit_open(x & ((1ull << 53) - 1), 53)) * 0.7071067811865476;
    return (x >> 63) ? -mag : mag;
}

// exp(sigma z - sigma^2): mean square 1, so the scales leave the weight std unchanged.
inline double lognormal_scale(double z, double sigma) { return std::exp(sigma * z - sigma * sigma); }

enum class Kind { linear, embedding, norm, bias };

Kind kind_of(const ModelTensor& t) {
    auto ends = [&t](const std::string& s) {
        return t.name.size() >= s.size() && t.name.compare(t.name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends(".bias")) return Kind::bias;
    if (t.shape.size() == 1) return Kind::norm;
    if (ends("embed_tokens.weight")) return Kind::embedding;
    return Kind::linear;
}

// The per-tensor state: column scales and low-rank column factors, computed once.
class TensorGenerator {
public:
    TensorGenerator(const ModelTensor& t, uint64_t seed) : kind_(kind_of(t)) {
        key_ = tensor_key(seed, t.name);
        rows_ = t.shape.size() == 2 ? t.shape[0] : 1;
        cols_ = t.shape.size() == 2 ? t.shape[1] : t.shape.at(0);
        if (kind_ != Kind::linear) return;
        const Stream cs = stream_of(key_, kCols);
        col_scale_.resize(cols_);
        for (int64_t j = 0; j < cols_; ++j) col_scale_[j] = lognormal_scale(normal(cs.at(j)), kColSigma);
        const double m = static_cast<double>(rows_), n = static_cast<double>(cols_);
        const double unit = (std::sqrt(m) + std::sqrt(n)) / std::sqrt(m * n);
        v_.resize(static_cast<size_t>(cols_) * kLowRank);
        for (int k = 0; k < kLowRank; ++k) {
            amplitude_[k] = 3.0 * std::pow(0.7, k) * unit;
            const Stream vs = stream_of(key_, kV + k);
            for (int64_t j = 0; j < cols_; ++j) v_[j * kLowRank + k] = normal(vs.at(j));
        }
    }

    int64_t cols() const { return cols_; }

    void row(int64_t i, float* out) const {
        const Stream es = stream_of(key_, kElements);
        const uint64_t base = static_cast<uint64_t>(i) * static_cast<uint64_t>(cols_);
        switch (kind_) {
        case Kind::norm:
            for (int64_t j = 0; j < cols_; ++j)
                out[j] = static_cast<float>(std::exp(0.15 * normal(es.at(base + j))));
            return;
        case Kind::bias:
            for (int64_t j = 0; j < cols_; ++j) out[j] = static_cast<float>(0.01 * normal(es.at(base + j)));
            return;
        case Kind::embedding: {
            const double r = kWeightStd * lognormal_scale(normal(stream_of(key_, kRows).at(i)), 0.3);
            for (int64_t j = 0; j < cols_; ++j) out[j] = static_cast<float>(r * laplace(es.at(base + j)));
            return;
        }
        case Kind::linear: {
            const double r = lognormal_scale(normal(stream_of(key_, kRows).at(i)), kRowSigma);
            double u[kLowRank];
            for (int k = 0; k < kLowRank; ++k) u[k] = amplitude_[k] * normal(stream_of(key_, kU + k).at(i));
            for (int64_t j = 0; j < cols_; ++j) {
                const double* v = &v_[j * kLowRank];
                double low = 0;
                for (int k = 0; k < kLowRank; ++k) low += u[k] * v[k];
                out[j] = static_cast<float>(kWeightStd * (r * col_scale_[j] * laplace(es.at(base + j)) + low));
            }
            return;
        }
        }
    }

private:
    Kind kind_;
    uint64_t key_ = 0;
    int64_t rows_ = 0, cols_ = 0;
    std::vector<double> col_scale_;
    std::vector<double> v_;  // cols x kLowRank
    double amplitude_[kLowRank] = {};
};

const char* torch_dtype_of(DType t) {
    switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    default: LOFTQ_THROW_SETTING("dtype", dtype_name(t), " is not bf16, fp16 or fp32");
    }
}

// True when it created the folder (a failed synth then removes it: no partial output).
bool prepare_folder(const std::string& folder) {
    std::error_code ec;
    if (fs::exists(folder, ec)) {
        if (!fs::is_directory(folder, ec)) LOFTQ_THROW_SETTING("output", folder, " is not a folder");
        for (const auto& e : fs::directory_iterator(folder, ec)) {
            const std::string n = e.path().filename().string();
            if (n == "config.json" || n.find(".safetensors") != std::string::npos)
                LOFTQ_THROW_SETTING("output", folder, " already holds a checkpoint (", n,
                            "); choose a new or empty folder");
        }
        return false;
    }
    if (!fs::create_directory(folder, ec))
        LOFTQ_THROW_SETTING("output", "cannot create ", folder, " (", ec.message(), ")");
    return true;
}

// Every tensor, generated and streamed into the shards (one tensor in memory at a time).
void write_tensors(const std::string& folder, const std::vector<ModelTensor>& tensors,
                   const std::vector<TensorSpec>& specs, const SynthOptions& opts, SynthSummary& s) {
    ShardedSafetensorsWriter writer(folder, specs, opts.max_shard_size);
    for (const auto& shard : writer.shards()) s.files.push_back(shard.file_name);
    const size_t itemsize = dtype_size(opts.dtype);
    std::vector<unsigned char> bytes;  // one tensor; its capacity settles at the largest
    for (size_t ti = 0; ti < tensors.size(); ++ti) {
        const TensorGenerator gen(tensors[ti], opts.seed);
        const int64_t rows = tensors[ti].shape.size() == 2 ? tensors[ti].shape[0] : 1;
        const int64_t cols = gen.cols();
        if (bytes.capacity() < specs[ti].nbytes()) std::vector<unsigned char>().swap(bytes);  // no old + new
        bytes.resize(specs[ti].nbytes());
#pragma omp parallel
        {
            std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
            for (int64_t i = 0; i < rows; ++i) {
                gen.row(i, row.data());
                narrow_from_f32(opts.dtype, row.data(), static_cast<size_t>(cols),
                                bytes.data() + static_cast<size_t>(i) * cols * itemsize);
            }
        }
        writer.write(specs[ti].name, bytes.data(), bytes.size());
    }
    writer.finish();
}


}  // namespace

ModelConfig synth_model_config(const SynthOptions& opts) {
    ModelConfig m = preset_model_config(opts.preset);
    if (opts.layers < 0) LOFTQ_THROW_SETTING("layers", "must be >= 0, got ", opts.layers);
    if (opts.layers > 0) m.num_hidden_layers = opts.layers;
    m.torch_dtype = torch_dtype_of(opts.dtype);
    return m;
}

void synth_rows(const ModelConfig&, const ModelTensor& t, uint64_t seed, int64_t row_begin, int64_t row_end,
                float* out) {
    const TensorGenerator gen(t, seed);
    for (int64_t i = row_begin; i < row_end; ++i) gen.row(i, out + (i - row_begin) * gen.cols());
}

SynthSummary write_synthetic_checkpoint(const std::string& folder, const SynthOptions& opts) {
    SynthSummary s;
    s.model = synth_model_config(opts);
    const std::vector<ModelTensor> tensors = expected_tensors(s.model);
    std::vector<TensorSpec> specs;
    for (const auto& t : tensors) {
        specs.push_back(TensorSpec{t.name, opts.dtype, t.shape});
        s.total_bytes += specs.back().nbytes();
        s.largest_tensor_bytes = std::max(s.largest_tensor_bytes, specs.back().nbytes());
    }
    s.tensors = specs.size();
    const bool created = prepare_folder(folder);
    try {
        write_tensors(folder, tensors, specs, opts, s);
        write_file_atomically(folder + "/config.json", model_config_to_json(s.model).dump(2) + "\n");
    } catch (...) {
        // Nothing half-written stays: the shards already committed go with the folder we made.
        std::error_code ec;
        if (created) fs::remove_all(folder, ec);
        throw;
    }
    return s;
}


}  // namespace loftq
