#include "support/weights.hpp"

#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "support/paths.hpp"

namespace loftq::testing {

std::vector<F32Tensor> read_f32_safetensors(const std::string& path) {
    const std::string bytes = read_file(path);
    if (bytes.size() < 8) throw std::runtime_error(path + ": too short");
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    if (header_len > bytes.size() - 8) throw std::runtime_error(path + ": bad header length");
    const auto header = nlohmann::json::parse(bytes.substr(8, header_len));
    const size_t data_start = 8 + header_len;
    std::vector<F32Tensor> out;
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__" || info.at("dtype") != "F32") continue;
        F32Tensor t{name, info.at("shape").get<std::vector<int64_t>>(), {}};
        const auto off = info.at("data_offsets").get<std::vector<uint64_t>>();
        if (off.size() != 2 || off[1] < off[0] || data_start + off[1] > bytes.size() || (off[1] - off[0]) % 4)
            throw std::runtime_error(path + ": bad offsets for " + name);
        t.data.resize((off[1] - off[0]) / 4);
        std::memcpy(t.data.data(), bytes.data() + data_start + off[0], off[1] - off[0]);
        out.push_back(std::move(t));
    }
    return out;
}

std::vector<F32Tensor> stories_target_weights() {
    std::vector<F32Tensor> out;
    for (auto& t : read_f32_safetensors(stories_dir() + "/model.safetensors"))
        if (t.shape.size() == 2 && t.name.find(".layers.") != std::string::npos) out.push_back(std::move(t));
    return out;
}

std::vector<float> heavy_tailed(int64_t n, uint64_t seed, float scale, double dof) {
    std::mt19937_64 rng(seed);
    std::student_t_distribution<double> dist(dof);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(dist(rng)) * scale;
    return v;
}

}  // namespace loftq::testing
