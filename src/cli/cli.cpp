// Command-line parsing with Boost.Program_options: one options_description per subcommand,
// composed from shared groups, unknown options rejected with the option's name.
#include <boost/program_options.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <iostream>

#include "cli/config.hpp"
#include "core/error.hpp"

namespace po = boost::program_options;

namespace loftq {
namespace {

struct Command {
    const char* name;
    const char* synopsis;
};

constexpr Command kCommands[] = {
    {"quantize", "loftq quantize --model DIR --work RUN.h5 [options]   LoftQ into the run file (resumable)"},
    {"export", "loftq export --work RUN.h5 --model DIR --output DIR [--backbone bf16|fp16|fp32|bnb4|int8]"},
    {"run", "loftq run --model DIR --output DIR [options]             quantize + export in one job"},
    {"verify", "loftq verify --model DIR --output DIR [--json F]        error of the output as loaded"},
    {"inspect", "loftq inspect PATH                                     tensors of a file or folder"},
    {"merge", "loftq merge --base DIR --adapter DIR --output DIR [--to bf16|fp16|bnb4|loftq]   fold an adapter back"},
    {"synth", "loftq synth --output DIR [--preset P] [--layers N]       a synthetic checkpoint of a preset"},
};

// "5GB", "512MiB", "1e9", "4096": bytes.
uint64_t parse_size(const std::string& option, const std::string& text) {
    size_t pos = 0;
    double value = 0;
    try {
        value = std::stod(text, &pos);
    } catch (const std::exception&) {
        LOFTQ_THROW(ConfigError, "option --", option, ": '", text, "' is not a size (e.g. 5GB, 512MiB)");
    }
    std::string unit = text.substr(pos);
    for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    double mult = 0;
    if (unit.empty() || unit == "B") mult = 1;
    else if (unit == "KB") mult = 1e3;
    else if (unit == "MB") mult = 1e6;
    else if (unit == "GB") mult = 1e9;
    else if (unit == "TB") mult = 1e12;
    else if (unit == "KIB") mult = 1024.0;
    else if (unit == "MIB") mult = 1024.0 * 1024;
    else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
    else if (unit == "TIB") mult = 1024.0 * 1024 * 1024 * 1024;
    if (mult == 0 || !(value >= 0) || value * mult > 1.8e19)
        LOFTQ_THROW(ConfigError, "option --", option, ": '", text, "' is not a size (e.g. 5GB, 512MiB)");
    return static_cast<uint64_t>(value * mult);
}

// "q_proj,v_proj" -> its items. An empty list or an empty item ("", "q_proj,", "a,,b") is a
// mistake, not "all-linear": refused naming the option.
std::vector<std::string> split_list(const std::string& option, const std::string& text) {
    std::vector<std::string> out;
    size_t begin = 0;
    for (;;) {
        const size_t end = text.find(',', begin);
        out.push_back(text.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
        if (out.back().empty())
            LOFTQ_THROW(ConfigError, "option --", option, ": '", text, "' has an empty item (give a list like ",
                        "q_proj,v_proj, or all-linear)");
        if (end == std::string::npos) return out;
        begin = end + 1;
    }
}

// A seed as text: Boost would read "-1" into uint64_t as 2^64 - 1. Decimal digits only, < 2^64.
uint64_t parse_seed(const std::string& option, const std::string& text) {
    const bool digits = !text.empty() && text.size() <= 20 &&
                        text.find_first_not_of("0123456789") == std::string::npos;
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = digits ? std::strtoull(text.c_str(), &end, 10) : 0;
    if (!digits || errno == ERANGE || end != text.c_str() + text.size())
        LOFTQ_THROW(ConfigError, "option --", option, ": '", text, "' is not an integer in 0..2^64-1");
    return static_cast<uint64_t>(v);
}

// Options whose text is checked and converted after parsing (enums, sizes, lists).
struct RawStrings {
    std::string targets = "all-linear";
    std::string split_threshold = "0";
    std::string max_shard_size = "5GB";
    std::string svd = "auto";
    std::string power_scheme = "krylov";
    std::string backbone = "bf16";
    std::string io = "direct";
    std::string synth_dtype = "bf16";
    std::string seed = "0";
    std::vector<std::string> stray;  // positional arguments no command takes
};

po::options_description loftq_options(Config& c, RawStrings& raw) {
    RunSpec& s = c.spec;
    LoftqOptions& l = s.loftq;
    SvdOptions& v = l.svd_options;
    QuantizeOptions& q = c.quantize;
    po::options_description d("LoftQ options");
    d.add_options()
        ("bits", po::value(&s.bits)->default_value(s.bits), "bits per weight: 2, 4, 8, or mixed 2.25 / 2.5 / 3")
        ("quant", po::value(&s.quant)->default_value(s.quant), "quantizer: nf | fp4 | uniform | int8 (bitsandbytes LLM.int8, as load_in_8bit; implies --bits 8)")
        ("blocksize", po::value(&l.quant.blocksize)->default_value(l.quant.blocksize), "quantization block size (32..4096; int8: one scale per row)")
        ("rank", po::value(&v.rank)->default_value(v.rank), "LoRA rank r (1..65536)")
        ("iters", po::value(&l.iters)->default_value(l.iters), "LoftQ alternating steps T (1..1000)")
        ("targets", po::value(&raw.targets)->default_value(raw.targets), "all-linear or a list: q_proj,k_proj,...")
        ("svd", po::value(&raw.svd)->default_value(raw.svd), "auto | exact | randomized")
        ("oversample", po::value(&v.oversample)->default_value(v.oversample), "randomized SVD oversampling p (0..4096)")
        ("power-iters", po::value(&v.power_iters)->default_value(v.power_iters),
         "randomized SVD power iterations q of a fresh sketch, LoftQ's first step (0..64)")
        ("power-scheme", po::value(&raw.power_scheme)->default_value(raw.power_scheme),
         "krylov (the fresh step keeps all q + 1 blocks) | subspace (only the last)")
        ("warm-power-iters", po::value(&v.warm_power_iters)->default_value(v.warm_power_iters),
         "power iterations of the later steps, warm-started from the previous step's subspace (0..64)")
        ("seed", po::value(&raw.seed)->default_value(raw.seed), "seed of the random sketches (0..2^64-1)")
        ("lora-alpha", po::value(&l.lora_alpha)->default_value(l.lora_alpha),
         "LoRA alpha of the adapter (scaling alpha/r within 1e-6..1e6)")
        ("rslora", po::bool_switch(&l.rslora), "scaling alpha/sqrt(r) instead of alpha/r")
        ("double-quant", po::bool_switch(&l.quant.double_quant), "bitsandbytes double quantization of absmax")
        ("no-keep-best", "keep the last iterate as PEFT does, not the best")
        ("no-scale-compensation", "store A, B as PEFT does, ignoring the LoRA scaling")
        ("backbone", po::value(&raw.backbone)->default_value(raw.backbone), "form the backbone is loaded in: bf16 | fp16 | fp32 | bnb4 | int8")
        ("resume", po::bool_switch(&q.resume), "skip matrices complete in the run file")
        ("split-threshold", po::value(&raw.split_threshold)->default_value(raw.split_threshold),
         "matrices larger than this (float32 bytes) run on a group of ranks; 0 = never")
        ("io", po::value(&raw.io)->default_value(raw.io), "direct (each rank reads) | scatter (rank 0 reads)")
        ("device", po::value(&q.device)->default_value(q.device), "auto | cpu | cuda")
        ("log-json", po::value(&q.log_json), "write one JSON record per matrix to this file")
        ("watchdog", po::value(&q.watchdog)->default_value(q.watchdog),
         "end the job when a rank makes no progress for this many seconds (0 = off; more than the "
         "longest matrix takes)");
    return d;
}

po::options_description export_options(Config& c, RawStrings& raw) {
    po::options_description d("Export options");
    d.add_options()
        ("max-shard-size", po::value(&raw.max_shard_size)->default_value(raw.max_shard_size), "backbone shard size")
        ("adapter-dtype", po::value(&c.exp.adapter_dtype)->default_value(c.exp.adapter_dtype), "float32 | bfloat16 | float16")
        ("overwrite", po::bool_switch(&c.exp.overwrite), "replace an existing output folder");
    return d;
}

po::options_description command_options(const std::string& cmd, Config& c, RawStrings& raw) {
    po::options_description d(cat("loftq ", cmd, " options"));
    d.add_options()("help,h", "show this help");
    if (cmd == "quantize" || cmd == "run" || cmd == "export" || cmd == "verify")
        d.add_options()("model", po::value(&c.model_dir), "input checkpoint folder");
    if (cmd == "quantize" || cmd == "export")
        d.add_options()("work", po::value(&c.work_path), "HDF5 run file");
    if (cmd == "run") d.add_options()("work", po::value(&c.work_path), "HDF5 run file (default: <output>.run.h5)");
    if (cmd == "export" || cmd == "run" || cmd == "verify" || cmd == "synth")
        d.add_options()("output", po::value(&c.exp.output_dir), "output folder");
    if (cmd == "verify") d.add_options()("json", po::value(&c.json_path), "also write the report as JSON");
    if (cmd == "inspect") d.add_options()("path", po::value(&c.inspect_path), "a .safetensors file or a folder");
    if (cmd == "quantize" || cmd == "run") d.add(loftq_options(c, raw));
    if (cmd == "export") {
        po::options_description b("Backbone");
        b.add_options()("backbone", po::value(&raw.backbone), "bf16 | fp16 | fp32 | bnb4 | int8 (default: the run file's)");
        d.add(b);
    }
    if (cmd == "export" || cmd == "run") d.add(export_options(c, raw));
    if (cmd == "merge") {
        MergeOptions& m = c.merge;
        po::options_description g("Merge options");
        g.add_options()
            ("base", po::value(&m.base_dir), "the base model folder the adapter was trained on (bnb4, a loftq run "
             "backbone, or a 16-bit model)")
            ("adapter", po::value(&m.adapter_dir), "the PEFT LoRA adapter folder (adapter_config.json + "
             "adapter_model.safetensors)")
            ("output", po::value(&c.exp.output_dir), "output folder")
            ("work", po::value(&m.work_dir), "merge work folder, resumable (default: <output>.merge-work)")
            ("to", po::value(&m.to)->default_value(m.to),
             "bf16 | fp16: a plain model; bnb4: a bitsandbytes 4-bit model (PEFT's merge on a 4-bit base); loftq: a new LoftQ on the merged weights (backbone + loftq_init, LoftQ "
             "options below; run file <output>.run.h5)")
            ("base-load", po::value(&m.base_load)->default_value(m.base_load),
             "how the base holds its weights: auto | bnb4 | nf4 | fp4 | as-stored")
            ("base-double-quant", po::bool_switch(&m.base_double_quant),
             "with --base-load nf4|fp4: bnb_4bit_use_double_quant at load");
        d.add(g).add(loftq_options(c, raw)).add(export_options(c, raw));
    }
    if (cmd == "synth") {
        SynthOptions& y = c.synth;
        po::options_description s("Synth options");
        s.add_options()
            ("preset", po::value(&y.preset)->default_value(y.preset), "tiny | llama2-7b | llama2-13b | llama2-70b | codellama-70b | llama3-70b | qwen2.5-72b | mixtral-8x22b")
            ("layers", po::value(&y.layers)->default_value(y.layers), "decoder layers (0 = the preset's)")
            ("seed", po::value(&raw.seed)->default_value(raw.seed), "seed of the weights (0..2^64-1)")
            ("dtype", po::value(&raw.synth_dtype)->default_value(raw.synth_dtype), "bf16 | fp16 | fp32")
            ("max-shard-size", po::value(&raw.max_shard_size)->default_value(raw.max_shard_size), "shard size");
        d.add(s);
    }
    return d;
}

// The options given as text, checked and stored in their typed fields.
void apply_raw(const std::string& cmd, const po::variables_map& vm, const RawStrings& raw, Config& cfg) {
    const bool loftq_cmd = cmd == "quantize" || cmd == "run" || cmd == "merge";
    if (vm.count("no-keep-best")) cfg.spec.loftq.keep_best = false;
    if (vm.count("no-scale-compensation")) cfg.spec.loftq.compensate_scaling = false;
    if (!raw.stray.empty())
        LOFTQ_THROW(ConfigError, "loftq ", cmd, ": unexpected argument '", raw.stray.front(),
                    "' (options start with --)");
    if (vm.count("targets") && raw.targets != "all-linear") cfg.spec.targets = split_list("targets", raw.targets);
    if (vm.count("seed")) {
        const uint64_t seed = parse_seed("seed", raw.seed);
        if (cmd == "synth") cfg.synth.seed = seed;
        else cfg.spec.loftq.svd_options.seed = seed;
    }
    if (vm.count("split-threshold")) cfg.spec.split_threshold = parse_size("split-threshold", raw.split_threshold);
    if (vm.count("max-shard-size"))
        cfg.exp.max_shard_size = cfg.synth.max_shard_size = parse_size("max-shard-size", raw.max_shard_size);
    if (loftq_cmd && cfg.spec.quant == "int8" && vm["bits"].defaulted()) cfg.spec.bits = 8;  // LLM.int8 is 8-bit
    if (loftq_cmd) {
        require_one_of("svd", raw.svd, {"auto", "exact", "randomized"});
        cfg.spec.loftq.svd = parse_svd_choice(raw.svd);
        require_one_of("power-scheme", raw.power_scheme, {"krylov", "subspace"});
        cfg.spec.loftq.svd_options.scheme = parse_power_scheme(raw.power_scheme);
        require_one_of("io", raw.io, {"direct", "scatter"});
        cfg.quantize.io = raw.io == "scatter" ? IoMode::scatter : IoMode::direct;
    }
    if (loftq_cmd || (cmd == "export" && vm.count("backbone"))) {
        require_one_of("backbone", raw.backbone, {"bf16", "fp16", "fp32", "bnb4", "int8"});
        const Backbone b = parse_backbone(raw.backbone);
        if (loftq_cmd) cfg.spec.loftq.backbone = b;  // run: its export writes the run's own form
        else cfg.exp.backbone = b;
    }
    if (cmd == "synth") {
        require_one_of("dtype", raw.synth_dtype, {"bf16", "fp16", "fp32"});
        cfg.synth.dtype = raw.synth_dtype == "fp32" ? DType::F32 : raw.synth_dtype == "fp16" ? DType::F16 : DType::BF16;
    }
}

}  // namespace

std::string usage_text() {
    std::string s = "usage: loftq <command> [options]   (loftq <command> --help for its options)\n";
    for (const auto& c : kCommands) s += cat("  ", c.synopsis, "\n");
    return s;
}

bool parse_command_line(int argc, const char* const* argv, Config& cfg) {
    if (argc < 2) LOFTQ_THROW(ConfigError, "missing command; run 'loftq --help'");
    const std::string cmd = argv[1];
    const bool speaker = process_rank() == 0;
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        if (speaker) std::cout << usage_text();
        return false;
    }
    bool known = false;
    for (const auto& c : kCommands) known = known || cmd == c.name;
    if (!known) LOFTQ_THROW(ConfigError, "unknown command '", cmd, "'; run 'loftq --help'");
    cfg.command = cmd;

    RawStrings raw;
    po::options_description desc = command_options(cmd, cfg, raw);
    // Positional arguments no command takes land in a hidden option, so the error can name them
    // (Boost's own says only "too many positional options").
    po::options_description hidden;
    hidden.add_options()("stray-argument", po::value(&raw.stray));
    po::options_description all;
    all.add(desc).add(hidden);
    po::positional_options_description pos;
    if (cmd == "inspect") pos.add("path", 1);
    pos.add("stray-argument", -1);
    po::variables_map vm;
    try {
        std::vector<std::string> args(argv + 2, argv + argc);
        po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
        if (vm.count("help")) {
            if (speaker) std::cout << usage_text() << "\n" << desc << "\n";
            return false;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        LOFTQ_THROW(ConfigError, "loftq ", cmd, ": ", e.what());
    }
    apply_raw(cmd, vm, raw, cfg);
    cfg.validate();
    return true;
}

}  // namespace loftq
