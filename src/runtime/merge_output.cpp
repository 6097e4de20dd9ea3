#include "runtime/merge_output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "io/export_format.hpp"
#include "io/json_strict.hpp"
#include "io/output_folder.hpp"
#include "io/safetensors_writer.hpp"
#include "runtime/export_job.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

std::vector<TensorSpec> specs_of(const MergePlan& plan, int shard) {
    std::vector<TensorSpec> out;
    for (const auto& it : plan.items)
        for (const auto& o : it.outputs)
            if (shard < 0 || o.shard == shard) out.push_back({o.name, o.dtype, o.shape});
    return out;
}

// A file of `size` bytes starting with `head`, created (never replacing one) and synced.
void create_sized_file(const std::string& path, const std::string& head, uint64_t size) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) LOFTQ_THROW(InputError, path, ": cannot create: ", std::strerror(errno));
    bool ok = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
    for (size_t done = 0; ok && done < head.size();) {
        const ssize_t n = ::pwrite(fd, head.data() + done, head.size() - done, static_cast<off_t>(done));
        ok = n > 0;
        done += n > 0 ? static_cast<size_t>(n) : 0;
    }
    ok = ok && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) LOFTQ_THROW(InputError, path, ": cannot write ", size, " bytes: ", std::strerror(err));
}

std::vector<unsigned char> read_completion(const std::string& path, size_t n) {
    std::error_code ec;
    if (fs::file_size(path, ec) != n || ec)
        LOFTQ_THROW(InputError, path, ": not ", n, " completion bytes (the work folder is damaged; remove it)");
    std::vector<unsigned char> flags(n);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) LOFTQ_THROW(InputError, path, ": cannot open: ", std::strerror(errno));
    const ssize_t got = n == 0 ? 0 : ::pread(fd, flags.data(), n, 0);
    ::close(fd);
    if (got != static_cast<ssize_t>(n)) LOFTQ_THROW(InputError, path, ": cannot read its ", n, " bytes");
    for (unsigned char& f : flags)
        if (f > 1) LOFTQ_THROW(InputError, path, ": completion byte ", static_cast<int>(f), " is not 0 or 1");
    return flags;
}

}  // namespace

std::vector<unsigned char> prepare_work_folder(const std::string& work, const MergePlan& plan, bool resume) {
    std::error_code ec;
    const std::string plan_json = plan.to_json();
    if (fs::exists(fs::symlink_status(work, ec))) {
        if (!resume)
            LOFTQ_THROW_SETTING("work", "work folder '", work, "' exists; add --resume to continue it, or remove it");
        if (!fs::exists(work + "/plan.json", ec))
            LOFTQ_THROW_SETTING("work", "'", work, "' holds no plan.json: not a merge work folder, or one whose creation "
                                "was interrupted; remove it");
        const nlohmann::json stored = read_json_file(work + "/plan.json", "file");
        if (stored != nlohmann::json::parse(plan_json))
            LOFTQ_THROW_SETTING("work", "work folder '", work, "' was made for other inputs or options (its plan.json "
                                "differs); remove it or give the same --base, --adapter, --to, --base-load, --max-shard-size");
        for (size_t s = 0; s < plan.shard_files.size(); ++s) {
            const std::string path = work + "/" + plan.shard_files[s];
            if (fs::file_size(path, ec) != plan.shard_bytes[s] || ec)
                LOFTQ_THROW(InputError, path, ": missing or not ", plan.shard_bytes[s], " bytes (the work folder is damaged; remove it)");
        }
        if (fs::file_size(work + "/checksums", ec) != 8 * plan.items.size() || ec)
            LOFTQ_THROW(InputError, work, "/checksums: missing or not ", 8 * plan.items.size(),
                        " bytes (the work folder is damaged; remove it)");
        return read_completion(work + "/complete", plan.items.size());
    }
    const fs::path parent = fs::absolute(work).parent_path();
    if (!fs::is_directory(parent, ec))
        LOFTQ_THROW_SETTING("work", "folder '", parent.string(), "' of the work folder does not exist");
    if (!fs::create_directory(work, ec) || ec)
        LOFTQ_THROW_SETTING("work", "cannot create '", work, "': ", ec.message());
    for (size_t s = 0; s < plan.shard_files.size(); ++s)
        create_sized_file(work + "/" + plan.shard_files[s],
                          safetensors_header(specs_of(plan, static_cast<int>(s)), default_metadata()), plan.shard_bytes[s]);
    create_sized_file(work + "/complete", std::string(), plan.items.size());
    create_sized_file(work + "/checksums", std::string(), 8 * plan.items.size());
    write_file_atomically(work + "/plan.json", plan_json);
    return std::vector<unsigned char>(plan.items.size(), 0);
}

void finish_merge_output(const MergeOptions& opt, const std::string& work, const MergePlan& plan, double seconds) {
    const std::vector<unsigned char> flags = read_completion(work + "/complete", plan.items.size());
    for (size_t i = 0; i < flags.size(); ++i)
        if (!flags[i]) LOFTQ_THROW(InputError, work, ": tensor ", plan.items[i].tensor, " is not complete");
    nlohmann::json config = read_json_file(opt.base_dir + "/config.json", "file");
    config.erase("quantization_config");
    const std::string dtype_key = config.contains("torch_dtype") ? "torch_dtype" : "dtype";
    if (opt.to == "bnb4") {
        const std::string compute = dtype_to_torch_name(plan.load_dtype);
        config[dtype_key] = compute;
        config["quantization_config"] = bnb4_quantization_config(plan.out_quant_type, plan.out_double_quant, compute);
    } else {
        config[dtype_key] = opt.to == "fp16" ? "float16" : "bfloat16";
    }

    OutputFolder out(opt.output_dir, opt.overwrite);
    std::vector<ShardPlan> shards;
    for (size_t s = 0; s < plan.shard_files.size(); ++s) {
        ShardPlan sp;
        sp.file_name = plan.shard_files[s];
        size_t index = 0;  // of the output tensor, in the order of specs_of(plan, -1)
        for (const auto& it : plan.items)
            for (const auto& o : it.outputs) {
                if (o.shard == static_cast<int>(s)) sp.tensors.push_back(index), sp.nbytes += o.nbytes;
                ++index;
            }
        shards.push_back(std::move(sp));
        std::error_code ec;
        fs::rename(work + "/" + plan.shard_files[s], out / plan.shard_files[s], ec);
        if (ec) copy_file_synced(work + "/" + plan.shard_files[s], out / plan.shard_files[s]);
    }
    if (shards.size() > 1)
        write_file_synced(out / "model.safetensors.index.json", safetensors_index_json(specs_of(plan, -1), shards));
    write_file_synced(out / "config.json", config.dump(2) + "\n");
    copy_tokenizer_files(opt.base_dir, out.temp_path());
    int counts[3] = {0, 0, 0};
    for (const auto& it : plan.items) ++counts[static_cast<int>(it.kind)];
    const nlohmann::json report = {
        {"merge", {{"base", opt.base_dir}, {"adapter", opt.adapter_dir}, {"to", opt.to},
                   {"bnb4", opt.to == "bnb4" ? nlohmann::json{{"quant_type", plan.out_quant_type},
                                                              {"double_quant", plan.out_double_quant}}
                                             : nlohmann::json()},
                   {"base_load", base_load_name(plan.base_load)}, {"base_double_quant", plan.load_double_quant},
                   {"max-shard-size", plan.max_shard_size}, {"shards", plan.shard_files.size()}}},
        {"tensors", {{"merged", counts[2]}, {"held_4bit_dequantized", counts[1]}, {"copied", counts[0]}}},
        {"timings", {{"merge_seconds", seconds}}}};
    write_file_synced(out / "merge_report.json", report.dump(2) + "\n");
    out.commit();
    std::error_code ec;
    fs::remove_all(work, ec);
}

}  // namespace loftq
