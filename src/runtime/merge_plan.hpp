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
// `held` and `merged` are written in the --to dtype (bf16 | fp16), or with --to bnb4 as
// bitsandbytes' serialized 4-bit weight (W' rounded to the compute dtype, then quantized as
// Params4bit does, blocksize 64), which is what PEFT's merge on a 4-bit base holds. Sharded as transformers
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

// One tensor of the output folder and where its bytes go.
struct MergeOutput {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    bool with_previous = false;  // a bitsandbytes component: in the shard of the tensor before it
    int shard = 0;               // index into MergePlan::shard_files
    uint64_t offset = 0;         // first byte in the shard file
    uint64_t nbytes = 0;
};

struct MergeItem {
    enum class Kind { copy, held, merged };
    Kind kind = Kind::copy;
    std::string tensor;
    DType in_dtype = DType::F32;   // as stored in the base (U8 for bnb4 codes)
    std::vector<int64_t> shape;    // of the weight (rows, cols for held / merged)
    bool four_bit = false;         // the base holds it in 4 bits (bnb4 codes, or re-quantized at load)
    bool out_bnb4 = false;         // written as a serialized bitsandbytes 4-bit weight (--to bnb4)
    int64_t r = 0;                 // merged: the adapter's rank for this module
    double scaling = 0;            // merged: lora_alpha / r (or / sqrt(r))
    // What it writes, in order: the tensor itself in the --to dtype (or as stored for a copy), or
    // with out_bnb4 bitsandbytes' components (io/export_format.hpp bnb4_tensor_specs).
    std::vector<MergeOutput> outputs;
    double cost() const;           // load-balancing weight: elements, x4 for held / merged
};

const char* merge_item_kind_name(MergeItem::Kind k);  // "copy" | "held" | "merged"

struct MergePlan {
    std::string to;                  // bf16 | fp16 | bnb4
    BaseLoad base_load = BaseLoad::as_stored;
    bool load_double_quant = false;  // nf4 / fp4: bnb_4bit_use_double_quant at load
    DType load_dtype = DType::BF16;  // torch_dtype: what the stored values are cast to at load
    std::string out_quant_type;      // --to bnb4: nf4 | fp4 (the base's, else nf4)
    bool out_double_quant = false;   // --to bnb4: the base's double quant
    uint64_t max_shard_size = 0;
    uint64_t inputs_fingerprint = 0;  // of the adapter's bytes and the base's file sizes
    std::vector<std::string> shard_files;
    std::vector<uint64_t> shard_bytes;  // whole file, header included
    std::vector<MergeItem> items;       // in name order

    std::string to_json() const;
    // InputError naming `what` when the text is not a plan this code wrote.
    static MergePlan from_json(const std::string& text, const std::string& what);
};

// The bytes of the quant_state JSON tensor of a --to bnb4 weight: its length does not depend on
// the values (io/export_format.hpp bnb4_quant_state_json), so it is fixed in the plan.
std::string merge_bnb4_state(const MergePlan& plan, const MergeItem& it, float nested_offset);

// Fills shard, offset, nbytes of every output and the shard lists: the shards transformers would
// cut at max_shard_size (plan_shards; a 4-bit weight's components stay in its shard), each file
// a safetensors header followed by its tensors.
void place_items(MergePlan& plan);

// The items each of `ranks` ranks does, in the order it does them: items by decreasing cost (ties:
// index) to the least-loaded rank (ties: lowest). Pure: the same on every rank.
std::vector<std::vector<int>> distribute_merge(const MergePlan& plan, int ranks);

}  // namespace loftq
