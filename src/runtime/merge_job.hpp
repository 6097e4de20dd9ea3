// `loftq merge`: fold a trained PEFT LoRA adapter into its base, W' = W_held + s * B @ A per
// module in float32, written (--to bf16 | fp16) as a plain model (config.json without
// quantization_config, the merged and the 4-bit-held weights in that dtype, every other tensor
// copied bit for bit), or (--to bnb4) as a bitsandbytes 4-bit model: W' quantized as PEFT's merge
// into a Linear4bit does, untouched 4-bit weights copied as stored (runtime/merge_plan.hpp).
//
// The base is read as transformers holds it (--base-load):
//   auto       a bitsandbytes 4-bit folder (config.json quantization_config): bnb4; a folder whose
//              report.json "load" block says requantize (a bf16/fp16 `loftq run` backbone): the
//              block's quant type and double quant; anything else: as-stored
//   bnb4       codes and absmax of the serialized 4-bit weights (double quant included)
//   nf4 | fp4  every decoder linear weight re-quantized as BitsAndBytesConfig(load_in_4bit=True,
//              bnb_4bit_quant_type=...) does at load (cast to torch_dtype, blocksize 64;
//              --base-double-quant for bnb_4bit_use_double_quant)
//   as-stored  the stored values (a plain 16-bit model)
//
// Distribution and restart (the quantize job's scheme): rank 0 checks the inputs and plans
// (runtime/merge_plan.hpp); every rank derives the same assignment. The work folder (--work,
// default <output>.merge-work) holds plan.json, the output's shard files created at their final
// size with their headers, `checksums` (8 bytes per tensor) and `complete` (one byte per tensor):
// each rank writes its tensors in place (MPI-IO, independent), then their checksum, then their
// byte, so a job killed at any instant continues with --resume and ends with the same bytes; on
// resume every complete tensor is checked against its checksum (each rank its own) and a damaged
// one is redone. Memory per rank: the tensor it holds (a matrix's
// float32 values, its adapter factors, one 16 MB output block). At the end rank 0 moves the
// shards into the output folder, which appears complete or not at all.
#pragma once

#include <cstdint>
#include <string>

namespace loftq {

// The command line fills base_dir .. base_double_quant; output_dir, max_shard_size, resume and
// overwrite come from the options merge shares with export and quantize (cli/cmd_merge.cpp).
struct MergeOptions {
    std::string base_dir;
    std::string adapter_dir;
    std::string work_dir;            // empty: default_merge_work_path(output_dir)
    std::string to = "bf16";         // bf16 | fp16 | bnb4 (the job); loftq: bf16, then quantize + export
    std::string base_load = "auto";  // auto | bnb4 | nf4 | fp4 | as-stored
    bool base_double_quant = false;  // with nf4 | fp4
    std::string output_dir;
    uint64_t max_shard_size = 5000000000ULL;
    bool resume = false;
    bool overwrite = false;
    std::string log_json;  // one JSON record per tensor: tensor, kind, shape, f32_bytes, rank, seconds
};

// "<output>.merge-work" (trailing slashes dropped).
std::string default_merge_work_path(const std::string& output_dir);
// --to loftq: the merged bf16 model the refresh quantizes, "<output>.merged".
std::string default_refresh_merged_path(const std::string& output_dir);

// Collective over MPI_COMM_WORLD. Input errors (one line naming the file, tensor or module) and
// option errors end every rank the same way before anything is created; a stop signal ends the
// job after the current tensors: "interrupted by SIGTERM after N of M tensors; resume with --resume".
void run_merge(const MergeOptions& opt);

}  // namespace loftq
