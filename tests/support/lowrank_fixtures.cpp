#include "support/lowrank_fixtures.hpp"

#include <cblas.h>
#include <lapacke.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "support/paths.hpp"

namespace loftq::testing {
namespace {

// Random m x p matrix with orthonormal columns (column-major QR of a Gaussian), row-major out.
std::vector<double> random_orthonormal(int64_t m, int64_t p, std::mt19937_64& gen) {
    std::normal_distribution<double> nd;
    std::vector<double> cm(static_cast<size_t>(m * p));
    for (auto& x : cm) x = nd(gen);
    std::vector<double> tau(static_cast<size_t>(p));
    if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, p, cm.data(), m, tau.data()) != 0 ||
        LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, p, p, cm.data(), m, tau.data()) != 0)
        throw std::runtime_error("random_orthonormal: LAPACK failed");
    std::vector<double> rm(cm.size());
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < p; ++j) rm[i * p + j] = cm[j * m + i];
    return rm;
}

std::vector<double> product(const std::vector<float>& u, const std::vector<float>& s,
                            const std::vector<float>& vt, int64_t m, int64_t n, int64_t r) {
    std::vector<double> us(static_cast<size_t>(m * r)), v(static_cast<size_t>(r * n));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < r; ++j) us[i * r + j] = double(u[i * r + j]) * s[j];
    for (size_t i = 0; i < v.size(); ++i) v[i] = vt[i];
    std::vector<double> out(static_cast<size_t>(m * n));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0, us.data(), r, v.data(), n,
                0.0, out.data(), n);
    return out;
}

}  // namespace

Matrix matrix_with_spectrum(int64_t rows, int64_t cols, const std::vector<double>& sigma,
                            uint64_t seed) {
    const int64_t p = static_cast<int64_t>(sigma.size());
    std::mt19937_64 gen(seed);
    auto u = random_orthonormal(rows, p, gen);
    auto v = random_orthonormal(cols, p, gen);
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < p; ++j) u[i * p + j] *= sigma[j];
    std::vector<double> a(static_cast<size_t>(rows * cols));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, p, 1.0, u.data(), p, v.data(),
                p, 0.0, a.data(), cols);
    Matrix out(rows, cols);
    for (size_t i = 0; i < a.size(); ++i) out.data[i] = static_cast<float>(a[i]);
    return out;
}

std::vector<double> decaying_spectrum(int64_t p, double rate) {
    std::vector<double> s(static_cast<size_t>(p));
    for (int64_t i = 0; i < p; ++i) s[i] = std::exp(-rate * static_cast<double>(i));
    return s;
}

std::vector<double> flat_spectrum(int64_t p) {
    std::vector<double> s(static_cast<size_t>(p));
    for (int64_t i = 0; i < p; ++i) s[i] = 1.0 - 0.5 * static_cast<double>(i) / p;
    return s;
}

Matrix load_stories_tensor(const std::string& name) {
    const std::string path = stories_dir() + "/model.safetensors";
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    uint64_t header_len = 0;
    f.read(reinterpret_cast<char*>(&header_len), 8);
    std::string header(header_len, '\0');
    f.read(header.data(), static_cast<std::streamsize>(header_len));
    const auto j = nlohmann::json::parse(header);
    const auto& t = j.at(name);
    if (t.at("dtype") != "F32" || t.at("shape").size() != 2)
        throw std::runtime_error(name + ": not a 2-D F32 tensor");
    const int64_t rows = t["shape"][0], cols = t["shape"][1];
    const uint64_t begin = t["data_offsets"][0], end = t["data_offsets"][1];
    if (end - begin != static_cast<uint64_t>(rows * cols * 4)) throw std::runtime_error(name + ": bad size");
    Matrix m(rows, cols);
    f.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    f.read(reinterpret_cast<char*>(m.ptr()), static_cast<std::streamsize>(end - begin));
    if (!f) throw std::runtime_error(name + ": short read");
    return m;
}

std::vector<std::string> stories_linear_names() {
    std::vector<std::string> out;
    for (int l = 0; l < 5; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
            out.push_back(p + n + ".weight");
    }
    return out;
}

std::vector<double> reference_singular_values(const Matrix& a) {
    std::vector<double> d(a.data.begin(), a.data.end());
    const int64_t p = std::min(a.rows, a.cols);
    std::vector<double> s(static_cast<size_t>(p));
    if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', a.rows, a.cols, d.data(), a.cols, s.data(), nullptr,
                       1, nullptr, 1) != 0)
        throw std::runtime_error("reference dgesdd failed");
    return s;
}

double frobenius(const Matrix& a) {
    double s = 0;
    for (float x : a.data) s += double(x) * x;
    return std::sqrt(s);
}

double residual(const Matrix& a, const std::vector<float>& u, const std::vector<float>& s,
                const std::vector<float>& vt, int64_t r) {
    const auto p = product(u, s, vt, a.rows, a.cols, r);
    double acc = 0;
    for (size_t i = 0; i < p.size(); ++i) acc += (a.data[i] - p[i]) * (a.data[i] - p[i]);
    return std::sqrt(acc);
}

double relative_residual(const Matrix& a, const std::vector<float>& u, const std::vector<float>& s,
                         const std::vector<float>& vt, int64_t r) {
    return residual(a, u, s, vt, r) / frobenius(a);
}

double orthogonality_error(const std::vector<float>& q, int64_t m, int64_t r, bool columns) {
    double acc = 0;
    for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < r; ++j) {
            double dot = 0;
            for (int64_t t = 0; t < m; ++t)
                dot += columns ? double(q[t * r + i]) * q[t * r + j] : double(q[i * m + t]) * q[j * m + t];
            const double e = (i == j ? 1.0 : 0.0) - dot;
            acc += e * e;
        }
    return std::sqrt(acc);
}

double relative_product_difference(const std::vector<float>& u1, const std::vector<float>& s1,
                                   const std::vector<float>& vt1, const std::vector<float>& u2,
                                   const std::vector<float>& s2, const std::vector<float>& vt2,
                                   int64_t m, int64_t n, int64_t r) {
    const auto a = product(u1, s1, vt1, m, n, r), b = product(u2, s2, vt2, m, n, r);
    double d = 0, nb = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        nb += b[i] * b[i];
    }
    return std::sqrt(d / nb);
}

double tail_norm(const std::vector<double>& sigma, int64_t r) {
    double acc = 0;
    for (size_t i = static_cast<size_t>(r); i < sigma.size(); ++i) acc += sigma[i] * sigma[i];
    return std::sqrt(acc);
}

}  // namespace loftq::testing
