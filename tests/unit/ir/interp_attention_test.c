// Unit tests for the reference evaluator's attention, score-mod expressions and rope. Attention is
// checked against a naive implementation in this file (explicit visibility, exp without the max
// shift, a repeated-KV-head mapping), and its variants against each other (GQA vs repeated heads,
// sliding window + sinks vs a bool mask, ALiBi score_mod vs an additive float mask). Rope is
// checked against a rotation by complex multiplication.
#include <complex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "interp_test_util.h"

#define F32(...)  ((attn_type){ATTN_DTYPE_F32, __VA_ARGS__})
#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

enum { MAX_T = 32 };

// ---- a naive reference -----------------------------------------------------------------------

typedef struct ref_case {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  double scale; // the actual scale (not 0)
  attn_mask_kind mask;
  int64_t window, sinks;
  const uint8_t *visible; // explicit [B][H][Tq][Tk] visibility ANDed in, or NULL
  double softcap;         // s -> softcap * tanh(s / softcap) when > 0
  const float *slopes;    // ALiBi: s += slopes[h] * (j - pos) when not NULL
  bool sigmoid;
  double sigmoid_bias;
} ref_case;

static ref_case make_case(int64_t b, int64_t h, int64_t hkv, int64_t tq, int64_t tk, int64_t d,
                          int64_t dv, double scale, attn_mask_kind mask) {
  ref_case c = {b, h, hkv, tq, tk, d, dv, scale, mask, 0, 0, NULL, 0.0, NULL, false, 0.0};
  return c;
}

// out[B][H][Tq][Dv] and lse[B][H][Tq] in double.
static void naive_attention(const ref_case *c, const float *q, const float *k, const float *v,
                            double *out, double *lse) {
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      int64_t kvh = h * c->Hkv / c->H; // query heads repeat each kv head H / Hkv times
      const float *kb = k + (b * c->Hkv + kvh) * c->Tk * c->D;
      const float *vb = v + (b * c->Hkv + kvh) * c->Tk * c->Dv;
      for (int64_t i = 0; i < c->Tq; i++) {
        const float *qi = q + ((b * c->H + h) * c->Tq + i) * c->D;
        int64_t pos = c->Tk - c->Tq + i;
        double s[MAX_T], e[MAX_T], z = 0.0;
        bool vis[MAX_T];
        for (int64_t j = 0; j < c->Tk; j++) {
          vis[j] =
              c->mask == ATTN_MASK_NONE ||
              (j <= pos && (c->mask == ATTN_MASK_CAUSAL || pos - j < c->window || j < c->sinks));
          if (c->visible)
            vis[j] = vis[j] && c->visible[((b * c->H + h) * c->Tq + i) * c->Tk + j];
          double dot = 0.0;
          for (int64_t d = 0; d < c->D; d++)
            dot += (double)qi[d] * (double)kb[j * c->D + d];
          s[j] = dot * c->scale;
          if (c->softcap > 0)
            s[j] = c->softcap * tanh(s[j] / c->softcap);
          if (c->slopes)
            s[j] += (double)c->slopes[h] * (double)(j - pos);
          e[j] = vis[j] ? exp(s[j]) : 0.0;
          z += e[j];
        }
        lse[(b * c->H + h) * c->Tq + i] = z > 0 ? log(z) : -(double)INFINITY;
        for (int64_t d = 0; d < c->Dv; d++) {
          double acc = 0.0;
          for (int64_t j = 0; j < c->Tk; j++) {
            double p = c->sigmoid ? (vis[j] ? 1.0 / (1.0 + exp(-s[j] - c->sigmoid_bias)) : 0.0)
                                  : (z > 0 ? e[j] / z : 0.0);
            acc += p * (double)vb[j * c->Dv + d];
          }
          out[((b * c->H + h) * c->Tq + i) * c->Dv + d] = acc;
        }
      }
    }
  }
}

typedef struct qkv {
  float q[2 * 4 * MAX_T * 8], k[2 * 4 * MAX_T * 8], v[2 * 4 * MAX_T * 8];
  attn_tensor tensors[3];
} qkv;

// Graph inputs q, k, v for `c` with random data, returned in `out_ids`.
static void add_qkv(fixture *f, const ref_case *c, qkv *data, attn_value_id *out_ids,
                    uint32_t seed) {
  attn_type qt = F32(4, {c->B, c->H, c->Tq, c->D}), kt = F32(4, {c->B, c->Hkv, c->Tk, c->D});
  attn_type vt = F32(4, {c->B, c->Hkv, c->Tk, c->Dv});
  out_ids[0] = input(f, "q", qt);
  out_ids[1] = input(f, "k", kt);
  out_ids[2] = input(f, "v", vt);
  fill_random(data->q, c->B * c->H * c->Tq * c->D, seed);
  fill_random(data->k, c->B * c->Hkv * c->Tk * c->D, seed + 1);
  fill_random(data->v, c->B * c->Hkv * c->Tk * c->Dv, seed + 2);
  data->tensors[0] = tensor(ATTN_DTYPE_F32, data->q, 4, qt.dims);
  data->tensors[1] = tensor(ATTN_DTYPE_F32, data->k, 4, kt.dims);
  data->tensors[2] = tensor(ATTN_DTYPE_F32, data->v, 4, vt.dims);
}

static attn_node_id add_attention(fixture *f, const attn_value_id *qkv_ids,
                                  const attn_value_id *extra, uint32_t extra_count,
                                  const attn_attention_attrs *attrs) {
  attn_value_id in[8] = {qkv_ids[0], qkv_ids[1], qkv_ids[2]};
  for (uint32_t i = 0; i < extra_count; i++)
    in[3 + i] = extra[i];
  return node(f, ATTN_OP_ATTENTION, in, 3 + extra_count, attrs);
}

static void expect_matches_naive(const fixture *f, const ref_case *c, const qkv *data,
                                 uint32_t out_index, int lse_index) {
  static double out[2 * 4 * MAX_T * 8], lse[2 * 4 * MAX_T];
  naive_attention(c, data->q, data->k, data->v, out, lse);
  const attn_tensor *o = &f->outputs[out_index];
  expect_shape(o, ATTN_DTYPE_F32, 4, DIMS(c->B, c->H, c->Tq, c->Dv));
  expect_values(o, out, c->B * c->H * c->Tq * c->Dv, 1e-6, "attention");
  if (lse_index >= 0) {
    expect_shape(&f->outputs[lse_index], ATTN_DTYPE_F32, 3, DIMS(c->B, c->H, c->Tq));
    expect_values(&f->outputs[lse_index], lse, c->B * c->H * c->Tq, 1e-6, "lse");
  }
}

// ---- attention -------------------------------------------------------------------------------

static void causal_attention_matches_naive_for_prefill_and_decode(void **state) {
  fixture *f = *state;
  static qkv data;
  // Prefill (Tq = Tk) and decode-like (Tq < Tk: rows sit at positions Tk - Tq + i).
  for (int variant = 0; variant < 2; variant++) {
    attn_graph_destroy(f->graph);
    assert_int_equal(
        attn_graph_create(attn_counting_allocator_get(&f->counter), &f->diag, "t", &f->graph),
        ATTN_OK);
    ref_case c = make_case(2, 2, 2, variant ? 2 : 5, 5, 8, 3, 0.3, ATTN_MASK_CAUSAL);
    attn_value_id ids[3];
    add_qkv(f, &c, &data, ids, 10 + (uint32_t)variant);
    attn_attention_attrs attrs = {.scale = 0.3, .mask = ATTN_MASK_CAUSAL, .has_lse = true};
    attn_node_id a = add_attention(f, ids, NULL, 0, &attrs);
    attn_attention_attrs no_mask = {.has_lse = true}; // scale 0: 1/sqrt(D)
    attn_node_id b = add_attention(f, ids, NULL, 0, &no_mask);
    set_outputs(
        f,
        (attn_value_id[]){attn_node_output(f->graph, a, 0), attn_node_output(f->graph, a, 1),
                          attn_node_output(f->graph, b, 0), attn_node_output(f->graph, b, 1)},
        4);
    run_ok(f, data.tensors);
    expect_matches_naive(f, &c, &data, 0, 1);
    ref_case full = c;
    full.scale = 1.0 / sqrt(8.0);
    full.mask = ATTN_MASK_NONE;
    expect_matches_naive(f, &full, &data, 2, 3);
  }
}

static void gqa_equals_attention_over_repeated_kv_heads(void **state) {
  fixture *f = *state;
  static qkv data;
  ref_case c = make_case(2, 4, 2, 3, 6, 8, 8, 0.25, ATTN_MASK_CAUSAL);
  attn_value_id ids[3];
  add_qkv(f, &c, &data, ids, 20);
  // k and v with every kv head written out once per query head that reads it.
  attn_type full_type = F32(4, {2, 4, 6, 8});
  attn_value_id k_full = input(f, "k_full", full_type), v_full = input(f, "v_full", full_type);
  static float k_rep[2 * 4 * 6 * 8], v_rep[2 * 4 * 6 * 8];
  for (int b = 0; b < 2; b++)
    for (int h = 0; h < 4; h++)
      for (int e = 0; e < 6 * 8; e++) {
        k_rep[(b * 4 + h) * 48 + e] = data.k[(b * 2 + (h >= 2)) * 48 + e];
        v_rep[(b * 4 + h) * 48 + e] = data.v[(b * 2 + (h >= 2)) * 48 + e];
      }
  attn_attention_attrs attrs = {.scale = 0.25, .mask = ATTN_MASK_CAUSAL, .has_lse = true};
  attn_node_id gqa = add_attention(f, ids, NULL, 0, &attrs);
  attn_node_id mha = add_attention(f, (attn_value_id[]){ids[0], k_full, v_full}, NULL, 0, &attrs);
  set_outputs(
      f,
      (attn_value_id[]){attn_node_output(f->graph, gqa, 0), attn_node_output(f->graph, gqa, 1),
                        attn_node_output(f->graph, mha, 0), attn_node_output(f->graph, mha, 1)},
      4);
  attn_tensor in[5] = {data.tensors[0], data.tensors[1], data.tensors[2],
                       tensor(ATTN_DTYPE_F32, k_rep, 4, full_type.dims),
                       tensor(ATTN_DTYPE_F32, v_rep, 4, full_type.dims)};
  run_ok(f, in);
  expect_matches_naive(f, &c, &data, 0, 1);
  assert_memory_equal(f->outputs[0].data, f->outputs[2].data, 2 * 4 * 3 * 8 * sizeof(float));
  assert_memory_equal(f->outputs[1].data, f->outputs[3].data, 2 * 4 * 3 * sizeof(float));
}

static void sliding_window_with_sinks_equals_an_explicit_bool_mask(void **state) {
  fixture *f = *state;
  static qkv data;
  enum { TQ = 4, TK = 10, WINDOW = 3, SINKS = 2 };
  ref_case c = make_case(1, 2, 1, TQ, TK, 8, 4, 0.5, ATTN_MASK_SLIDING_WINDOW);
  c.window = WINDOW;
  c.sinks = SINKS;
  attn_value_id ids[3];
  add_qkv(f, &c, &data, ids, 30);
  // visible[i][j]: key j is at most WINDOW - 1 positions behind row i, or is a sink.
  attn_value_id mask = input(f, "mask", (attn_type){ATTN_DTYPE_BOOL, 2, {TQ, TK}});
  static uint8_t visible[TQ * TK];
  for (int i = 0; i < TQ; i++) {
    int pos = TK - TQ + i;
    for (int j = 0; j < TK; j++)
      visible[i * TK + j] = j <= pos && (j >= pos - (WINDOW - 1) || j < SINKS);
  }
  attn_attention_attrs window = {.scale = 0.5,
                                 .mask = ATTN_MASK_SLIDING_WINDOW,
                                 .window = WINDOW,
                                 .sinks = SINKS,
                                 .has_lse = true};
  attn_attention_attrs explicit_mask = {.scale = 0.5, .has_mask = true, .has_lse = true};
  attn_node_id a = add_attention(f, ids, NULL, 0, &window);
  attn_node_id b = add_attention(f, ids, &mask, 1, &explicit_mask);
  set_outputs(f,
              (attn_value_id[]){attn_node_output(f->graph, a, 0), attn_node_output(f->graph, a, 1),
                                attn_node_output(f->graph, b, 0), attn_node_output(f->graph, b, 1)},
              4);
  attn_tensor in[4] = {data.tensors[0], data.tensors[1], data.tensors[2],
                       tensor(ATTN_DTYPE_BOOL, visible, 2, DIMS(TQ, TK))};
  run_ok(f, in);
  expect_matches_naive(f, &c, &data, 0, 1);
  assert_memory_equal(f->outputs[0].data, f->outputs[2].data, 2 * TQ * 4 * sizeof(float));
  assert_memory_equal(f->outputs[1].data, f->outputs[3].data, 2 * TQ * sizeof(float));
}

static void score_mod_softcap_and_alibi_match_explicit_forms(void **state) {
  fixture *f = *state;
  static qkv data;
  enum { H = 3, T = 5 };
  ref_case c = make_case(1, H, H, T, T, 8, 8, 2.0, ATTN_MASK_CAUSAL);
  attn_value_id ids[3];
  add_qkv(f, &c, &data, ids, 40);
  attn_value_id slopes = input(f, "slopes", F32(1, {H}));
  attn_value_id bias = input(f, "bias", F32(4, {1, H, T, T}));
  // softcap: 1.5 * tanh(score / 1.5)
  attn_expr score = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_SCORE};
  attn_expr cap = {.kind = ATTN_EXPR_NUMBER, .number = 1.5};
  attn_expr ratio = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_DIV, .arg_count = 2, .args = {&score, &cap}};
  attn_expr th = {.kind = ATTN_EXPR_UNARY, .fn = ATTN_EXPR_TANH, .arg_count = 1, .args = {&ratio}};
  attn_expr softcap = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_MUL, .arg_count = 2, .args = {&cap, &th}};
  // ALiBi: score + slopes[h] * (kv_idx - q_idx)
  attn_expr h = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_H};
  attn_expr kv = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_KV_IDX};
  attn_expr qi = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_Q_IDX};
  attn_expr slope = {.kind = ATTN_EXPR_CAPTURE, .capture = 0, .arg_count = 1, .args = {&h}};
  attn_expr dist = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_SUB, .arg_count = 2, .args = {&kv, &qi}};
  attn_expr term = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_MUL, .arg_count = 2, .args = {&slope, &dist}};
  attn_expr alibi = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_ADD, .arg_count = 2, .args = {&score, &term}};
  attn_attention_attrs capped = {.scale = 2.0, .mask = ATTN_MASK_CAUSAL, .score_mod = &softcap};
  attn_attention_attrs with_alibi = {
      .scale = 2.0, .mask = ATTN_MASK_CAUSAL, .has_lse = true, .score_mod = &alibi};
  attn_attention_attrs with_bias = {
      .scale = 2.0, .mask = ATTN_MASK_CAUSAL, .has_mask = true, .has_lse = true};
  attn_node_id a = add_attention(f, ids, NULL, 0, &capped);
  attn_node_id b = add_attention(f, ids, &slopes, 1, &with_alibi);
  attn_node_id m = add_attention(f, ids, &bias, 1, &with_bias);
  set_outputs(f,
              (attn_value_id[]){attn_node_output(f->graph, a, 0), attn_node_output(f->graph, b, 0),
                                attn_node_output(f->graph, b, 1), attn_node_output(f->graph, m, 0),
                                attn_node_output(f->graph, m, 1)},
              5);
  float slope_data[H] = {0.5f, 0.25f, 0.125f};
  static float bias_data[H * T * T];
  for (int hh = 0; hh < H; hh++)
    for (int i = 0; i < T; i++)
      for (int j = 0; j < T; j++)
        bias_data[(hh * T + i) * T + j] = slope_data[hh] * (float)(j - i);
  attn_tensor in[5] = {data.tensors[0], data.tensors[1], data.tensors[2],
                       tensor(ATTN_DTYPE_F32, slope_data, 1, DIMS(H)),
                       tensor(ATTN_DTYPE_F32, bias_data, 4, DIMS(1, H, T, T))};
  run_ok(f, in);
  ref_case soft = c;
  soft.softcap = 1.5;
  expect_matches_naive(f, &soft, &data, 0, -1);
  ref_case ali = c;
  ali.slopes = slope_data;
  expect_matches_naive(f, &ali, &data, 1, 2);
  for (int64_t i = 0; i < H * T * 8; i++)
    expect_near(at(&f->outputs[3], i), at(&f->outputs[1], i), 1e-6, "alibi vs bias", i);
  for (int64_t i = 0; i < H * T; i++)
    expect_near(at(&f->outputs[4], i), at(&f->outputs[2], i), 1e-6, "lse alibi vs bias", i);
}

static void fully_masked_rows_give_zeros_and_minus_infinity_lse(void **state) {
  fixture *f = *state;
  static qkv data;
  ref_case c =
      make_case(1, 1, 1, 3, 2, 4, 4, 1.0, ATTN_MASK_CAUSAL); // Tq > Tk: row 0 sits at pos -1
  attn_value_id ids[3];
  add_qkv(f, &c, &data, ids, 50);
  attn_value_id bmask = input(f, "bmask", (attn_type){ATTN_DTYPE_BOOL, 4, {1, 1, 3, 1}});
  attn_value_id fmask = input(f, "fmask", F32(2, {3, 2}));
  attn_attention_attrs causal = {.scale = 1.0, .mask = ATTN_MASK_CAUSAL, .has_lse = true};
  attn_attention_attrs masked = {.scale = 1.0, .has_mask = true, .has_lse = true};
  attn_node_id a = add_attention(f, ids, NULL, 0, &causal);
  attn_node_id b = add_attention(f, ids, &bmask, 1, &masked);
  attn_node_id m = add_attention(f, ids, &fmask, 1, &masked);
  attn_value_id outs[6];
  for (uint32_t i = 0; i < 2; i++) {
    outs[i] = attn_node_output(f->graph, a, i);
    outs[2 + i] = attn_node_output(f->graph, b, i);
    outs[4 + i] = attn_node_output(f->graph, m, i);
  }
  set_outputs(f, outs, 6);
  uint8_t bmask_data[3] = {1, 0, 1};
  float fmask_data[6] = {0, 0, -(double)INFINITY, -(double)INFINITY, 0, -(double)INFINITY};
  attn_tensor in[5] = {data.tensors[0], data.tensors[1], data.tensors[2],
                       tensor(ATTN_DTYPE_BOOL, bmask_data, 4, DIMS(1, 1, 3, 1)),
                       tensor(ATTN_DTYPE_F32, fmask_data, 2, DIMS(3, 2))};
  run_ok(f, in);
  expect_matches_naive(f, &c, &data, 0, 1);
  expect_near(at(&f->outputs[1], 0), -(double)INFINITY, 0, "lse of row 0", 0);
  for (int d = 0; d < 4; d++) {
    expect_near(at(&f->outputs[0], d), 0, 0, "causal row 0", d);
    expect_near(at(&f->outputs[2], 4 + d), 0, 0, "bool-masked row 1", d);
    expect_near(at(&f->outputs[4], 4 + d), 0, 0, "-inf row 1", d);
    // Row 2 of the float mask sees key 0 alone: its value row.
    expect_near(at(&f->outputs[4], 8 + d), (double)data.v[d], 0, "single key", d);
  }
  expect_near(at(&f->outputs[3], 1), -(double)INFINITY, 0, "lse bool-masked", 1);
  expect_near(at(&f->outputs[5], 1), -(double)INFINITY, 0, "lse -inf row", 1);
  assert_true(isfinite(at(&f->outputs[3], 0)) && isfinite(at(&f->outputs[5], 0)));
}

static void sigmoid_normaliser_does_not_normalise(void **state) {
  fixture *f = *state;
  static qkv data;
  ref_case c = make_case(2, 2, 1, 4, 4, 8, 8, 0.35, ATTN_MASK_CAUSAL);
  c.sigmoid = true;
  c.sigmoid_bias = -1.25;
  attn_value_id ids[3];
  add_qkv(f, &c, &data, ids, 60);
  attn_attention_attrs attrs = {.scale = 0.35,
                                .mask = ATTN_MASK_CAUSAL,
                                .norm = ATTN_NORM_SIGMOID,
                                .sigmoid_bias = -1.25,
                                .has_lse = true};
  attn_node_id a = add_attention(f, ids, NULL, 0, &attrs);
  set_outputs(
      f, (attn_value_id[]){attn_node_output(f->graph, a, 0), attn_node_output(f->graph, a, 1)}, 2);
  run_ok(f, data.tensors);
  expect_matches_naive(f, &c, &data, 0, 1); // lse is log sum exp of the logits either way
}

static void half_precision_attention_rounds_its_result_once(void **state) {
  fixture *f = *state;
  static qkv data;
  ref_case c = make_case(1, 2, 2, 3, 3, 8, 8, 0.0, ATTN_MASK_CAUSAL);
  c.scale = 1.0 / sqrt(8.0);
  attn_type qt = {ATTN_DTYPE_F16, 4, {1, 2, 3, 8}};
  attn_value_id ids[3] = {input(f, "q", qt), input(f, "k", qt), input(f, "v", qt)};
  attn_attention_attrs attrs = {.mask = ATTN_MASK_CAUSAL, .has_lse = true};
  attn_node_id a = add_attention(f, ids, NULL, 0, &attrs);
  set_outputs(
      f, (attn_value_id[]){attn_node_output(f->graph, a, 0), attn_node_output(f->graph, a, 1)}, 2);
  static uint16_t halves[3][48];
  float *floats[3] = {data.q, data.k, data.v};
  attn_tensor in[3];
  for (int t = 0; t < 3; t++) {
    fill_random(floats[t], 48, 70 + (uint32_t)t);
    for (int i = 0; i < 48; i++) { // the reference sees the f16 values
      halves[t][i] = attn_f32_to_f16(floats[t][i]);
      floats[t][i] = attn_f16_to_f32(halves[t][i]);
    }
    in[t] = tensor(ATTN_DTYPE_F16, halves[t], 4, qt.dims);
  }
  run_ok(f, in);
  static double out[48], lse[6];
  naive_attention(&c, data.q, data.k, data.v, out, lse);
  assert_int_equal(f->outputs[0].dtype, ATTN_DTYPE_F16);
  assert_int_equal(f->outputs[1].dtype, ATTN_DTYPE_F32);
  for (int i = 0; i < 48; i++) // within half an f16 ulp (2^-11 relative) of the exact result
    expect_near(at(&f->outputs[0], i), out[i], ldexp(1.0, -11) + 1e-12, "f16 out", i);
  expect_values(&f->outputs[1], lse, 6, 1e-6, "lse");
}

static void score_mod_capture_out_of_range_is_an_error(void **state) {
  fixture *f = *state;
  static qkv data;
  ref_case c = make_case(1, 1, 1, 2, 5, 4, 4, 1.0, ATTN_MASK_CAUSAL);
  attn_value_id ids[3];
  add_qkv(f, &c, &data, ids, 80);
  attn_value_id bias = input(f, "bias", F32(1, {2}));
  attn_expr score = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_SCORE};
  attn_expr qi = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_Q_IDX};
  attn_expr b = {.kind = ATTN_EXPR_CAPTURE, .capture = 0, .arg_count = 1, .args = {&qi}};
  attn_expr sum = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_ADD, .arg_count = 2, .args = {&score, &b}};
  attn_attention_attrs attrs = {.mask = ATTN_MASK_CAUSAL, .score_mod = &sum};
  set_output(f, attn_node_output(f->graph, add_attention(f, ids, &bias, 1, &attrs), 0));
  float bias_data[2] = {0, 0};
  attn_tensor in[4] = {data.tensors[0], data.tensors[1], data.tensors[2],
                       tensor(ATTN_DTYPE_F32, bias_data, 1, DIMS(2))};
  // q_idx is the absolute position (3 and 4 here), past the 2 entries of bias.
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "attention: score_mod: capture 0 ('bias') indexed with 3 along axis 0 of size 2 "
               "at b=0, h=0, q_idx=3, kv_idx=0");
  const attn_diagnostic *d = &f->diag.items[f->diag.count - 1];
  assert_int_equal(d->loc.line, 3);
}

static void expr_eval_selects_lazily_and_reports_faults(void **state) {
  (void)state;
  float table_data[3] = {10, 20, 30};
  attn_tensor table = tensor(ATTN_DTYPE_F32, table_data, 1, DIMS(3));
  attn_expr_env env = {{0.5, 1, 2, 7, 4}, &table, 1};
  attn_expr kv = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_KV_IDX};
  attn_expr qi = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_Q_IDX};
  attn_expr h = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_H};
  attn_expr lt = {.kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_LT, .arg_count = 2, .args = {&kv, &h}};
  attn_expr in_range = {.kind = ATTN_EXPR_CAPTURE, .arg_count = 1, .args = {&h}};
  attn_expr out_of_range = {.kind = ATTN_EXPR_CAPTURE, .arg_count = 1, .args = {&qi}};
  // kv_idx < h ? table[q_idx] : table[h]: the out-of-range branch is not taken.
  attn_expr select = {
      .kind = ATTN_EXPR_SELECT, .arg_count = 3, .args = {&lt, &out_of_range, &in_range}};
  double value = 0;
  assert_int_equal(attn_expr_eval(&select, &env, &value, NULL), ATTN_OK);
  assert_true(value == 30.0);
  attn_expr_fault fault = {0};
  assert_int_equal(attn_expr_eval(&out_of_range, &env, &value, &fault),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(fault.capture, 0);
  assert_int_equal(fault.axis, 0);
  assert_int_equal(fault.index, 7);
  assert_int_equal(fault.size, 3);
  attn_expr nan_number = {.kind = ATTN_EXPR_NUMBER, .number = (double)NAN};
  attn_expr nan_index = {.kind = ATTN_EXPR_CAPTURE, .arg_count = 1, .args = {&nan_number}};
  assert_int_equal(attn_expr_eval(&nan_index, &env, &value, &fault), ATTN_ERROR_INVALID_ARGUMENT);
  assert_true(fault.index == INT64_MIN);
  // Functions: max(score, -1) ** 2, min, le, eq, sigmoid.
  attn_expr score = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_SCORE};
  attn_expr minus1 = {.kind = ATTN_EXPR_NUMBER, .number = -1};
  attn_expr two = {.kind = ATTN_EXPR_NUMBER, .number = 2};
  attn_expr mx = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_MAX, .arg_count = 2, .args = {&score, &minus1}};
  attn_expr pw = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_POW, .arg_count = 2, .args = {&mx, &two}};
  assert_int_equal(attn_expr_eval(&pw, &env, &value, NULL), ATTN_OK);
  assert_true(value == 0.25);
  attn_expr le = {.kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_LE, .arg_count = 2, .args = {&two, &h}};
  attn_expr eq = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_EQ, .arg_count = 2, .args = {&two, &kv}};
  assert_int_equal(attn_expr_eval(&le, &env, &value, NULL), ATTN_OK);
  assert_true(value == 1.0);
  assert_int_equal(attn_expr_eval(&eq, &env, &value, NULL), ATTN_OK);
  assert_true(value == 0.0);
  attn_expr sig = {
      .kind = ATTN_EXPR_UNARY, .fn = ATTN_EXPR_SIGMOID, .arg_count = 1, .args = {&minus1}};
  assert_int_equal(attn_expr_eval(&sig, &env, &value, NULL), ATTN_OK);
  expect_near(value, 0.2689414213699951, 1e-15, "sigmoid(-1)", 0);
}

// ---- rope ------------------------------------------------------------------------------------

// Rotates pairs of x[rows][D] as complex numbers z = x[a] + i x[b] times e^{i pos / theta^(2k/r)}.
static void naive_rope(const float *x, const int64_t *pos_of_row, int64_t rows, int64_t d_count,
                       int64_t rotary, bool interleaved, double theta, double *out) {
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t d = 0; d < d_count; d++)
      out[r * d_count + d] = (double)x[r * d_count + d];
    for (int64_t k = 0; k < rotary / 2; k++) {
      int64_t a = interleaved ? 2 * k : k, b = interleaved ? 2 * k + 1 : k + rotary / 2;
      double complex z = (double)x[r * d_count + a] + (double)x[r * d_count + b] * (double complex)I;
      double angle = (double)pos_of_row[r] / pow(theta, (double)(2 * k) / (double)rotary);
      z *= cexp(angle * (double complex)I);
      out[r * d_count + a] = creal(z);
      out[r * d_count + b] = cimag(z);
    }
  }
}

static void rope_rotates_pairs_like_complex_multiplication(void **state) {
  fixture *f = *state;
  enum { B = 2, H = 2, T = 3, D = 8 };
  attn_value_id x = input(f, "x", F32(4, {B, H, T, D}));
  attn_value_id pos_bt = input(f, "pos_bt", (attn_type){ATTN_DTYPE_I64, 2, {B, T}});
  attn_value_id x2 = input(f, "x2", F32(2, {T, D}));
  attn_value_id pos_t = input(f, "pos_t", (attn_type){ATTN_DTYPE_I32, 1, {T}});
  attn_rope_attrs half = {10000.0, ATTN_ROPE_HALF, 0}, inter = {500.0, ATTN_ROPE_INTERLEAVED, 0},
                  partial = {10000.0, ATTN_ROPE_HALF, 4};
  set_outputs(f,
              (attn_value_id[]){op2(f, ATTN_OP_ROPE, x, pos_bt, &half),
                                op2(f, ATTN_OP_ROPE, x, pos_bt, &inter),
                                op2(f, ATTN_OP_ROPE, x, pos_bt, &partial),
                                op2(f, ATTN_OP_ROPE, x2, pos_t, &inter)},
              4);
  static float x_data[B * H * T * D], x2_data[T * D];
  fill_random(x_data, B * H * T * D, 90);
  fill_random(x2_data, T * D, 91);
  int64_t pos_bt_data[B * T] = {0, 1, 2, 7, 8, 100};
  int32_t pos_t_data[T] = {5, 0, 12};
  attn_tensor in[4] = {tensor(ATTN_DTYPE_F32, x_data, 4, DIMS(B, H, T, D)),
                       tensor(ATTN_DTYPE_I64, pos_bt_data, 2, DIMS(B, T)),
                       tensor(ATTN_DTYPE_F32, x2_data, 2, DIMS(T, D)),
                       tensor(ATTN_DTYPE_I32, pos_t_data, 1, DIMS(T))};
  run_ok(f, in);
  int64_t row_pos[B * H * T], row_pos_t[T];
  for (int b = 0; b < B; b++) // positions [B, T] broadcast over the heads
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++)
        row_pos[(b * H + h) * T + t] = pos_bt_data[b * T + t];
  for (int t = 0; t < T; t++)
    row_pos_t[t] = pos_t_data[t];
  static double want[B * H * T * D];
  naive_rope(x_data, row_pos, B * H * T, D, D, false, 10000.0, want);
  expect_values(&f->outputs[0], want, B * H * T * D, 1e-6, "rope half");
  naive_rope(x_data, row_pos, B * H * T, D, D, true, 500.0, want);
  expect_values(&f->outputs[1], want, B * H * T * D, 1e-6, "rope interleaved");
  naive_rope(x_data, row_pos, B * H * T, D, 4, false, 10000.0, want);
  expect_values(&f->outputs[2], want, B * H * T * D, 1e-6, "rope rotary_dim 4");
  for (int r = 0; r < B * H * T; r++) // channels 4..7 pass through unchanged
    for (int d = 4; d < D; d++)
      assert_true(at(&f->outputs[2], r * D + d) == (double)x_data[r * D + d]);
  naive_rope(x2_data, row_pos_t, T, D, D, true, 500.0, want);
  expect_values(&f->outputs[3], want, T * D, 1e-6, "rope [T, D]");
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      TEST(causal_attention_matches_naive_for_prefill_and_decode),
      TEST(gqa_equals_attention_over_repeated_kv_heads),
      TEST(sliding_window_with_sinks_equals_an_explicit_bool_mask),
      TEST(score_mod_softcap_and_alibi_match_explicit_forms),
      TEST(fully_masked_rows_give_zeros_and_minus_infinity_lse),
      TEST(sigmoid_normaliser_does_not_normalise),
      TEST(half_precision_attention_rounds_its_result_once),
      TEST(score_mod_capture_out_of_range_is_an_error),
      TEST(expr_eval_selects_lazily_and_reports_faults),
      TEST(rope_rotates_pairs_like_complex_multiplication),
#undef TEST
  };
  return cmocka_run_group_tests_name("ir/interp_attention", tests, NULL, NULL);
}
