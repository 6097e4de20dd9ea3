#include "runtime/merge_job.hpp"

#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/hash64.hpp"
#include "core/interrupt.hpp"
#include "io/checkpoint.hpp"
#include "io/held_weight.hpp"
#include "io/json_strict.hpp"
#include "io/peft_adapter.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "quant/format_tables.hpp"
#include "quant/quantize.hpp"
#include "runtime/collective.hpp"
#include "runtime/merge_inputs.hpp"
#include "runtime/merge_output.hpp"
#include "runtime/progress.hpp"

namespace fs = std::filesystem;

namespace loftq {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kChunkBytes = uint64_t{16} << 20;  // one output block; MPI counts are int

// The checksum of one output tensor's bytes: 16 MB pieces from its start, each hashed and summed
// keyed by (item, output, piece), so that writer and checker agree however the bytes were cut.
uint64_t piece_sum(const std::string& tensor, size_t output, uint64_t rel, const void* data, uint64_t n) {
    LOFTQ_CHECK(rel % kChunkBytes == 0, "merge: a write of ", tensor, " starts inside a piece");
    const uint64_t salt = hash_bytes(tensor.data(), tensor.size(), 0x6d657267ULL);
    uint64_t sum = 0;
    const auto* p = static_cast<const unsigned char*>(data);
    for (uint64_t done = 0; done < n; done += kChunkBytes) {
        const uint64_t piece = (rel + done) / kChunkBytes;
        sum += keyed(salt, (static_cast<uint64_t>(output) << 40) | piece,
                     hash_bytes(p + done, static_cast<size_t>(std::min(kChunkBytes, n - done)), 0));
    }
    return sum;
}

// The shard files, the completion bytes and the checksums (8 bytes, little-endian, per item) of
// the work folder, open on every rank (MPI-IO, independent writes). close() is collective. An
// item's bytes go first, then its checksum, then its completion byte.
class WorkFiles {
public:
    WorkFiles(MPI_Comm world, const std::string& dir, const MergePlan& plan) {
        for (const auto& f : plan.shard_files) shards_.push_back(open(world, dir + "/" + f));
        complete_ = open(world, dir + "/complete");
        checksums_ = open(world, dir + "/checksums");
    }
    WorkFiles(const WorkFiles&) = delete;
    WorkFiles& operator=(const WorkFiles&) = delete;
    // Bytes [rel, rel + n) of output `index` (of item `it`); rel a multiple of 16 MB.
    void write(const MergeItem& it, size_t index, uint64_t rel, const void* data, uint64_t n) {
        const MergeOutput& out = it.outputs[index];
        LOFTQ_CHECK(rel + n <= out.nbytes, "merge: write past tensor ", out.name);
        const auto* p = static_cast<const unsigned char*>(data);
        for (uint64_t done = 0; done < n;) {
            const int count = static_cast<int>(std::min<uint64_t>(kChunkBytes, n - done));
            MPI_CHECK(MPI_File_write_at(shards_[static_cast<size_t>(out.shard)],
                                        static_cast<MPI_Offset>(out.offset + rel + done), p + done, count, MPI_BYTE,
                                        MPI_STATUS_IGNORE));
            done += static_cast<uint64_t>(count);
        }
        sum_ += piece_sum(it.tensor, index, rel, data, n);
    }
    void mark_complete(size_t item) {
        uint8_t le[8];
        for (int b = 0; b < 8; ++b) le[b] = static_cast<uint8_t>(sum_ >> (8 * b));
        MPI_CHECK(MPI_File_write_at(checksums_, static_cast<MPI_Offset>(8 * item), le, 8, MPI_BYTE, MPI_STATUS_IGNORE));
        const unsigned char one = 1;
        MPI_CHECK(MPI_File_write_at(complete_, static_cast<MPI_Offset>(item), &one, 1, MPI_BYTE, MPI_STATUS_IGNORE));
        sum_ = 0;
    }
    void close() {  // collective
        for (auto& f : shards_) {
            MPI_CHECK(MPI_File_sync(f));
            MPI_CHECK(MPI_File_close(&f));
        }
        shards_.clear();
        for (MPI_File* f : {&checksums_, &complete_}) {
            MPI_CHECK(MPI_File_sync(*f));
            MPI_CHECK(MPI_File_close(f));
        }
    }

private:
    static MPI_File open(MPI_Comm world, const std::string& path) {
        MPI_File f;
        MPI_CHECK(MPI_File_open(world, path.c_str(), MPI_MODE_WRONLY, MPI_INFO_NULL, &f));
        return f;
    }
    std::vector<MPI_File> shards_;
    MPI_File complete_ = MPI_FILE_NULL;
    MPI_File checksums_ = MPI_FILE_NULL;
    uint64_t sum_ = 0;  // of the item being written
};

// On --resume: whether the stored bytes of complete item `it` still give its checksum (a work
// folder damaged after the fact, e.g. a disk error, is caught here and the item redone).
bool item_intact(const std::string& work, const MergePlan& plan, const MergeItem& it, size_t item) {
    uint64_t sum = 0;
    std::vector<unsigned char> piece(static_cast<size_t>(kChunkBytes));
    for (size_t k = 0; k < it.outputs.size(); ++k) {
        const MergeOutput& out = it.outputs[k];
        std::ifstream f(work + "/" + plan.shard_files[static_cast<size_t>(out.shard)], std::ios::binary);
        f.seekg(static_cast<std::streamoff>(out.offset));
        for (uint64_t rel = 0; rel < out.nbytes; rel += kChunkBytes) {
            const uint64_t n = std::min(kChunkBytes, out.nbytes - rel);
            if (!f.read(reinterpret_cast<char*>(piece.data()), static_cast<std::streamsize>(n))) return false;
            sum += piece_sum(it.tensor, k, rel, piece.data(), n);
        }
    }
    std::ifstream c(work + "/checksums", std::ios::binary);
    uint8_t le[8];
    c.seekg(static_cast<std::streamoff>(8 * item));
    if (!c.read(reinterpret_cast<char*>(le), 8)) return false;
    uint64_t stored = 0;
    for (int b = 7; b >= 0; --b) stored = (stored << 8) | le[b];
    return stored == sum;
}

// The weight of `it` as transformers holds it, float32 row-major. A 4-bit weight is what
// bitsandbytes' dequantize_4bit returns, in the quant state's dtype (the compute dtype): that is
// what a 4-bit layer multiplies with, and what PEFT's merge and transformers' dequantize() add to.
std::vector<float> held_values(const Checkpoint& ck, const MergePlan& plan, const MergeItem& it) {
    if (!it.four_bit) return ck.read_f32(it.tensor, FiniteCheck::reject);
    std::vector<float> q;
    if (plan.base_load == BaseLoad::bnb4) {
        const Bnb4Stored st = read_bnb4_state(ck, it.tensor);
        if (std::vector<int64_t>{st.rows, st.cols} != it.shape)
            LOFTQ_THROW(InputError, ck.path(), " tensor ", it.tensor, ": quant_state shape is not ", shape_string(it.shape));
        q = dequantize_bnb4_weight(ck, it.tensor, st);
        release_mapped_pages(ck.raw(it.tensor), ck.info(it.tensor).nbytes());
        cast_as_loaded(st.dtype, q);
    } else {
        q = requantized_at_load(ck.read_f32(it.tensor, FiniteCheck::reject), plan.load_dtype,
                                *find_format(base_load_name(plan.base_load)), plan.load_double_quant, it.tensor);
        cast_as_loaded(plan.load_dtype, q);
    }
    return q;
}

// w (rows x cols) += s * (B @ A), B rows x r, A r x cols, all float32: each row's product summed
// over k in order, then scaled and added, so the result does not depend on threads or ranks.
void add_lora_delta(std::vector<float>& w, const std::vector<float>& B, const std::vector<float>& A, int64_t rows,
                    int64_t cols, int64_t r, float s) {
#pragma omp parallel
    {
        std::vector<float> ba(static_cast<size_t>(cols));
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; ++i) {
            std::fill(ba.begin(), ba.end(), 0.0f);
            for (int64_t k = 0; k < r; ++k) {
                const float b = B[static_cast<size_t>(i * r + k)];
                const float* a = A.data() + k * cols;
                for (int64_t j = 0; j < cols; ++j) ba[static_cast<size_t>(j)] += b * a[j];
            }
            float* wi = w.data() + i * cols;
            for (int64_t j = 0; j < cols; ++j) wi[j] += s * ba[static_cast<size_t>(j)];
        }
    }
}

// Narrows v to the output's dtype block by block and writes it in place. InputError naming the
// tensor for a value the dtype cannot hold (non-finite, or past fp16's range).
void write_values(WorkFiles& files, const MergeItem& it, const std::vector<float>& v) {
    const MergeOutput& out = it.outputs.front();
    const float limit = out.dtype == DType::F16 ? 65519.0f : 3.3895313e38f;
    for (size_t i = 0; i < v.size(); ++i)
        if (!(std::fabs(v[i]) <= limit))
            LOFTQ_THROW(InputError, "merged tensor ", out.name, ": value ", v[i], " at element ", i, " does not fit ",
                        dtype_name(out.dtype), out.dtype == DType::F16 ? " (use --to bf16)" : "");
    const size_t item = dtype_size(out.dtype), per_block = kChunkBytes / item;
    std::vector<unsigned char> block(std::min(v.size(), per_block) * item);
    for (size_t first = 0; first < v.size(); first += per_block) {
        const size_t n = std::min(per_block, v.size() - first);
        narrow_from_f32(out.dtype, v.data() + first, n, block.data());
        files.write(it, 0, first * item, block.data(), n * item);
    }
}

template <typename T>
void write_exact(WorkFiles& files, const MergeItem& it, size_t index, const T* data, size_t count) {
    const MergeOutput& out = it.outputs[index];
    LOFTQ_CHECK(count * sizeof(T) == out.nbytes, "merge: tensor ", out.name, " has ", count * sizeof(T),
                " bytes, the plan ", out.nbytes);
    files.write(it, index, 0, data, out.nbytes);
}

// --to bnb4: W' (the held weight in its dtype + the float32 delta, in float32, as PEFT's merge into
// a Linear4bit forms it) quantized from float32 as bitsandbytes' Params4bit does (blocksize 64,
// the plan's quant type and double quant), written as its serialized components.
void write_bnb4(WorkFiles& files, const MergePlan& plan, const MergeItem& it, const std::vector<float>& w) {
    const QuantFormat& f = *find_format(plan.out_quant_type);
    QuantizedTensor q;
    quantize(QuantParams{&f, 64, plan.out_double_quant}, w.data(), static_cast<int64_t>(w.size()), q, it.tensor);
    const bool dq = plan.out_double_quant;
    LOFTQ_CHECK(it.outputs.size() == (dq ? 6u : 4u), "merge: bnb4 outputs of ", it.tensor);
    write_exact(files, it, 0, q.packed.data(), q.packed.size());
    if (dq)
        write_exact(files, it, 1, q.nested.codes.data(), q.nested.codes.size());
    else
        write_exact(files, it, 1, q.absmax.data(), q.absmax.size());
    write_exact(files, it, 2, f.table, 16);
    if (dq) {
        write_exact(files, it, 3, q.nested.nested_absmax.data(), q.nested.nested_absmax.size());
        write_exact(files, it, 4, tables::kDynamicSigned8, 256);
    }
    const std::string state = merge_bnb4_state(plan, it, q.nested.offset);
    write_exact(files, it, it.outputs.size() - 1, state.data(), state.size());
}

// One item: produced, written in place, marked complete.
void produce(const MergeItem& it, size_t index, const MergePlan& plan, const Checkpoint& ck,
             const PeftAdapter& adapter, WorkFiles& files) {
    if (it.kind == MergeItem::Kind::copy) {
        const MergeOutput& out = it.outputs.front();
        const TensorInfo& t = ck.info(it.tensor);
        if (t.nbytes() != out.nbytes) LOFTQ_THROW(InputError, ck.path(), ": tensor ", it.tensor, " changed size");
        const unsigned char* raw = ck.raw(it.tensor);
        for (uint64_t off = 0; off < out.nbytes; off += kChunkBytes) {
            const uint64_t n = std::min(kChunkBytes, out.nbytes - off);
            files.write(it, 0, off, raw + off, n);
            release_mapped_pages(raw + off, n);
        }
    } else {
        std::vector<float> w = held_values(ck, plan, it);
        if (it.kind == MergeItem::Kind::merged) {
            std::vector<float> A, B;
            const LoraModule m{it.tensor, it.r, 0.0, it.scaling};
            read_lora_factors(adapter, m, it.shape[0], it.shape[1], A, B);
            add_lora_delta(w, B, A, it.shape[0], it.shape[1], it.r, static_cast<float>(it.scaling));
        }
        if (it.out_bnb4)
            write_bnb4(files, plan, it, w);
        else
            write_values(files, it, w);
    }
    files.mark_complete(index);
}

}  // namespace

namespace {
std::string beside(const std::string& output_dir, const char* suffix) {
    std::string out = output_dir;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out + suffix;
}
}  // namespace

std::string default_merge_work_path(const std::string& output_dir) { return beside(output_dir, ".merge-work"); }
std::string default_refresh_merged_path(const std::string& output_dir) { return beside(output_dir, ".merged"); }

void run_merge(const MergeOptions& opt) {
    const auto t0 = Clock::now();
    MPI_Comm world = MPI_COMM_WORLD;
    int rank = 0, size = 1;
    MPI_CHECK(MPI_Comm_rank(world, &rank));
    MPI_CHECK(MPI_Comm_size(world, &size));
    const std::string work = opt.work_dir.empty() ? default_merge_work_path(opt.output_dir) : opt.work_dir;

    // Rank 0 checks every input and plans; everyone gets the plan. Then rank 0 creates (or
    // reopens) the work folder and tells everyone which tensors are done.
    const MergePlan plan = MergePlan::from_json(root_computes(world, 0, [&] { return plan_merge(opt).to_json(); }), "merge plan");
    const std::string flags_text = root_computes(world, 0, [&] {
        if (!opt.overwrite && fs::exists(fs::symlink_status(opt.output_dir)))
            LOFTQ_THROW_SETTING("output", "'", opt.output_dir, "' exists; add --overwrite to replace it");
        const auto flags = prepare_work_folder(work, plan, opt.resume);
        return std::string(flags.begin(), flags.end());
    });
    std::vector<bool> complete(plan.items.size());
    int64_t skipped = 0;
    double total_bytes = 0, skipped_bytes = 0;
    std::vector<double> item_bytes;  // output bytes of each item (progress)
    for (size_t i = 0; i < plan.items.size(); ++i) {
        complete[i] = flags_text[i] != 0;
        double bytes = 0;
        for (const auto& o : plan.items[i].outputs) bytes += static_cast<double>(o.nbytes);
        item_bytes.push_back(bytes);
        total_bytes += bytes;
        if (complete[i]) ++skipped, skipped_bytes += bytes;
    }
    const auto work_lists = distribute_merge(plan, size);
    if (skipped > 0) {  // every rank checks the complete items of its own list; all agree
        std::vector<uint8_t> damaged(plan.items.size(), 0);
        all_or_none(world, [&] {
            for (int index : work_lists[static_cast<size_t>(rank)]) {
                const auto i = static_cast<size_t>(index);
                if (complete[i] && !item_intact(work, plan, plan.items[i], i)) damaged[i] = 1;
            }
        });
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, damaged.data(), static_cast<int>(damaged.size()), MPI_UINT8_T, MPI_MAX,
                                world));
        for (size_t i = 0; i < damaged.size(); ++i) {
            if (!damaged[i]) continue;
            complete[i] = false;
            --skipped;
            skipped_bytes -= item_bytes[i];
            if (rank == 0)
                std::printf("[loftq] work folder %s: tensor %s fails its checksum; redoing it\n", work.c_str(),
                            plan.items[i].tensor.c_str());
        }
    }
    if (rank == 0) {
        int merged = 0, held = 0;
        for (const auto& it : plan.items) {
            merged += it.kind == MergeItem::Kind::merged ? 1 : 0;
            held += it.kind == MergeItem::Kind::held ? 1 : 0;
        }
        std::printf("[loftq] merge %s + %s -> %s: %zu tensors (%d merged, %d 4-bit held dequantized), base %s%s, "
                    "to %s, %d rank(s)\n",
                    opt.base_dir.c_str(), opt.adapter_dir.c_str(), opt.output_dir.c_str(), plan.items.size(), merged, held,
                    base_load_name(plan.base_load), plan.load_double_quant ? " (double quant)" : "", opt.to.c_str(), size);
        if (skipped > 0)
            std::printf("[loftq] resuming %s: %lld of %zu tensors already complete\n", work.c_str(),
                        static_cast<long long>(skipped), plan.items.size());
        std::fflush(stdout);
    }

    std::optional<WorkFiles> files;
    all_or_none(world, [&] { files.emplace(world, work, plan); });
    InterruptScope interrupts;
    int64_t sums[2] = {0, 0};  // ranks that stopped early, tensors completed
    int stop_signal = 0;
    abort_on_error([&] {
        int64_t expected = 0;
        for (size_t i = 0; i < complete.size(); ++i) expected += complete[i] ? 0 : 1;
        ProgressReporter progress(world, static_cast<int64_t>(plan.items.size()), total_bytes, expected, skipped,
                                  skipped_bytes, opt.log_json);
        const Checkpoint ck(opt.base_dir);
        const PeftAdapter adapter = read_peft_adapter(opt.adapter_dir);
        int64_t mine[2] = {0, 0};
        for (int index : work_lists[static_cast<size_t>(rank)]) {
            const auto i = static_cast<size_t>(index);
            if (complete[i]) continue;
            if (interrupt_signal() != 0) {
                mine[0] = 1;
                break;
            }
            const auto t = Clock::now();
            produce(plan.items[i], i, plan, ck, adapter, files.value());
            ++mine[1];
            const MergeItem& it = plan.items[i];
            double elements = 1;
            for (int64_t d : it.shape) elements *= static_cast<double>(d);
            const nlohmann::json record = {{"tensor", it.tensor}, {"kind", merge_item_kind_name(it.kind)},
                                           {"bnb4", it.out_bnb4},
                                           {"shape", it.shape}, {"f32_bytes", 4 * elements}, {"rank", rank},
                                           {"seconds", std::chrono::duration<double>(Clock::now() - t).count()}};
            progress.matrix_done(item_bytes[i], true, record.dump());
            progress.poll();
        }
        MPI_CHECK(MPI_Allreduce(mine, sums, 2, MPI_INT64_T, MPI_SUM, world));
        const int my_signal = interrupt_signal();
        MPI_CHECK(MPI_Allreduce(&my_signal, &stop_signal, 1, MPI_INT, MPI_MAX, world));
        progress.finish(sums[0] > 0);
        files->close();
    });
    if (sums[0] > 0) {
        Error e(cat("interrupted by ", stop_signal ? interrupt_signal_name(stop_signal) : "a stop signal", " after ",
                    skipped + sums[1], " of ", plan.items.size(), " tensors; resume with --resume"));
        e.set_collective();
        throw e;
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string line = root_computes(world, 0, [&] {
        finish_merge_output(opt, work, plan, seconds);
        return cat("[loftq] merged ", plan.items.size(), " tensors into ", opt.output_dir, " (",
                   plan.shard_files.size(), plan.shard_files.size() == 1 ? " shard" : " shards", ", ", opt.to, ") in ",
                   seconds, " s\n");
    });
    if (rank == 0) {
        std::fputs(line.c_str(), stdout);
        std::fflush(stdout);
    }
}

}  // namespace loftq
