// The plan of `loftq merge`: every tensor of the output folder, what produces it, and where its
// bytes go, fixed before any work (rank 0 builds it; every rank gets it as JSON). Pure data and
// pure functions: no MPI, no files (tests/test_merge_plan.cpp).
//
// Output tensors, in name order (as export writes them), each one of:
//   copy    a tensor of the base that no adapter module touches and transformers holds as
//           stored: its bytes copied bit for bit
//   held    a base weight held in 4 bits (a bnb4 folder's codes, or a 16-bit weight that
//           re-quantizes at load) that the adapter does not touch: the values as held
//   merged  W' = W_held + s * B @ A in float32, s = the module's scaling
// `held` and `merged` are written in the --to dtype (bf16 | fp16). Sharded as transformers
// shards (io/safetensors_writer.hpp plan_shards); every tensor's byte offset in its shard file
// is known up front, so ranks write their tensors in place, in any order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace loftq {

// How the base holds its weights (--base-load; `auto` is resolved into one of these).
enum class BaseLoad { as_stored, bnb4, nf4, fp4 };
const char* base_load_name(BaseLoad b);

struct MergeItem {
    enum class Kind { copy, held, merged };
    Kind kind = Kind::copy;
    std::string tensor;
    DType in_dtype = DType::F32;   // as stored in the base (U8 for bnb4 codes)
    DType out_dtype = DType::F32;  // as written
    std::vector<int64_t> shape;    // of the output tensor
    bool four_bit = false;         // the base holds it in 4 bits (bnb4 codes, or re-quantized at load)
    int64_t r = 0;                 // merged: the adapter's rank for this module
    double scaling = 0;            // merged: lora_alpha / r (or / sqrt(r))
    int shard = 0;                 // index into MergePlan::shard_files
    uint64_t offset = 0;           // first byte in the shard file
    uint64_t nbytes = 0;
    double cost() const;           // load-balancing weight: elements, x4 for held / merged
};

const char* merge_item_kind_name(MergeItem::Kind k);  // "copy" | "held" | "merged"

struct MergePlan {
    std::string to;                 // bf16 | fp16
    BaseLoad base_load = BaseLoad::as_stored;
    bool load_double_quant = false;  // nf4 / fp4: bnb_4bit_use_double_quant at load
    DType load_dtype = DType::BF16;  // nf4 / fp4: torch_dtype the stored values are cast to first
    uint64_t max_shard_size = 0;
    uint64_t inputs_fingerprint = 0;  // of the adapter's bytes and the base's file sizes
    std::vector<std::string> shard_files;
    std::vector<uint64_t> shard_bytes;  // whole file, header included
    std::vector<MergeItem> items;       // output tensors in name order

    std::string to_json() const;
    // InputError naming `what` when the text is not a plan this code wrote.
    static MergePlan from_json(const std::string& text, const std::string& what);
};

// Fills shard, offset, nbytes of every item and the shard lists: the shards transformers would
// cut at max_shard_size (plan_shards), each file a safetensors header followed by the tensors.
void place_items(MergePlan& plan);

// The items each of `ranks` ranks does, in the order it does them: items by decreasing cost (ties:
// index) to the least-loaded rank (ties: lowest). Pure: the same on every rank.
std::vector<std::vector<int>> distribute_merge(const MergePlan& plan, int ranks);

}  // namespace loftq
