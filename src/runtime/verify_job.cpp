#include "runtime/verify_job.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.hpp"
#include "io/adapter_reader.hpp"
#include "io/checkpoint.hpp"
#include "io/export_format.hpp"
#include "io/held_weight.hpp"
#include "io/json_strict.hpp"
#include "quant/format.hpp"
#include "quant/quantize.hpp"
#include "runtime/export_job.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

// report.json is optional (an older export has none); anything else wrong with it is an error.
nlohmann::json read_optional_json_file(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(path, ec))) return nullptr;
    return read_json_file(path, "file");
}

double relative_error(const std::vector<float>& w, const std::vector<float>& q) {
    double num = 0, den = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        const double d = static_cast<double>(w[i] - q[i]);
        num += d * d;
        den += static_cast<double>(w[i]) * w[i];
    }
    return den > 0 ? std::sqrt(num / den) : 0.0;
}

// ||W - Q - s B A|| / ||W||, the product formed in float32 as the run forms it.
double loftq_error(const std::vector<float>& w, const std::vector<float>& q, const std::vector<float>& a,
                   const std::vector<float>& b, int64_t rows, int64_t cols, int64_t r, float s) {
    double num = 0, den = 0;
    std::vector<float> ba(static_cast<size_t>(cols));
    for (int64_t i = 0; i < rows; ++i) {
        std::fill(ba.begin(), ba.end(), 0.0f);
        for (int64_t k = 0; k < r; ++k) {
            const float bik = b[static_cast<size_t>(i * r + k)];
            const float* ak = a.data() + k * cols;
            for (int64_t j = 0; j < cols; ++j) ba[static_cast<size_t>(j)] += bik * ak[j];
        }
        const float* wi = w.data() + i * cols;
        const float* qi = q.data() + i * cols;
        for (int64_t j = 0; j < cols; ++j) {
            const float e = (wi[j] - qi[j]) - s * ba[static_cast<size_t>(j)];
            num += static_cast<double>(e) * e;
            den += static_cast<double>(wi[j]) * wi[j];
        }
    }
    return den > 0 ? std::sqrt(num / den) : 0.0;
}

// The LLM.int8 tensors of `name` (M.weight int8, M.SCB) dequantized as bitsandbytes does.
std::vector<float> load_int8(const Checkpoint& out, const std::string& name, int64_t rows, int64_t cols) {
    const std::string where = cat(out.path(), " tensor ", name);
    const std::string scb_key = int8_scb_key(name);
    if (!out.contains(scb_key)) LOFTQ_THROW(InputError, where, ": no ", scb_key, " tensor (an int8 backbone needs it)");
    const std::vector<int8_t> codes = out.file_of(name).read_as<int8_t>(name);
    const std::vector<float> scb = out.file_of(scb_key).read_as<float>(scb_key);
    if (static_cast<int64_t>(codes.size()) != rows * cols || static_cast<int64_t>(scb.size()) != rows)
        LOFTQ_THROW(InputError, where, ": int8 weight or SCB of the wrong size (expected ", rows, "x", cols, " and ",
                    rows, ")");
    const QuantFormat& f = select_format("int8", 8);
    std::vector<float> q(codes.size());
    f.dequantize(f, static_cast<int>(cols), reinterpret_cast<const uint8_t*>(codes.data()), scb.data(),
                 rows * cols, q.data());
    return q;
}

}  // namespace

int VerifyReport::worse_than_qlora() const {
    int worse = 0;
    for (const auto& m : matrices) worse += m.loftq_error > m.qlora_error ? 1 : 0;
    return worse;
}

nlohmann::json VerifyReport::to_json() const {
    nlohmann::json ms = nlohmann::json::array();
    for (const auto& m : matrices)
        ms.push_back({{"name", m.name}, {"shape", {m.rows, m.cols}}, {"loaded_as", m.loaded_as},
                      {"scaling", m.scaling}, {"qlora_error", m.qlora_error}, {"loftq_error", m.loftq_error}});
    return {{"model", model_dir}, {"output", output_dir}, {"backbone", backbone},
            {"matrices", ms},     {"totals", error_totals(ms)}, {"notes", notes}};
}

std::string VerifyReport::table() const {
    std::ostringstream os;
    char line[512];
    std::snprintf(line, sizeof line, "%-52s %13s %-22s %10s %10s %7s\n", "matrix", "shape", "loaded as", "QLoRA err",
                  "LoftQ err", "gain");
    os << line;
    for (const auto& m : matrices) {
        const std::string shape = cat(m.rows, "x", m.cols);
        const double gain = m.qlora_error > 0 ? 100.0 * (1.0 - m.loftq_error / m.qlora_error) : 0.0;
        std::snprintf(line, sizeof line, "%-52s %13s %-22s %10.6f %10.6f %6.1f%%%s\n", m.name.c_str(), shape.c_str(),
                      m.loaded_as.c_str(), m.qlora_error, m.loftq_error, gain,
                      m.loftq_error > m.qlora_error ? "  WORSE" : "");
        os << line;
    }
    const nlohmann::json t = to_json()["totals"];
    const double qm = t["mean_qlora_error"], lm = t["mean_loftq_error"], qr = t["rms_qlora_error"], lr = t["rms_loftq_error"];
    std::snprintf(line, sizeof line, "%-52s %13s %-22s %10.6f %10.6f %6.1f%%\n", "mean over matrices", "", "", qm, lm,
                  qm > 0 ? 100.0 * (1.0 - lm / qm) : 0.0);
    os << line;
    std::snprintf(line, sizeof line, "%-52s %13s %-22s %10.6f %10.6f %6.1f%%\n", "RMS weighted by size", "", "", qr, lr,
                  qr > 0 ? 100.0 * (1.0 - lr / qr) : 0.0);
    os << line;
    for (const auto& n : notes) os << "note: " << n << "\n";
    os << output_dir << " (" << backbone << " backbone): LoftQ as loaded is worse than QLoRA on " << worse_than_qlora()
       << " of " << matrices.size() << " matrices\n";
    return os.str();
}

VerifyReport verify_output(const std::string& model_dir, const std::string& output_dir) {
    VerifyReport rep;
    rep.model_dir = model_dir;
    rep.output_dir = output_dir;
    const std::string config_path = output_dir + "/config.json";
    const nlohmann::json config = read_json_file(config_path, "file");
    const nlohmann::json report = read_optional_json_file(output_dir + "/report.json");

    const bool prequantized = config.is_object() && config.contains("quantization_config");
    bool bnb4 = false, int8 = false, load_dq = false;
    if (prequantized) {
        const auto& qc = config["quantization_config"];
        if (json_field<std::string>(qc, "quant_method", config_path) != "bitsandbytes")
            LOFTQ_THROW(InputError, config_path, ": quantization_config is not bitsandbytes");
        bnb4 = json_field<bool>(qc, "load_in_4bit", config_path);
        int8 = json_field<bool>(qc, "load_in_8bit", config_path);
        if (bnb4 == int8) LOFTQ_THROW(InputError, config_path, ": quantization_config is neither 4-bit nor 8-bit");
    } else if (report.is_object() && report.contains("load")) {
        load_dq = report["load"].value("bnb_4bit_use_double_quant", false);
    }
    const std::string torch_dtype = !config.is_object() ? "float32"
                                    : config.contains("torch_dtype") ? config.value("torch_dtype", std::string("float32"))
                                                                     : config.value("dtype", std::string("float32"));
    const DType load_dtype = torch_dtype_to_dtype(torch_dtype, config_path + " torch_dtype");
    const AdapterReader adapter(output_dir + "/loftq_init");
    const std::string& afile_path = adapter.tensors_path();

    std::map<std::string, std::pair<std::string, int64_t>> report_format;  // name -> (format, blocksize)
    if (report.is_object() && report.contains("matrices") && report["matrices"].is_array())
        for (const auto& m : report["matrices"])
            report_format[m.value("name", std::string())] = {m.value("format", std::string("nf4")), m.value("blocksize", int64_t{64})};

    const Checkpoint model(model_dir), out(output_dir);
    bool stored_as_is = false, requantized = false, requantized_int8 = false;
    rep.backbone = bnb4 ? "bnb4" : int8 ? "int8" : "";
    const QuantFormat& int8_format = select_format("int8", 8);
    for (const auto& module : adapter.modules()) {
        const std::string& name = module.first;
        const TensorInfo& wi = model.info(name);
        if (wi.shape.size() != 2) LOFTQ_THROW(InputError, model_dir, ": tensor ", name, " is not 2-D");
        VerifiedMatrix vm;
        vm.name = name;
        vm.rows = wi.shape[0];
        vm.cols = wi.shape[1];
        const std::vector<float> w = model.read_f32(name, FiniteCheck::reject);

        const int64_t r = adapter.rank_of(name);
        const TensorInfo& ai = adapter.tensors().info(lora_a_key(name));
        const TensorInfo& bi = adapter.tensors().info(lora_b_key(name));
        if (ai.shape != std::vector<int64_t>{r, vm.cols} || bi.shape != std::vector<int64_t>{vm.rows, r})
            LOFTQ_THROW(InputError, afile_path, ": ", name, " lora_A is ", shape_string(ai.shape), ", lora_B is ",
                        shape_string(bi.shape), "; adapter_config r = ", r, " needs [", r, ", ", vm.cols, "] and [",
                        vm.rows, ", ", r, "]");
        vm.scaling = adapter.scaling_of(name);

        std::vector<float> q, qlora;
        if (bnb4) {
            const Bnb4Stored st = read_bnb4_state(out, name);
            if (st.rows != vm.rows || st.cols != vm.cols)
                LOFTQ_THROW(InputError, out.path(), " tensor ", name, ": quant_state shape is not [", vm.rows, ", ",
                            vm.cols, "]");
            q = dequantize_bnb4_weight(out, name, st);
            const QuantFormat* f = find_format(st.quant_type);
            vm.loaded_as = cat("bnb4 ", st.quant_type, "/", st.blocksize, st.nested ? " dq" : "");
            // An nf2 matrix is stored as NF4 codes of NF2 values; its QLoRA is NF2 of W (2 bits).
            const auto rf = report_format.find(name);
            const QuantFormat* run_f = rf == report_format.end() ? nullptr : find_format(rf->second.first);
            if (run_f != nullptr && run_f->loads_through_nf4()) {
                vm.loaded_as += " (nf2 values)";
                f = run_f;
            }
            qlora = quantized_as_held(*f, static_cast<int>(st.blocksize), st.nested, w, name);
        } else if (int8) {
            q = load_int8(out, name, vm.rows, vm.cols);
            vm.loaded_as = "int8 (weight + SCB)";
            qlora = quantized_as_held(int8_format, static_cast<int>(vm.cols), false, w, name);
        } else {
            const TensorInfo& si = out.info(name);
            if (si.shape != wi.shape) LOFTQ_THROW(InputError, output_dir, ": tensor ", name, " has shape ", shape_string(si.shape));
            std::vector<float> stored = out.read_f32(name, FiniteCheck::reject);
            if (rep.backbone.empty())
                rep.backbone = si.dtype == DType::BF16 ? "bf16" : si.dtype == DType::F16 ? "fp16" : "fp32";
            const auto rf = report_format.find(name);
            const std::string fmt = rf == report_format.end() ? "nf4" : rf->second.first;
            const QuantFormat* f = find_format(fmt);
            if (f == nullptr) LOFTQ_THROW(InputError, output_dir, "/report.json: matrix ", name, " has format ", fmt);
            if (f->is_row_wise()) {
                requantized_int8 = true;
                vm.loaded_as = cat(dtype_name(si.dtype), " -> int8 (LLM.int8)");
                cast_as_loaded(load_dtype, stored);  // transformers' torch_dtype, then bitsandbytes' float16
                q = quantized_as_held(*f, static_cast<int>(vm.cols), false, stored, name);
                qlora = quantized_as_held(*f, static_cast<int>(vm.cols), false, w, name);
            } else if (f->is_bnb() || f->loads_through_nf4()) {
                requantized = true;
                const QuantFormat& held = f->is_bnb() ? *f : select_format("nf", 4);  // nf2 loads as nf4
                vm.loaded_as = cat(dtype_name(si.dtype), " -> ", held.name, "/64", load_dq ? " dq" : "",
                                   f->is_bnb() ? "" : " (nf2 values)");
                q = requantized_at_load(std::move(stored), load_dtype, held, load_dq, name);
                qlora = quantized_as_held(*f, 64, f->is_bnb() && load_dq, w, name);
            } else {
                stored_as_is = true;
                const int bs = rf == report_format.end() ? 64 : static_cast<int>(rf->second.second);
                vm.loaded_as = cat(dtype_name(si.dtype), " as stored (", fmt, ")");
                // transformers casts every floating tensor to torch_dtype; nothing re-quantizes these.
                cast_as_loaded(load_dtype, stored);
                q = std::move(stored);
                qlora = quantized_as_held(*f, bs, false, w, name);
            }
        }
        std::vector<float> a(static_cast<size_t>(r * vm.cols)), b(static_cast<size_t>(vm.rows * r));
        adapter.tensors().read_f32_into(lora_a_key(name), 0, a.size(), a.data(), FiniteCheck::reject);
        adapter.tensors().read_f32_into(lora_b_key(name), 0, b.size(), b.data(), FiniteCheck::reject);
        vm.qlora_error = relative_error(w, qlora);
        vm.loftq_error = loftq_error(w, q, a, b, vm.rows, vm.cols, r, static_cast<float>(vm.scaling));
        rep.matrices.push_back(std::move(vm));
    }
    if (requantized)
        rep.notes.push_back(cat("nf4/fp4 (and nf2, as nf4) matrices re-quantized from the stored values cast to ",
                                torch_dtype, " at blocksize 64, as BitsAndBytesConfig(load_in_4bit=True) does"));
    if (requantized_int8)
        rep.notes.push_back(cat("int8 matrices re-quantized from the stored values cast to ", torch_dtype,
                                " and then float16, one scale per row, as BitsAndBytesConfig(load_in_8bit=True) does"));
    if (int8)
        rep.notes.push_back("int8 backbone: codes and SCB loaded as stored (code * SCB / 127), as "
                            "from_pretrained(out) does with its quantization_config; QLoRA there is load_in_8bit of W");
    if (stored_as_is)
        rep.notes.push_back("nf8/uniform matrices are loaded as stored, with no re-quantization "
                            "(bitsandbytes cannot hold them); QLoRA there is the same LoftQ quantizer applied to W");
    return rep;
}

}  // namespace loftq
