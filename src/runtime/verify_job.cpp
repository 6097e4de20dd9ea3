#include "runtime/verify_job.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/export_format.hpp"
#include "io/held_weight.hpp"
#include "io/json_strict.hpp"
#include "io/peft_adapter.hpp"
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

template <typename T>
T field(const nlohmann::json& j, const char* key, const std::string& file) {
    if (!j.is_object() || !j.contains(key)) LOFTQ_THROW(InputError, file, ": missing field \"", key, "\"");
    try {
        return j.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
        LOFTQ_THROW(InputError, file, ": field \"", key, "\" has the wrong type");
    }
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
    const std::string adapter_dir = output_dir + "/loftq_init";
    const std::string acfg_path = adapter_dir + "/adapter_config.json";
    const std::string afile_path = adapter_dir + "/adapter_model.safetensors";
    const nlohmann::json config = read_json_file(config_path, "file");
    const nlohmann::json acfg = read_json_file(acfg_path, "file");
    const nlohmann::json report = read_optional_json_file(output_dir + "/report.json");

    const bool bnb4 = config.is_object() && config.contains("quantization_config");
    bool load_dq = false;
    if (bnb4) {
        const auto& qc = config["quantization_config"];
        if (field<std::string>(qc, "quant_method", config_path) != "bitsandbytes" || !field<bool>(qc, "load_in_4bit", config_path))
            LOFTQ_THROW(InputError, config_path, ": quantization_config is not bitsandbytes 4-bit");
    } else if (report.is_object() && report.contains("load")) {
        load_dq = report["load"].value("bnb_4bit_use_double_quant", false);
    }
    const std::string torch_dtype = !config.is_object() ? "float32"
                                    : config.contains("torch_dtype") ? config.value("torch_dtype", std::string("float32"))
                                                                     : config.value("dtype", std::string("float32"));
    const DType load_dtype = torch_dtype_to_dtype(torch_dtype, config_path + " torch_dtype");
    if (field<bool>(acfg, "init_lora_weights", acfg_path) != true)
        LOFTQ_THROW(InputError, acfg_path, ": init_lora_weights is not true: PEFT would re-initialise the adapter at load");
    const int64_t r_default = field<int64_t>(acfg, "r", acfg_path);
    const double alpha_default = field<double>(acfg, "lora_alpha", acfg_path);
    const bool rslora = acfg.value("use_rslora", false);
    const nlohmann::json rank_pattern = acfg.value("rank_pattern", nlohmann::json::object());
    const nlohmann::json alpha_pattern = acfg.value("alpha_pattern", nlohmann::json::object());

    std::map<std::string, std::pair<std::string, int64_t>> report_format;  // name -> (format, blocksize)
    if (report.is_object() && report.contains("matrices") && report["matrices"].is_array())
        for (const auto& m : report["matrices"])
            report_format[m.value("name", std::string())] = {m.value("format", std::string("nf4")), m.value("blocksize", int64_t{64})};

    const SafetensorsFile adapter(afile_path);
    std::map<std::string, int> lora;  // tensor name -> seen A (1) | B (2)
    for (const auto& t : adapter.tensors()) {
        char which = 0;
        const std::string name = tensor_of_lora_key(t.name, which);
        if (name.empty()) LOFTQ_THROW(InputError, afile_path, ": tensor ", t.name, " is not a PEFT lora_A/lora_B key");
        lora[name] |= which == 'A' ? 1 : 2;
    }
    const Checkpoint model(model_dir), out(output_dir);
    bool stored_as_is = false, requantized = false;
    rep.backbone = bnb4 ? "bnb4" : "";
    for (const auto& [name, seen] : lora) {
        if (seen != 3) LOFTQ_THROW(InputError, afile_path, ": module of ", name, " lacks lora_A or lora_B");
        const TensorInfo& wi = model.info(name);
        if (wi.shape.size() != 2) LOFTQ_THROW(InputError, model_dir, ": tensor ", name, " is not 2-D");
        VerifiedMatrix vm;
        vm.name = name;
        vm.rows = wi.shape[0];
        vm.cols = wi.shape[1];
        const std::vector<float> w = model.read_f32(name, FiniteCheck::reject);

        const std::string path = module_path(name);
        const nlohmann::json* rp = peft_pattern_for(rank_pattern, path);
        const nlohmann::json* ap = peft_pattern_for(alpha_pattern, path);
        const int64_t r = rp ? rp->get<int64_t>() : r_default;
        const double alpha = ap ? ap->get<double>() : alpha_default;
        const TensorInfo& ai = adapter.info(lora_a_key(name));
        const TensorInfo& bi = adapter.info(lora_b_key(name));
        if (ai.shape != std::vector<int64_t>{r, vm.cols} || bi.shape != std::vector<int64_t>{vm.rows, r})
            LOFTQ_THROW(InputError, afile_path, ": ", name, " lora_A is ", shape_string(ai.shape), ", lora_B is ",
                        shape_string(bi.shape), "; adapter_config r = ", r, " needs [", r, ", ", vm.cols, "] and [",
                        vm.rows, ", ", r, "]");
        vm.scaling = rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);

        std::vector<float> q, qlora;
        if (bnb4) {
            const Bnb4Stored st = read_bnb4_state(out, name);
            if (st.rows != vm.rows || st.cols != vm.cols)
                LOFTQ_THROW(InputError, out.path(), " tensor ", name, ": quant_state shape is not [", vm.rows, ", ",
                            vm.cols, "]");
            q = dequantize_bnb4_weight(out, name, st);
            vm.loaded_as = cat("bnb4 ", st.quant_type, "/", st.blocksize, st.nested ? " dq" : "");
            qlora = quantized_as_held(*find_format(st.quant_type), static_cast<int>(st.blocksize), st.nested, w, name);
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
            if (f->is_bnb()) {
                requantized = true;
                vm.loaded_as = cat(dtype_name(si.dtype), " -> ", fmt, "/64", load_dq ? " dq" : "");
                q = requantized_at_load(std::move(stored), load_dtype, *f, load_dq, name);
                qlora = quantized_as_held(*f, 64, load_dq, w, name);
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
        adapter.read_f32_into(lora_a_key(name), 0, a.size(), a.data(), FiniteCheck::reject);
        adapter.read_f32_into(lora_b_key(name), 0, b.size(), b.data(), FiniteCheck::reject);
        vm.qlora_error = relative_error(w, qlora);
        vm.loftq_error = loftq_error(w, q, a, b, vm.rows, vm.cols, r, static_cast<float>(vm.scaling));
        rep.matrices.push_back(std::move(vm));
    }
    if (rep.matrices.empty()) LOFTQ_THROW(InputError, afile_path, ": no LoRA modules");
    if (requantized)
        rep.notes.push_back(cat("nf4/fp4 matrices re-quantized from the stored values cast to ", torch_dtype,
                                " at blocksize 64, as BitsAndBytesConfig(load_in_4bit=True) does"));
    if (stored_as_is)
        rep.notes.push_back("nf2/nf8/uniform matrices are loaded as stored, with no re-quantization "
                            "(bitsandbytes cannot hold them); QLoRA there is the same LoftQ quantizer applied to W");
    return rep;
}

}  // namespace loftq
