// LLM.int8 (quant/int8_rowwise.hpp) against bitsandbytes 0.50 itself: the reference vectors of
// tests/tools/gen_int8_reference.py (Int8Params(W).to("cpu") and int8_vectorwise_dequant on real
// stories260K matrices and adversarial rows) bit for bit; the float16 overflow refused by name;
// quantize-as-loaded for every backbone: the stored values re-quantize under load_in_8bit to
// exactly the codes, SCB and Q the loop optimised.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "core/error.hpp"
#include "core/half_round.hpp"
#include "io/safetensors.hpp"
#include "quant/int8_rowwise.hpp"
#include "quant/quantize.hpp"
#include "support/paths.hpp"
#include "support/weights.hpp"

namespace loftq {
namespace {

struct Case {
    std::string name;
    int64_t rows = 0, cols = 0;
    std::vector<float> input, scb, dequant;
    std::vector<uint8_t> codes;  // int8 bit patterns
};

std::vector<Case> reference_cases() {
    const SafetensorsFile file(testing::test_data_dir() + "/int8_reference/int8_reference.safetensors");
    std::vector<Case> cases;
    for (const auto& t : file.tensors()) {
        const std::string suffix = ".input";
        if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix))
            continue;
        Case c;
        c.name = t.name.substr(0, t.name.size() - suffix.size());
        c.rows = t.shape.at(0);
        c.cols = t.shape.at(1);
        c.input = file.read_f32(t.name);
        c.scb = file.read_f32(c.name + ".SCB");
        c.dequant = file.read_f32(c.name + ".dequant");
        const std::vector<int8_t> cb = file.read_as<int8_t>(c.name + ".CB");
        c.codes.resize(cb.size());
        std::memcpy(c.codes.data(), cb.data(), cb.size());
        cases.push_back(std::move(c));
    }
    return cases;
}

const QuantFormat& int8() { return select_format("int8", 8); }

void expect_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i)
        ASSERT_EQ(testing::float_bits(a[i]), testing::float_bits(b[i])) << what << " element " << i << ": " << a[i]
                                                                        << " vs " << b[i];
}

TEST(QuantInt8, ReferenceMatchesBitsandbytes) {
    const auto cases = reference_cases();
    ASSERT_GE(cases.size(), 7u);
    for (const Case& c : cases) {
        const int64_t n = c.rows * c.cols;
        const int row = static_cast<int>(c.cols);
        std::vector<uint8_t> codes(n, 0xAA);
        std::vector<float> scb(c.rows, -1.0f), deq(n, -7.0f);
        int8().quantize_ref(int8(), row, c.input.data(), n, codes.data(), scb.data());
        EXPECT_EQ(codes, c.codes) << c.name << " (reference codes)";
        expect_bits(scb, c.scb, c.name + " SCB");
        int8().dequantize(int8(), row, c.codes.data(), c.scb.data(), n, deq.data());
        expect_bits(deq, c.dequant, c.name + " dequant");

        // The path the loop takes (validation + fast path), and its Q.
        QuantizedTensor q;
        quantize({&int8(), row, false}, c.input.data(), n, q, c.name);
        EXPECT_EQ(q.packed, c.codes) << c.name << " (fast codes)";
        expect_bits(q.absmax, c.scb, c.name + " fast SCB");
        std::fill(deq.begin(), deq.end(), -7.0f);
        dequantize(q, deq.data());
        expect_bits(deq, c.dequant, c.name + " fast dequant");
    }
}

TEST(QuantInt8, Float16OverflowRefusedByName) {
    std::vector<float> x(32, 1.0f);
    x[5] = 65519.0f;  // rounds to 65504: fine
    QuantizedTensor q;
    EXPECT_NO_THROW(quantize({&int8(), 16, false}, x.data(), 32, q, "ok"));
    for (float bad : {65520.0f, -70000.0f, 3e38f}) {
        x[21] = bad;
        try {
            quantize({&int8(), 16, false}, x.data(), 32, q, "model.layers.3.mlp.up_proj.weight");
            ADD_FAILURE() << bad << " accepted";
        } catch (const InputError& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find("model.layers.3.mlp.up_proj.weight"), std::string::npos) << m;
            EXPECT_NE(m.find("row 1, column 5"), std::string::npos) << m;
            EXPECT_NE(m.find("float16"), std::string::npos) << m;
        }
    }
}

TEST(QuantInt8, RegistryAndOptions) {
    EXPECT_STREQ(int8().name, "int8");
    EXPECT_TRUE(int8().is_row_wise());
    EXPECT_FALSE(int8().is_bnb());
    EXPECT_THROW(select_format("int8", 4), ConfigError);
    EXPECT_EQ(matrix_blocksize(int8(), 64, 172), 172);
    EXPECT_EQ(matrix_blocksize(*find_format("nf4"), 64, 172), 64);
    std::vector<float> x(64, 0.5f), out(64);
    QuantizedTensor q;
    EXPECT_THROW(quantize_as_loaded({&int8(), 32, false}, Backbone::BNB4, x.data(), 64, q, out.data(), "t"),
                 ConfigError);
    EXPECT_THROW(quantize_as_loaded({find_format("nf4"), 64, false}, Backbone::INT8, x.data(), 64, q, out.data(), "t"),
                 ConfigError);
    EXPECT_THROW(quantize_as_loaded({&int8(), 32, true}, Backbone::BF16, x.data(), 64, q, out.data(), "t"),
                 ConfigError);
    EXPECT_THROW(quantize({&int8(), 24, false}, x.data(), 64, q, "t"), InputError);  // 64 is not rows of 24
}

// What load_in_8bit holds after loading a backbone exported from q: the stored values (narrowed
// to the dtype), cast to float16 and quantized again by bitsandbytes' rule (the reference,
// checked above against bitsandbytes).
struct Loaded {
    std::vector<uint8_t> codes;
    std::vector<float> scb, q;
};
Loaded load_in_8bit(const QuantizedTensor& q, Backbone bb) {
    const int64_t n = q.numel;
    std::vector<float> stored(n);
    backbone_values(q, stored.data());
    for (auto& v : stored) v = round_to_backbone(bb, v);
    Loaded l{std::vector<uint8_t>(n), std::vector<float>(block_count(n, q.blocksize)), std::vector<float>(n)};
    int8().quantize_ref(int8(), q.blocksize, stored.data(), n, l.codes.data(), l.scb.data());
    int8().dequantize(int8(), q.blocksize, l.codes.data(), l.scb.data(), n, l.q.data());
    return l;
}

// Returns the rows re-quantized by the settle step.
int64_t check_as_loaded(const std::vector<float>& x, int row, Backbone bb, const std::string& what) {
    const int64_t n = static_cast<int64_t>(x.size());
    QuantizedTensor q;
    std::vector<float> q_loaded(n, -7.0f);
    quantize_as_loaded({&int8(), row, false}, bb, x.data(), n, q, q_loaded.data(), what);
    const std::string label = what + " " + backbone_name(bb);
    if (bb == Backbone::INT8) {  // stored as is: the plain quantization
        QuantizedTensor plain;
        quantize({&int8(), row, false}, x.data(), n, plain, what);
        EXPECT_EQ(q.packed, plain.packed) << label;
        expect_bits(q.absmax, plain.absmax, label + " SCB");
        std::vector<float> deq(n);
        dequantize(plain, deq.data());
        expect_bits(q_loaded, deq, label + " Q");
        return q.requantized_blocks;
    }
    const Loaded l = load_in_8bit(q, bb);
    EXPECT_EQ(l.codes, q.packed) << label << " codes";
    expect_bits(l.scb, q.absmax, label + " SCB");
    expect_bits(l.q, q_loaded, label + " Q");
    std::vector<float> again(n);
    loaded_values(q, bb, again.data());
    expect_bits(again, q_loaded, label + " loaded_values");
    return q.requantized_blocks;
}

TEST(QuantInt8, AsLoadedEveryBackbone) {
    for (const Case& c : reference_cases())
        for (Backbone bb : {Backbone::BF16, Backbone::FP16, Backbone::FP32, Backbone::INT8}) {
            const int64_t redone = check_as_loaded(c.input, static_cast<int>(c.cols), bb, c.name);
            if (c.name.rfind("real.", 0) == 0) EXPECT_EQ(redone, 0) << c.name << " " << backbone_name(bb);
        }
    for (const auto& w : testing::stories_target_weights())
        for (Backbone bb : {Backbone::BF16, Backbone::FP16, Backbone::FP32})
            EXPECT_EQ(check_as_loaded(w.data, static_cast<int>(w.shape.at(1)), bb, w.name), 0);
    // A row maximum of 65504: bf16 rounds it up to 65536, beyond float16; the scale becomes 65280.
    std::vector<float> top(16, 1.0f);
    top[3] = 65504.0f;
    top[7] = -65519.0f;
    EXPECT_EQ(check_as_loaded(top, 16, Backbone::BF16, "top"), 0);
    EXPECT_EQ(check_as_loaded(top, 16, Backbone::FP16, "top"), 0);
}

}  // namespace
}  // namespace loftq
