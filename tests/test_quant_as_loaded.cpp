// Quantize-as-loaded: exporting the backbone and loading it the way transformers + bitsandbytes
// do (narrow to the dtype, re-quantize with the reference rule, optionally double-quantize the
// absmax, dequantize) must give back q_loaded bit for bit, for every block.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "quant/format_tables.hpp"
#include "quant/quantize.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

DType dtype_of(Backbone b) {
    return b == Backbone::BF16 ? DType::BF16 : b == Backbone::FP16 ? DType::F16 : DType::F32;
}

struct Loaded {
    std::vector<uint8_t> codes;
    std::vector<float> q;
};

// What bitsandbytes holds after loading a bf16/fp16/fp32 backbone with load_in_4bit.
Loaded load_backbone(const QuantizedTensor& q, Backbone bb) {
    const int64_t n = q.numel;
    std::vector<float> values(n), stored(n);
    backbone_values(q, values.data());
    std::vector<uint8_t> bytes(n * dtype_size(dtype_of(bb)));
    narrow_from_f32(dtype_of(bb), values.data(), n, bytes.data());
    widen_to_f32(dtype_of(bb), bytes.data(), n, stored.data());
    Loaded l{std::vector<uint8_t>(n), std::vector<float>(n)};
    std::vector<float> absmax(block_count(n, q.blocksize));
    // bitsandbytes re-quantizes with its own format (nf2's values load as nf4's).
    const QuantFormat& held = q.format->loads_through_nf4() ? *find_format("nf4") : *q.format;
    quantize_ref(held, q.blocksize, stored.data(), n, l.codes.data(), absmax.data());
    if (q.double_quant) {
        const DoubleQuant dq = double_quantize_ref(absmax.data(), absmax.size());
        double_dequantize_ref(dq, absmax.size(), absmax.data());
    }
    dequantize_ref(held, q.blocksize, l.codes.data(), absmax.data(), n, l.q.data());
    return l;
}

// What bitsandbytes holds after loading the pre-quantized (bnb4) backbone.
std::vector<float> load_bnb4(const QuantizedTensor& q) {
    std::vector<uint8_t> codes(q.numel);
    unpack_codes(*q.format, q.packed.data(), q.numel, codes.data());
    std::vector<float> absmax = q.double_quant ? q.absmax_exact : q.absmax;
    if (q.double_quant) double_dequantize_ref(q.nested, absmax.size(), absmax.data());
    std::vector<float> out(q.numel);
    dequantize_ref(*q.format, q.blocksize, codes.data(), absmax.data(), q.numel, out.data());
    return out;
}

// Returns the number of blocks that needed re-quantization.
int64_t check_round_trip(const QuantParams& p, Backbone bb, const std::vector<float>& x, const std::string& what) {
    const int64_t n = x.size();
    QuantizedTensor q;
    std::vector<float> q_loaded(n, -7.0f);
    quantize_as_loaded(p, bb, x.data(), n, q, q_loaded.data(), what);
    const std::string label = what + " " + p.format->name + " bs " + std::to_string(p.blocksize) + " " +
                              backbone_name(bb) + (p.double_quant ? " dq" : "");
    if (!p.format->is_bnb() && !p.format->loads_through_nf4()) {
        std::vector<float> deq(n);
        dequantize(q, deq.data());
        for (int64_t i = 0; i < n; ++i) {
            EXPECT_EQ(testing::float_bits(q_loaded[i]), testing::float_bits(round_to_backbone(bb, deq[i]))) << label << " " << i;
            if (testing::float_bits(q_loaded[i]) != testing::float_bits(round_to_backbone(bb, deq[i]))) return -1;
        }
        return 0;
    }
    if (bb == Backbone::BNB4) {
        const auto loaded = load_bnb4(q);
        for (int64_t i = 0; i < n; ++i)
            if (testing::float_bits(loaded[i]) != testing::float_bits(q_loaded[i])) {
                ADD_FAILURE() << label << " element " << i << ": " << loaded[i] << " vs " << q_loaded[i];
                return -1;
            }
        return 0;
    }
    const Loaded loaded = load_backbone(q, bb);
    std::vector<uint8_t> codes(n);
    unpack_codes(*p.format, q.packed.data(), n, codes.data());
    if (p.format->loads_through_nf4())  // held as the NF4 codes of the same values
        for (auto& c : codes) c = tables::kNF4CodeOfNF2[c];
    for (int64_t i = 0; i < n; ++i)
        if (testing::float_bits(loaded.q[i]) != testing::float_bits(q_loaded[i]) || loaded.codes[i] != codes[i]) {
            ADD_FAILURE() << label << " element " << i << ": loaded " << loaded.q[i] << " (code " << int(loaded.codes[i])
                          << ") vs q_loaded " << q_loaded[i] << " (code " << int(codes[i]) << ")";
            return -1;
        }
    return q.requantized_blocks;
}

const Backbone kBackbones[] = {Backbone::BF16, Backbone::FP16, Backbone::FP32, Backbone::BNB4};

TEST(QuantAsLoaded, EveryStoriesTarget) {
    const auto weights = testing::stories_target_weights();
    ASSERT_FALSE(weights.empty());
    for (const auto& f : all_formats())
        for (int bs : {32, 64, 128, 256, 1024, 4096})
            for (Backbone bb : kBackbones)
                for (bool dq : {false, true}) {
                    if (!f.is_bnb() && (dq || (bb == Backbone::BNB4 && !f.loads_through_nf4()))) continue;
                    if (f.is_row_wise()) continue;  // int8 loads differently: test_quant_int8.cpp
                    if (f.loads_through_nf4() && bb != Backbone::BNB4 && bs != 64) continue;  // refused
                    for (const auto& w : weights) {
                        if (f.needs_full_blocks() && w.data.size() % bs) continue;
                        // normal-range weights: the proof in quantize.cpp holds for every block
                        ASSERT_EQ(check_round_trip({&f, bs, dq}, bb, w.data, w.name), 0);
                    }
                }
}

TEST(QuantAsLoaded, Llama7bShapedHeavyTailed) {
    for (const auto& [rows, seed] : {std::pair<int64_t, uint64_t>{4096, 11}, {11008, 12}}) {
        const auto x = testing::heavy_tailed(rows * 4096, seed, 0.02f, 3.0);
        const std::string name = std::to_string(rows) + "x4096";
        ASSERT_EQ(check_round_trip({find_format("nf4"), 64, false}, Backbone::BF16, x, name), 0);
        ASSERT_EQ(check_round_trip({find_format("nf4"), 64, true}, Backbone::FP16, x, name), 0);
        ASSERT_EQ(check_round_trip({find_format("fp4"), 128, true}, Backbone::BF16, x, name), 0);
        ASSERT_EQ(check_round_trip({find_format("nf2"), 64, false}, Backbone::BF16, x, name), 0);
    }
}

TEST(QuantAsLoaded, TinyAndHugeMagnitudes) {
    // One 64-element block per magnitude, from fp16-normal down past the smallest fp16 subnormal.
    const float scales[] = {1e3f, 1.0f, 1e-4f, 6.2e-5f, 1e-5f, 1e-6f, 2e-7f, 6e-8f, 3e-8f, 1e-12f, 1e-30f};
    std::vector<float> x;
    auto noise = testing::heavy_tailed(64 * std::size(scales), 5, 1.0f);
    for (size_t b = 0; b < std::size(scales); ++b)
        for (int i = 0; i < 64; ++i) x.push_back(noise[b * 64 + i] * scales[b]);
    for (const auto& f : all_formats())
        for (Backbone bb : kBackbones)
            for (bool dq : {false, true}) {
                if (!f.is_bnb() && (dq || (bb == Backbone::BNB4 && !f.loads_through_nf4()))) continue;
                if (f.is_row_wise()) continue;  // int8 loads differently: test_quant_int8.cpp
                const int64_t redone = check_round_trip({&f, 64, dq}, bb, x, "tiny");
                ASSERT_GE(redone, 0);
                // bf16 and fp32 cover these exponents: the proof holds, nothing is re-quantized
                if (bb != Backbone::FP16) EXPECT_EQ(redone, 0) << f.name;
            }
    // fp16: a block whose absmax is well inside the normal range keeps its codes (the proof);
    // measured: nf4 needs re-quantization from block scales ~2e-7 down, fp4 from ~1e-6 down.
    for (float s : {1e3f, 1.0f, 1e-3f, 1e-4f, 1e-5f}) {
        std::vector<float> y(64 * 64);
        for (size_t i = 0; i < y.size(); ++i) y[i] = noise[i % noise.size()] * s;
        for (const char* name : {"nf4", "fp4"})
            EXPECT_EQ(check_round_trip({find_format(name), 64, false}, Backbone::FP16, y, "fp16 normal"), 0)
                << name << " scale " << s;
    }
    // bf16 shares float32's exponent range: huge values are fine.
    std::vector<float> big(64, 1e38f);
    big[1] = -3e37f;
    EXPECT_EQ(check_round_trip({find_format("nf4"), 64, false}, Backbone::BF16, big, "huge"), 0);

    QuantizedTensor q;
    std::vector<float> out(64);
    std::vector<float> over(64, 1.0f);
    over[7] = 7e4f;  // above float16's 65504
    try {
        quantize_as_loaded({find_format("nf4"), 64, false}, Backbone::FP16, over.data(), 64, q, out.data(),
                           "model.layers.1.mlp.up_proj.weight");
        ADD_FAILURE() << "fp16 cannot hold absmax 7e4";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos);
    }
    EXPECT_THROW(quantize_as_loaded({find_format("nf2"), 64, false}, Backbone::FP16, over.data(), 64, q,
                                    out.data(), "t"),
                 InputError);
    std::vector<float> top(64, 3.4e38f);  // rounds up past bf16's largest finite value
    EXPECT_THROW(quantize_as_loaded({find_format("nf4"), 64, false}, Backbone::BF16, top.data(), 64, q,
                                    out.data(), "t"),
                 InputError);
    EXPECT_THROW(quantize_as_loaded({find_format("nf8"), 64, false}, Backbone::BNB4, over.data(), 64, q,
                                    out.data(), "t"),
                 ConfigError);
    // nf2 loads through load_in_4bit nf4 (blocksize 64): a float backbone at another blocksize
    // cannot load as optimised; bnb4 stores the blocksize.
    std::vector<float> x128(128, 0.5f);
    x128[3] = -2.0f;
    EXPECT_THROW(quantize_as_loaded({find_format("nf2"), 128, false}, Backbone::BF16, x128.data(), 128, q,
                                    out.data(), "t"),
                 ConfigError);
    EXPECT_EQ(check_round_trip({find_format("nf2"), 128, false}, Backbone::BNB4, x128, "nf2 bnb4 bs 128"), 0);
    EXPECT_EQ(parse_backbone("bnb4"), Backbone::BNB4);
    EXPECT_EQ(parse_backbone("int8"), Backbone::INT8);
    EXPECT_THROW(parse_backbone("int4"), ConfigError);
}

TEST(QuantAsLoaded, RoundedAbsmaxIsRepresentableAndCoversTheBlock) {
    auto x = testing::heavy_tailed(64 * 200, 9, 0.03f);
    QuantizedTensor q;
    std::vector<float> out(x.size());
    for (Backbone bb : {Backbone::BF16, Backbone::FP16}) {
        quantize_as_loaded({find_format("nf4"), 64, false}, bb, x.data(), x.size(), q, out.data(), "t");
        for (size_t b = 0; b < q.absmax.size(); ++b) {
            float m = 0;
            for (int i = 0; i < 64; ++i) m = std::max(m, std::fabs(x[b * 64 + i]));
            EXPECT_GE(q.absmax[b], m);
            EXPECT_EQ(round_to_backbone(bb, q.absmax[b]), q.absmax[b]);
            EXPECT_LE(q.absmax[b], m * (bb == Backbone::BF16 ? 1.0079f : 1.002f));
        }
    }
}

}  // namespace
}  // namespace loftq
