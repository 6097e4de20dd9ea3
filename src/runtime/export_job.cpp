#include "runtime/export_job.hpp"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/interrupt.hpp"
#include "core/parallel.hpp"
#include "io/checkpoint.hpp"
#include "io/export_format.hpp"
#include "io/fingerprint.hpp"
#include "io/json_strict.hpp"
#include "io/output_folder.hpp"
#include "io/runfile.hpp"
#include "io/safetensors_writer.hpp"
#include "plan/checkpoint_layout.hpp"
#include "plan/model_config.hpp"
#include "plan/plan.hpp"
#include "quant/format_tables.hpp"
#include "quant/quantize.hpp"
#include "quant/quantize_fast.hpp"
#include "runtime/collective.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

using Clock = std::chrono::steady_clock;

// Files of a model folder that transformers reads besides the weights.
bool is_tokenizer_or_generation_file(const std::string& name) {
    static const char* const kExact[] = {"special_tokens_map.json", "added_tokens.json", "generation_config.json",
                                         "vocab.json", "merges.txt", "chat_template.json", "chat_template.jinja"};
    for (const char* e : kExact)
        if (name == e) return true;
    return name.rfind("tokenizer", 0) == 0;
}


template <typename T>
void write_vector(ShardedSafetensorsWriter& w, const std::string& name, const std::vector<T>& v) {
    w.write(name, v.data(), v.size() * sizeof(T));
}

// v (n floats) in dtype t into out (n items), narrowed over OpenMP in chunks (element-wise: the
// same bytes).
void narrow_into(DType t, const float* v, size_t n, uint8_t* out) {
    constexpr int64_t kChunk = int64_t{1} << 16;
    const auto count = static_cast<int64_t>(n);
    const size_t item = dtype_size(t);
#pragma omp parallel for schedule(static) if (count >= kParallelMinElements)
    for (int64_t c = 0; c < count; c += kChunk)
        narrow_from_f32(t, v + c, static_cast<size_t>(std::min(kChunk, count - c)), out + static_cast<size_t>(c) * item);
}

std::unique_ptr<uint8_t[]> narrowed(DType t, const float* v, size_t n) {
    std::unique_ptr<uint8_t[]> out(new uint8_t[n * dtype_size(t)]);
    narrow_into(t, v, n, out.get());
    return out;
}

// A matrix of a bf16 / fp16 / fp32 backbone: the values backbone_values gives (table[code] *
// absmax before any double quantization), made and narrowed a run of whole blocks at a time
// (about 1 MB of float32) into buffers reused for the next run, and appended. The export holds
// no float32 or narrowed copy of the whole matrix (6 bytes per element that were allocated and
// faulted in before). A block size whose blocks do not start on a byte of the codes (none of
// the formats; checked) goes in one run.
void write_float_backbone(ShardedSafetensorsWriter& w, const std::string& name, const QuantFormat& f,
                          const MatrixLayout& m, const MatrixRecord& rec, DType dtype) {
    const int64_t n = m.rows * m.cols, bs = m.blocksize;
    const int64_t run = (bs * f.bits) % 8 == 0 ? std::max<int64_t>(1, (int64_t{1} << 18) / bs) * bs : n;
    const size_t item = dtype_size(dtype);
    std::vector<float> values(static_cast<size_t>(std::min(run, n)));
    const std::unique_ptr<uint8_t[]> bytes(new uint8_t[values.size() * item]);
    for (int64_t e0 = 0; e0 < n; e0 += run) {
        const int64_t len = std::min(run, n - e0);
        dequantize_fast(f, static_cast<int>(bs), rec.codes.data() + e0 * f.bits / 8, rec.absmax.data() + e0 / bs,
                        len, values.data());
        narrow_into(dtype, values.data(), static_cast<size_t>(len), bytes.get());
        w.append(name, bytes.get(), static_cast<uint64_t>(len) * item);
    }
}

// Checks the run file against the model: every matrix complete, present, 2-D, of its shape.
void check_run_against_model(const RunFile& run, const Checkpoint& ck, const std::string& work) {
    const auto complete = run.complete_flags();
    size_t missing = 0, first = 0;
    for (size_t i = 0; i < complete.size(); ++i)
        if (!complete[i] && missing++ == 0) first = i;
    if (missing > 0)
        LOFTQ_THROW(InputError, "run file '", work, "': ", missing, " of ", complete.size(),
                    " matrices are not complete (first: ", run.layout()[first].name,
                    "); finish them with `loftq quantize --resume`");
    for (const auto& m : run.layout()) {
        if (!ck.contains(m.name))
            LOFTQ_THROW(InputError, "run file '", work, "': matrix ", m.name, " is not in the model ", ck.path());
        const TensorInfo& t = ck.info(m.name);
        if (t.shape != std::vector<int64_t>{m.rows, m.cols} || !is_float_weight_dtype(t.dtype))
            LOFTQ_THROW(InputError, "run file '", work, "': matrix ", m.name, " is ", m.rows, "x", m.cols,
                        " but the model holds ", dtype_name(t.dtype), " ", shape_string(t.shape));
    }
}

void check_record(const MatrixRecord& r, const MatrixLayout& m, const std::string& work) {
    const bool ok = static_cast<int64_t>(r.codes.size()) == m.codes_bytes &&
                    (m.double_quant ? static_cast<int64_t>(r.absmax_codes.size()) == m.nblocks
                                    : static_cast<int64_t>(r.absmax.size()) == m.nblocks) &&
                    static_cast<int64_t>(r.A.size()) == m.rank * m.cols &&
                    static_cast<int64_t>(r.B.size()) == m.rows * m.rank;
    if (!ok) LOFTQ_THROW(InputError, "run file '", work, "': matrix ", m.name, " has datasets of the wrong size");
}

// A complete matrix is exported only when it is intact (its checksum), finite, and made from this
// model (its fingerprint): a damaged or forged run file, or another model with the same names and
// shapes, would otherwise give an output that loads and is silently wrong.
void verify_record(const MatrixRecord& r, const Checkpoint& ck, const std::string& work) {
    const MatrixLayout& m = r.layout;
    check_record_integrity(r, work);
    if (tensor_fingerprint(ck, m.name) != r.fingerprint)
        LOFTQ_THROW(ConfigError, "run file ", work, " was made from another model: tensor ", m.name,
                    " differs from the one in ", ck.path());
}

// Everything the report and the load instructions say.
nlohmann::json report_matrix(const MatrixRecord& r) {
    nlohmann::json timings;
    for (size_t p = 0; p < kTimingPhases.size(); ++p) timings[kTimingPhases[p]] = r.timings[p];
    const MatrixLayout& m = r.layout;
    return {{"name", m.name},
            {"shape", {m.rows, m.cols}},
            {"bits", m.bits},
            {"format", m.format},
            {"blocksize", m.blocksize},
            {"rank", m.rank},
            {"qlora_error", r.qlora_error},
            {"loftq_error", r.loaded_error},
            {"chosen_iteration", r.chosen_iteration},
            {"iteration_error", r.iteration_error},
            {"timings", timings}};
}

}  // namespace

nlohmann::json error_totals(const nlohmann::json& matrices) {
    double q_sum = 0, l_sum = 0, q_sq = 0, l_sq = 0, n_sum = 0;
    int worse = 0;
    for (const auto& m : matrices) {
        const double q = m["qlora_error"], l = m["loftq_error"];
        const double n = m["shape"][0].get<double>() * m["shape"][1].get<double>();
        q_sum += q, l_sum += l, q_sq += q * q * n, l_sq += l * l * n, n_sum += n;
        worse += l > q ? 1 : 0;
    }
    const double k = matrices.empty() ? 1.0 : static_cast<double>(matrices.size());
    return {{"matrices", matrices.size()},
            {"mean_qlora_error", q_sum / k},
            {"mean_loftq_error", l_sum / k},
            {"rms_qlora_error", n_sum > 0 ? std::sqrt(q_sq / n_sum) : 0.0},
            {"rms_loftq_error", n_sum > 0 ? std::sqrt(l_sq / n_sum) : 0.0},
            {"worse_than_qlora", worse}};
}

namespace {

// How to load the backbone so that it holds the optimised Q, and what the exporter says about it.
nlohmann::json load_block(Backbone bb, const RunLayout& layout, const std::string& compute_dtype,
                          nlohmann::json& notes) {
    bool any_bnb = false, any_loftq = false, any_nf2 = false;
    for (const auto& m : layout) {
        const QuantFormat& f = *find_format(m.format);
        (f.is_bnb() || f.loads_through_nf4() ? any_bnb : any_loftq) = true;
        any_nf2 = any_nf2 || f.loads_through_nf4();
    }
    const MatrixLayout& m0 = layout.front();
    nlohmann::json load{{"backbone", backbone_name(bb)}, {"torch_dtype", compute_dtype}};
    if (any_nf2)
        notes.push_back("nf2 matrices load through bitsandbytes NF4: NF2's values are NF4 values and a block keeps "
                        "its absmax, so load_in_4bit nf4 holds them exactly (2-bit information in 4-bit storage, "
                        "as LoftQ's released 2-bit models); one BitsAndBytesConfig serves every matrix");
    if (bb == Backbone::BNB4) {
        load["requantize"] = false;
        notes.push_back(cat("bnb4 backbone: bitsandbytes' pre-quantized ", bnb4_quant_type(*find_format(m0.format)),
                            " serialization with quantization_config in config.json; loads with no re-quantization"));
        return load;
    }
    if (find_format(m0.format)->is_row_wise()) {  // int8 runs hold int8 only (RunSpec)
        if (bb == Backbone::INT8) {
            load["requantize"] = false;
            notes.push_back("int8 backbone: bitsandbytes' LLM.int8 serialization (int8 weight + SCB, as transformers "
                            "saves load_in_8bit models) with quantization_config in config.json; "
                            "from_pretrained(out) loads it with no re-quantization");
        } else {
            load["requantize"] = true;
            load["load_in_8bit"] = true;
            notes.push_back(cat(backbone_name(bb), " backbone: load with BitsAndBytesConfig(load_in_8bit=True)",
                                ": the stored values re-quantize (LLM.int8, one scale per row) to exactly the Q "
                                "LoftQ optimised"));
        }
        return load;
    }
    if (any_bnb) {
        load["requantize"] = true;
        load["bnb_4bit_quant_type"] = "nf4";
        for (const auto& m : layout)
            if (find_format(m.format)->is_bnb()) load["bnb_4bit_quant_type"] = m.format;  // nf2 loads as nf4
        load["bnb_4bit_use_double_quant"] = false;
        load["bnb_4bit_compute_dtype"] = compute_dtype;
        notes.push_back(cat(backbone_name(bb), " backbone: load with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"",
                            load["bnb_4bit_quant_type"].get<std::string>(),
                            "\", bnb_4bit_use_double_quant=False, bnb_4bit_compute_dtype=torch.", compute_dtype,
                            ") and torch_dtype=torch.", compute_dtype,
                            ": the stored values re-quantize (blocksize 64) to exactly the Q LoftQ optimised"));
    } else {
        load["requantize"] = false;
    }
    if (any_loftq) {
        std::map<std::string, int> formats;
        for (const auto& m : layout)
            if (!find_format(m.format)->is_bnb() && !find_format(m.format)->loads_through_nf4()) formats[m.format] = m.bits;
        for (const auto& [f, bits] : formats)
            notes.push_back(cat(f, " matrices stored dequantized in ", backbone_name(bb), ": bitsandbytes cannot hold ",
                                bits, "-bit pre-quantized; they are as optimised only when loaded without re-quantization",
                                bits == 8 ? " (no quantization_config: no memory saved; load_in_8bit would re-quantize "
                                            "them with LLM.int8 and load a worse Q than load_in_8bit of the original: "
                                            "for load_in_8bit run with --quant int8)"
                                          : ""));
        if (any_bnb)
            notes.push_back("mixed precision: no single BitsAndBytesConfig loads both kinds as optimised "
                            "(skip the dequantized modules with llm_int8_skip_modules)");
    }
    return load;
}

}  // namespace

ExportOutcome export_run(const ExportRequest& req) {
    const auto t0 = Clock::now();
    const RunFile run = RunFile::open_read(req.work_path);
    const RunLayout& layout = run.layout();
    if (layout.empty()) LOFTQ_THROW(InputError, "run file '", req.work_path, "' holds no matrices");
    const RunSpec spec = RunSpec::from_json(run.options_json(), cat("run file '", req.work_path, "'"));
    const Backbone bb = resolve_export_backbone(req.options.backbone, spec.loftq.backbone, layout, req.work_path);
    const DType adapter_dtype = torch_dtype_to_dtype(req.options.adapter_dtype, "adapter dtype");

    std::error_code ec;
    if (fs::exists(req.options.output_dir, ec) && fs::equivalent(req.options.output_dir, req.model_dir, ec))
        LOFTQ_THROW_SETTING("output", "'", req.options.output_dir, "' is the input model folder");
    const Checkpoint ck(req.model_dir);
    ck.validate_all();
    check_run_against_model(run, ck, req.work_path);
    const ModelConfig mc = read_model_config(req.model_dir);
    // transformers >= 4.56 writes "dtype" where older versions wrote "torch_dtype".
    const bool new_key = !mc.source.contains("torch_dtype") && mc.source.contains("dtype") && mc.source["dtype"].is_string();
    const std::string model_dtype = new_key ? mc.source["dtype"].get<std::string>() : mc.torch_dtype;

    // config.json: the input's, plus how the backbone loads.
    nlohmann::json config = mc.source;
    // A float backbone loads as optimised when transformers' cast to torch_dtype keeps its values:
    // the input's torch_dtype stays when it holds the backbone dtype exactly (same, or float32),
    // else torch_dtype becomes the backbone dtype.
    const DType model_d = torch_dtype_to_dtype(model_dtype, cat(req.model_dir, "/config.json torch_dtype"));
    std::string load_dtype = model_dtype;
    if (bb == Backbone::BNB4) {
        config["quantization_config"] = bnb4_quantization_config(bnb4_quant_type(*find_format(layout.front().format)),
                                                                 layout.front().double_quant, model_dtype);
    } else if (bb == Backbone::INT8) {
        config["quantization_config"] = int8_quantization_config();
    } else if (const DType d = backbone_dtype(bb); !(d == model_d || model_d == DType::F32)) {
        load_dtype = dtype_to_torch_name(d);
        config[new_key ? "dtype" : "torch_dtype"] = load_dtype;
    }

    // Every tensor's spec, in name order; the targets as the backbone form stores them.
    std::map<std::string, size_t> target;
    for (size_t i = 0; i < layout.size(); ++i) target[layout[i].name] = i;
    auto state_of = [&](const MatrixLayout& m, float offset) {
        return bnb4_quant_state_json({bnb4_quant_type(*find_format(m.format)), m.blocksize, model_dtype, m.rows, m.cols,
                                      m.double_quant, offset});
    };
    std::vector<TensorSpec> specs, adapter_specs;
    std::vector<bool> keep_with_previous;
    AdapterSettings adapter;
    adapter.base_model = req.model_dir;
    adapter.lora_alpha = spec.loftq.lora_alpha;
    adapter.rslora = spec.loftq.rslora;
    adapter.bits = spec.bits;
    adapter.iters = spec.loftq.iters;
    for (const auto& name : ck.names()) {
        const auto it = target.find(name);
        if (it == target.end()) {
            const TensorInfo& t = ck.info(name);
            specs.push_back({name, t.dtype, t.shape});
            continue;
        }
        const MatrixLayout& m = layout[it->second];
        if (bb == Backbone::BNB4 || bb == Backbone::INT8) {
            for (auto& s : bb == Backbone::BNB4 ? bnb4_tensor_specs(m, state_of(m, 0.0f).size()) : int8_tensor_specs(m)) {
                keep_with_previous.resize(specs.size() + 1, false);
                keep_with_previous.back() = s.name != name;  // components share the weight's shard
                specs.push_back(std::move(s));
            }
        } else {
            specs.push_back({name, backbone_dtype(bb), {m.rows, m.cols}});
        }
        adapter_specs.push_back({lora_a_key(name), adapter_dtype, {m.rank, m.cols}});
        adapter_specs.push_back({lora_b_key(name), adapter_dtype, {m.rows, m.rank}});
        adapter.module_ranks.emplace_back(module_path(name), m.rank);
    }

    OutputFolder out(req.options.output_dir, req.options.overwrite);
    fs::create_directory(out / "loftq_init");
    keep_with_previous.resize(specs.size(), false);
    ShardedSafetensorsWriter backbone(out.temp_path(), specs, req.options.max_shard_size, default_metadata(), keep_with_previous);
    SafetensorsWriter adapter_file(out / "loftq_init/adapter_model.safetensors", adapter_specs);
    nlohmann::json matrices = nlohmann::json::array();
    const std::string stopped = cat("export to ", req.options.output_dir, ": nothing written; ", req.work_path,
                                    " is kept, export it again with loftq export");
    for (const auto& name : ck.names()) {
        throw_if_interrupted(stopped);
        const auto it = target.find(name);
        if (it == target.end()) {
            backbone.write(name, ck.raw(name), ck.info(name).nbytes());
            continue;
        }
        const MatrixLayout& m = layout[it->second];
        const MatrixRecord rec = run.read_matrix(it->second);
        check_record(rec, m, req.work_path);
        verify_record(rec, ck, req.work_path);
        const QuantFormat& f = *find_format(m.format);
        if (bb == Backbone::BNB4) {
            if (f.loads_through_nf4()) {
                std::vector<uint8_t> nf4_codes(static_cast<size_t>((m.rows * m.cols + 1) / 2));
                nf2_codes_as_nf4(rec.codes.data(), m.rows * m.cols, nf4_codes.data());
                write_vector(backbone, name, nf4_codes);
            } else {
                write_vector(backbone, name, rec.codes);
            }
            if (m.double_quant) write_vector(backbone, name + ".absmax", rec.absmax_codes);
            else write_vector(backbone, name + ".absmax", rec.absmax);
            backbone.write(name + ".quant_map", find_format(bnb4_quant_type(f))->table, 16 * sizeof(float));
            if (m.double_quant) {
                write_vector(backbone, name + ".nested_absmax", rec.nested_absmax);
                backbone.write(name + ".nested_quant_map", tables::kDynamicSigned8, 256 * sizeof(float));
            }
            const std::string state = state_of(m, rec.nested_offset);
            backbone.write(name + ".quant_state.bitsandbytes__" + bnb4_quant_type(f), state.data(), state.size());
        } else if (bb == Backbone::INT8) {
            write_vector(backbone, name, rec.codes);  // int8 bit patterns
            write_vector(backbone, int8_scb_key(name), rec.absmax);
            const uint8_t row_major = 0;
            backbone.write(int8_weight_format_key(name), &row_major, 1);
        } else {
            write_float_backbone(backbone, name, f, m, rec, backbone_dtype(bb));
        }
        const size_t item = dtype_size(adapter_dtype);
        adapter_file.write(lora_a_key(name), narrowed(adapter_dtype, rec.A.data(), rec.A.size()).get(), rec.A.size() * item);
        adapter_file.write(lora_b_key(name), narrowed(adapter_dtype, rec.B.data(), rec.B.size()).get(), rec.B.size() * item);
        matrices.push_back(report_matrix(rec));
    }
    backbone.finish();
    adapter_file.finish();

    write_file_synced(out / "config.json", config.dump(2) + "\n");
    write_file_synced(out / "loftq_init/adapter_config.json", adapter_config_json(adapter).dump(2) + "\n");
    copy_tokenizer_files(req.model_dir, out.temp_path());

    ExportOutcome outcome;
    outcome.output_dir = out.final_path();
    outcome.backbone = backbone_name(bb);
    outcome.matrices = static_cast<int>(layout.size());
    outcome.shards = static_cast<int>(backbone.shards().size());
    nlohmann::json notes = nlohmann::json::array();
    nlohmann::json report;
    report["options"] = nlohmann::json::parse(spec.to_json());
    report["export"] = {{"work", req.work_path}, {"model", req.model_dir}, {"backbone", outcome.backbone},
                        {"adapter-dtype", req.options.adapter_dtype}, {"max-shard-size", req.options.max_shard_size},
                        {"shards", outcome.shards}};
    report["load"] = load_block(bb, layout, load_dtype, notes);
    // MoE: what the clients keep in 16-bit (dense models: only embeddings and the head, as always).
    const KeptSummary kept = kept_in_16bit(read_catalogue(ck));
    if (kept.has_moe()) report["kept_16bit"] = kept.to_json();
    if (kept.has_moe())
        notes.push_back(cat("MoE: kept in 16-bit as transformers + bitsandbytes hold them (transformers 5 fuses the "
                            "experts into 3-D parameters that bitsandbytes does not quantize and PEFT's all-linear "
                            "does not target): ", kept.text()));
    report["matrices"] = matrices;
    report["totals"] = error_totals(matrices);
    report["notes"] = notes;
    outcome.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report["timings"] = {{"export_seconds", outcome.seconds}};
    write_file_synced(out / "report.json", report.dump(2) + "\n");
    throw_if_interrupted(stopped);
    out.commit();
    return outcome;
}

void run_export(const ExportRequest& req) {
    const std::string line = root_computes(MPI_COMM_WORLD, 0, [&] {
        const ExportOutcome o = export_run(req);
        return cat("[loftq] exported ", o.matrices, " matrices to ", o.output_dir, " (", o.backbone, " backbone, ",
                   o.shards, o.shards == 1 ? " shard" : " shards", ", loftq_init/ adapter) in ", o.seconds, " s\n");
    });
    if (process_rank() == 0) {
        std::fputs(line.c_str(), stdout);
        std::fflush(stdout);
    }
}

void copy_tokenizer_files(const std::string& model_dir, const std::string& folder) {
    std::error_code ec;
    if (fs::is_directory(model_dir, ec))
        for (const auto& e : fs::directory_iterator(model_dir)) {
            const std::string n = e.path().filename().string();
            if (e.is_regular_file() && is_tokenizer_or_generation_file(n)) copy_file_synced(e.path().string(), folder + "/" + n);
        }
}

std::string default_work_path(const std::string& output_dir) {
    std::string out = output_dir;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out + ".run.h5";
}

void check_run_backbone(const RunSpec& spec) {
    RunLayout layout;
    const std::vector<int> bits = spec.mixed_bits() ? std::vector<int>{4, 2} : std::vector<int>{static_cast<int>(spec.bits)};
    for (const int b : bits) {
        MatrixLayout m;
        m.name = cat("(", b, "-bit matrices)");
        m.bits = b;
        m.format = select_format(spec.quant, b).name;
        m.blocksize = spec.loftq.quant.blocksize;
        m.double_quant = spec.loftq.quant.double_quant;
        layout.push_back(m);
    }
    resolve_export_backbone(std::nullopt, spec.loftq.backbone, layout, "(this run)");
}

}  // namespace loftq
