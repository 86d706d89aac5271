// Unit tests for the reference evaluator (ir/interp*.c): leaves, elementwise ops, matmul,
// normalisation, reductions, shape ops, topk, rounding, error messages, memory use and an
// allocation-failure sweep. Expected values are hand-computed or come from loops in this file
// written independently of the implementation. Attention and rope are in interp_attention_test.c.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "interp_test_util.h"

#define F32(...)  ((attn_type){ATTN_DTYPE_F32, __VA_ARGS__})
#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

static const double f32_tol = 2e-7;

// ---- leaves ----------------------------------------------------------------------------------

static void leaves_bind_weights_constants_and_symbolic_iota(void **state) {
  fixture *f = *state;
  attn_dim t_past = sym(f, "T_past");
  static const char *const w_name = "w";
  attn_weight_attrs wa = {&w_name, 1, F32(2, {2, 3})};
  attn_node_id w = node(f, ATTN_OP_WEIGHT, NULL, 0, &wa);
  static const float c_data[6] = {10, 20, 30, 40, 50, 60};
  attn_constant_attrs ca = {F32(2, {2, 3}), c_data};
  attn_value_id c = op(f, ATTN_OP_CONSTANT, NULL, 0, &ca);
  attn_value_id wv = attn_node_output(f->graph, w, 0);
  attn_value_id sum = op2(f, ATTN_OP_ADD, wv, c, NULL);
  attn_iota_attrs ia = {{ATTN_DTYPE_I64, 2, {2, 3}}, 1, t_past};
  attn_value_id iota = op(f, ATTN_OP_IOTA, NULL, 0, &ia);
  attn_iota_attrs fa = {F32(2, {2, 3}), 0, 2};
  attn_value_id iota_f = op(f, ATTN_OP_IOTA, NULL, 0, &fa);
  set_outputs(f, (attn_value_id[]){sum, iota, iota_f, wv, c}, 5);

  float w_data[6] = {1, 2, 3, 4, 5, 6};
  attn_tensor weights[8] = {0};
  weights[w.index] = tensor(ATTN_DTYPE_F32, w_data, 2, DIMS(2, 3));
  int64_t symbols[1] = {5};
  assert_int_equal(run_with(f, NULL, weights, symbols), ATTN_OK);
  expect_values(&f->outputs[0], (double[]){11, 22, 33, 44, 55, 66}, 6, 0, "w + c");
  expect_shape(&f->outputs[1], ATTN_DTYPE_I64, 2, DIMS(2, 3));
  expect_values(&f->outputs[1], (double[]){5, 6, 7, 5, 6, 7}, 6, 0, "iota");
  expect_values(&f->outputs[2], (double[]){2, 2, 2, 3, 3, 3}, 6, 0, "iota axis 0");
  // Outputs that are the caller's or the graph's data come back as copies.
  expect_values(&f->outputs[3], (double[]){1, 2, 3, 4, 5, 6}, 6, 0, "weight");
  assert_ptr_not_equal(f->outputs[3].data, w_data);
  assert_ptr_not_equal(f->outputs[4].data, c_data);

  // A bf16 weight bound to an f32 declaration is converted.
  uint16_t w_bf16[6];
  for (int i = 0; i < 6; i++)
    w_bf16[i] = attn_f32_to_bf16(w_data[i] + 0.5f);
  weights[w.index] = tensor(ATTN_DTYPE_BF16, w_bf16, 2, DIMS(2, 3));
  assert_int_equal(run_with(f, NULL, weights, symbols), ATTN_OK);
  expect_values(&f->outputs[3], (double[]){1.5, 2.5, 3.5, 4.5, 5.5, 6.5}, 6, 0, "converted");
}

// ---- elementwise -----------------------------------------------------------------------------

typedef struct unary_case {
  attn_op op;
  attn_gelu_approx approx;
  bool positive_input; // use {0.5, 2, 3, 10} instead of {-1.5, -0.25, 0.5, 2}
  double want[4];      // computed with Python's math module
} unary_case;

static void unary_float_ops_match_known_values(void **state) {
  fixture *f = *state;
  static const unary_case cases[] = {
      {ATTN_OP_NEG, 0, false, {1.5, 0.25, -0.5, -2.0}},
      {ATTN_OP_ABS, 0, false, {1.5, 0.25, 0.5, 2.0}},
      {ATTN_OP_RELU, 0, false, {0.0, 0.0, 0.5, 2.0}},
      {ATTN_OP_EXP,
       0,
       false,
       {0.22313016014842982, 0.7788007830714049, 1.6487212707001282, 7.38905609893065}},
      {ATTN_OP_TANH,
       0,
       false,
       {-0.9051482536448664, -0.24491866240370913, 0.46211715726000974, 0.9640275800758169}},
      {ATTN_OP_ERF,
       0,
       false,
       {-0.9661051464753108, -0.2763263901682369, 0.5204998778130465, 0.9953222650189527}},
      {ATTN_OP_SIGMOID,
       0,
       false,
       {0.18242552380635635, 0.43782349911420193, 0.6224593312018546, 0.8807970779778823}},
      {ATTN_OP_SILU,
       0,
       false,
       {-0.2736382857095345, -0.10945587477855048, 0.3112296656009273, 1.7615941559557646}},
      {ATTN_OP_GELU,
       ATTN_GELU_ERF,
       false,
       {-0.10021080190328713, -0.10032341857926907, 0.34573123063700656, 1.9544997361036416}},
      {ATTN_OP_GELU,
       ATTN_GELU_TANH,
       false,
       {-0.10042842301976707, -0.100324649298315, 0.34571400982514394, 1.954597694087775}},
      {ATTN_OP_LOG,
       0,
       true,
       {-0.6931471805599453, 0.6931471805599453, 1.0986122886681098, 2.302585092994046}},
      {ATTN_OP_SQRT,
       0,
       true,
       {0.7071067811865476, 1.4142135623730951, 1.7320508075688772, 3.1622776601683795}},
      {ATTN_OP_RSQRT,
       0,
       true,
       {1.4142135623730951, 0.7071067811865476, 0.5773502691896258, 0.31622776601683794}},
  };
  attn_value_id x = input(f, "x", F32(1, {4}));
  attn_value_id xh = input(f, "xh", (attn_type){ATTN_DTYPE_F16, 1, {4}});
  float mixed[4] = {-1.5f, -0.25f, 0.5f, 2.0f}, positive[4] = {0.5f, 2.0f, 3.0f, 10.0f};
  uint16_t mixed_f16[4], positive_f16[4];
  for (int i = 0; i < 4; i++) {
    mixed_f16[i] = attn_f32_to_f16(mixed[i]);
    positive_f16[i] = attn_f32_to_f16(positive[i]);
  }
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    attn_gelu_attrs ga = {cases[c].approx};
    const void *attrs = cases[c].op == ATTN_OP_GELU ? &ga : NULL;
    attn_value_id y = op1(f, cases[c].op, x, attrs);
    attn_value_id yh = op1(f, cases[c].op, xh, attrs);
    set_outputs(f, (attn_value_id[]){y, yh}, 2);
    bool pos = cases[c].positive_input;
    attn_tensor in[2] = {tensor(ATTN_DTYPE_F32, pos ? positive : mixed, 1, DIMS(4)),
                         tensor(ATTN_DTYPE_F16, pos ? positive_f16 : mixed_f16, 1, DIMS(4))};
    run_ok(f, in);
    const char *name = attn_op_get_info(cases[c].op)->name;
    for (int i = 0; i < 4; i++) {
      expect_near(at(&f->outputs[0], i), (double)(float)cases[c].want[i], 0, name, i);
      double want_f16 = (double)attn_f16_to_f32(attn_f32_to_f16((float)cases[c].want[i]));
      expect_near(at(&f->outputs[1], i), want_f16, 0, name, i);
    }
  }
}

static void unary_integer_and_bool_ops_are_exact(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", (attn_type){ATTN_DTYPE_I32, 1, {4}});
  attn_value_id b = input(f, "b", (attn_type){ATTN_DTYPE_BOOL, 1, {2}});
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_NEG, x, NULL), op1(f, ATTN_OP_ABS, x, NULL),
                                op1(f, ATTN_OP_RELU, x, NULL), op1(f, ATTN_OP_NOT, b, NULL)},
              4);
  int32_t x_data[4] = {-5, 0, 7, INT32_MIN};
  uint8_t b_data[2] = {1, 0};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_I32, x_data, 1, DIMS(4)),
                       tensor(ATTN_DTYPE_BOOL, b_data, 1, DIMS(2))};
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){5, 0, -7, INT32_MAX}, 4, 0, "neg saturates");
  expect_values(&f->outputs[1], (double[]){5, 0, 7, INT32_MAX}, 4, 0, "abs");
  expect_values(&f->outputs[2], (double[]){0, 0, 7, 0}, 4, 0, "relu");
  expect_values(&f->outputs[3], (double[]){0, 1}, 2, 0, "not");
}

static void cast_truncates_saturates_and_rounds(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(1, {5}));
  attn_value_id n = input(f, "n", (attn_type){ATTN_DTYPE_I64, 1, {2}});
  attn_cast_attrs to_i32 = {ATTN_DTYPE_I32}, to_bool = {ATTN_DTYPE_BOOL}, to_f16 = {ATTN_DTYPE_F16},
                  to_f32 = {ATTN_DTYPE_F32}, to_i8 = {ATTN_DTYPE_I8};
  attn_value_id as_bool = op1(f, ATTN_OP_CAST, x, &to_bool);
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_CAST, x, &to_i32), as_bool,
                                op1(f, ATTN_OP_CAST, x, &to_f16), op1(f, ATTN_OP_CAST, n, &to_f32),
                                op1(f, ATTN_OP_CAST, as_bool, &to_f32),
                                op1(f, ATTN_OP_CAST, n, &to_i8)},
              6);
  float x_data[5] = {-2.7f, 2.7f, 3e10f, (double)NAN, 0.0f};
  int64_t n_data[2] = {16777217, -300};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(5)),
                       tensor(ATTN_DTYPE_I64, n_data, 1, DIMS(2))};
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){-2, 2, INT32_MAX, 0, 0}, 5, 0, "f32 -> i32");
  expect_values(&f->outputs[1], (double[]){1, 1, 1, 1, 0}, 5, 0, "f32 -> bool");
  // 2.7 lies between the f16 values 2.69921875 and 2.701171875, nearer the first.
  expect_near(at(&f->outputs[2], 1), 2.69921875, 0, "f32 -> f16", 1);
  expect_near(at(&f->outputs[2], 2), (double)INFINITY, 0, "f32 -> f16 overflow", 2);
  expect_values(&f->outputs[3], (double[]){16777216, -300}, 2, 0, "i64 -> f32");
  expect_values(&f->outputs[4], (double[]){1, 1, 1, 1, 0}, 5, 0, "bool -> f32");
  expect_values(&f->outputs[5], (double[]){127, -128}, 2, 0, "i64 -> i8 saturates");
}

static double apply_binary(attn_op op_code, double a, double b) {
  switch (op_code) {
  case ATTN_OP_ADD:
    return a + b;
  case ATTN_OP_SUB:
    return a - b;
  case ATTN_OP_MUL:
    return a * b;
  case ATTN_OP_DIV:
    return a / b;
  case ATTN_OP_POW:
    return pow(a, b);
  case ATTN_OP_MAXIMUM:
    return fmax(a, b);
  case ATTN_OP_MINIMUM:
    return fmin(a, b);
  case ATTN_OP_EQ:
    return a == b;
  case ATTN_OP_NE:
    return a != b;
  case ATTN_OP_LT:
    return a < b;
  case ATTN_OP_LE:
    return a <= b;
  case ATTN_OP_GT:
    return a > b;
  case ATTN_OP_GE:
    return a >= b;
  default:
    return (double)NAN;
  }
}

static void binary_ops_broadcast_like_numpy(void **state) {
  fixture *f = *state;
  static const attn_op ops[] = {ATTN_OP_ADD, ATTN_OP_SUB,     ATTN_OP_MUL,     ATTN_OP_DIV,
                                ATTN_OP_POW, ATTN_OP_MAXIMUM, ATTN_OP_MINIMUM, ATTN_OP_EQ,
                                ATTN_OP_NE,  ATTN_OP_LT,      ATTN_OP_LE,      ATTN_OP_GT,
                                ATTN_OP_GE};
  attn_value_id a = input(f, "a", F32(2, {2, 3}));
  attn_value_id b = input(f, "b", F32(1, {3}));
  attn_value_id col = input(f, "col", F32(2, {2, 1}));
  float a_data[6] = {1.5f, 2.0f, 0.25f, 3.0f, 2.0f, 4.0f};
  float b_data[3] = {2.0f, 2.0f, 0.5f};
  float col_data[2] = {10.0f, 20.0f};
  attn_tensor in[3] = {tensor(ATTN_DTYPE_F32, a_data, 2, DIMS(2, 3)),
                       tensor(ATTN_DTYPE_F32, b_data, 1, DIMS(3)),
                       tensor(ATTN_DTYPE_F32, col_data, 2, DIMS(2, 1))};
  for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
    // a[2, 3] op b[3] and b[3] op col[2, 1] (both operands broadcast).
    set_outputs(f, (attn_value_id[]){op2(f, ops[o], a, b, NULL), op2(f, ops[o], b, col, NULL)}, 2);
    run_ok(f, in);
    bool is_compare = ops[o] >= ATTN_OP_EQ;
    assert_int_equal(f->outputs[0].dtype, is_compare ? ATTN_DTYPE_BOOL : ATTN_DTYPE_F32);
    expect_shape(&f->outputs[1], f->outputs[0].dtype, 2, DIMS(2, 3));
    const char *name = attn_op_get_info(ops[o])->name;
    for (int i = 0; i < 2; i++) {
      for (int j = 0; j < 3; j++) {
        double want = apply_binary(ops[o], (double)a_data[i * 3 + j], (double)b_data[j]);
        expect_near(at(&f->outputs[0], i * 3 + j), (double)(float)want, 0, name, i * 3 + j);
        want = apply_binary(ops[o], (double)b_data[j], (double)col_data[i]);
        expect_near(at(&f->outputs[1], i * 3 + j), (double)(float)want, 0, name, i * 3 + j);
      }
    }
  }
}

static void binary_float_division_by_zero_and_nan(void **state) {
  fixture *f = *state;
  attn_value_id a = input(f, "a", F32(1, {3}));
  attn_value_id b = input(f, "b", F32(1, {3}));
  set_outputs(f,
              (attn_value_id[]){op2(f, ATTN_OP_DIV, a, b, NULL),
                                op2(f, ATTN_OP_MAXIMUM, a, b, NULL), op2(f, ATTN_OP_EQ, a, a, NULL),
                                op2(f, ATTN_OP_NE, a, a, NULL)},
              4);
  float a_data[3] = {1.0f, -1.0f, (double)NAN}, b_data[3] = {0.0f, 0.0f, 1.0f};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_F32, a_data, 1, DIMS(3)),
                       tensor(ATTN_DTYPE_F32, b_data, 1, DIMS(3))};
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){(double)INFINITY, -(double)INFINITY, (double)NAN}, 3, 0,
                "div");
  expect_values(&f->outputs[1], (double[]){1, 0, (double)NAN}, 3, 0, "maximum propagates NaN");
  expect_values(&f->outputs[2], (double[]){1, 1, 0}, 3, 0, "NaN == NaN is false");
  expect_values(&f->outputs[3], (double[]){0, 0, 1}, 3, 0, "NaN != NaN is true");
}

static void binary_integer_ops_truncate_and_saturate(void **state) {
  fixture *f = *state;
  attn_type i32 = {ATTN_DTYPE_I32, 1, {5}};
  attn_value_id a = input(f, "a", i32);
  attn_value_id b = input(f, "b", i32);
  attn_value_id p = input(f, "p", (attn_type){ATTN_DTYPE_BOOL, 2, {2, 2}});
  attn_value_id q = input(f, "q", (attn_type){ATTN_DTYPE_BOOL, 1, {2}});
  attn_value_id power = op2(f, ATTN_OP_POW, b, a, NULL);
  set_outputs(f,
              (attn_value_id[]){op2(f, ATTN_OP_DIV, a, b, NULL), op2(f, ATTN_OP_ADD, a, b, NULL),
                                power, op2(f, ATTN_OP_LT, a, b, NULL),
                                op2(f, ATTN_OP_AND, p, q, NULL), op2(f, ATTN_OP_OR, p, q, NULL)},
              6);
  int32_t a_data[5] = {-7, 7, -7, INT32_MAX, 3};
  int32_t b_data[5] = {2, 2, -2, 1, -1};
  uint8_t p_data[4] = {0, 1, 1, 0}, q_data[2] = {0, 1};
  attn_tensor in[4] = {
      tensor(ATTN_DTYPE_I32, a_data, 1, DIMS(5)), tensor(ATTN_DTYPE_I32, b_data, 1, DIMS(5)),
      tensor(ATTN_DTYPE_BOOL, p_data, 2, DIMS(2, 2)), tensor(ATTN_DTYPE_BOOL, q_data, 1, DIMS(2))};
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){-3, 3, 3, INT32_MAX, -3}, 5, 0, "div toward zero");
  expect_values(&f->outputs[1], (double[]){-5, 9, -9, INT32_MAX, 2}, 5, 0, "add saturates");
  // 2^-7 truncates to 0, 2^7 = 128, (-2)^-7 to 0, 1^big = 1, (-1)^3 = -1.
  expect_values(&f->outputs[2], (double[]){0, 128, 0, 1, -1}, 5, 0, "pow");
  expect_values(&f->outputs[3], (double[]){1, 0, 1, 0, 0}, 5, 0, "lt");
  expect_values(&f->outputs[4], (double[]){0, 1, 0, 0}, 4, 0, "and");
  expect_values(&f->outputs[5], (double[]){0, 1, 1, 1}, 4, 0, "or");

  b_data[1] = 0;
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "div: integer division by zero (7 / 0)");
  set_output(f, power); // 0^7 = 0 is fine, 0^-7 is not
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){0, 0, 0, 1, -1}, 5, 0, "pow of 0");
  b_data[0] = 0;
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "pow: integer 0 raised to the negative power -7");
}

static void where_broadcasts_all_three_operands(void **state) {
  fixture *f = *state;
  attn_value_id cond = input(f, "cond", (attn_type){ATTN_DTYPE_BOOL, 2, {2, 1}});
  attn_value_id a = input(f, "a", F32(2, {2, 3}));
  attn_value_id b = input(f, "b", F32(0, {0}));
  set_output(f, op(f, ATTN_OP_WHERE, (attn_value_id[]){cond, a, b}, 3, NULL));
  uint8_t cond_data[2] = {1, 0};
  float a_data[6] = {1, 2, 3, 4, 5, 6}, b_data[1] = {-1};
  attn_tensor in[3] = {tensor(ATTN_DTYPE_BOOL, cond_data, 2, DIMS(2, 1)),
                       tensor(ATTN_DTYPE_F32, a_data, 2, DIMS(2, 3)),
                       tensor(ATTN_DTYPE_F32, b_data, 0, NULL)};
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 2, DIMS(2, 3));
  expect_values(&f->outputs[0], (double[]){1, 2, 3, -1, -1, -1}, 6, 0, "where");
}

// ---- matmul ----------------------------------------------------------------------------------

// a[batch_a][M][K] (or [K][M] with ta) times b[batch_b][K][N] (or [N][K] with tb), batch index of
// the output (i, j) reading a's batch i % batch_a... computed the long way.
static double naive_dot(const float *a, const float *b, int64_t m, int64_t n, int64_t k_count,
                        int64_t m_count, int64_t n_count, bool ta, bool tb) {
  double sum = 0.0;
  for (int64_t k = 0; k < k_count; k++) {
    double x = ta ? (double)a[k * m_count + m] : (double)a[m * k_count + k];
    double y = tb ? (double)b[n * k_count + k] : (double)b[k * n_count + n];
    sum += x * y;
  }
  return sum;
}

static void matmul_broadcasts_batches_and_transposes(void **state) {
  fixture *f = *state;
  enum { M = 3, K = 4, N = 5 };
  // a: [2, 1, M, K] (or [2, 1, K, M]); b: [3, K, N] (or [3, N, K]); out: [2, 3, M, N].
  float a_data[2 * M * K], b_data[3 * K * N];
  fill_random(a_data, 2 * M * K, 1);
  fill_random(b_data, 3 * K * N, 2);
  for (int variant = 0; variant < 4; variant++) {
    bool ta = variant & 1, tb = variant & 2;
    attn_graph_destroy(f->graph);
    assert_int_equal(
        attn_graph_create(attn_counting_allocator_get(&f->counter), &f->diag, "t", &f->graph),
        ATTN_OK);
    attn_type at_type = ta ? F32(4, {2, 1, K, M}) : F32(4, {2, 1, M, K});
    attn_type bt_type = tb ? F32(3, {3, N, K}) : F32(3, {3, K, N});
    attn_value_id a = input(f, "a", at_type), b = input(f, "b", bt_type);
    attn_matmul_attrs ma = {ta, tb};
    set_output(f, op2(f, ATTN_OP_MATMUL, a, b, &ma));
    attn_tensor in[2] = {tensor(ATTN_DTYPE_F32, a_data, 4, at_type.dims),
                         tensor(ATTN_DTYPE_F32, b_data, 3, bt_type.dims)};
    run_ok(f, in);
    expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 4, DIMS(2, 3, M, N));
    for (int64_t ba = 0; ba < 2; ba++) {
      for (int64_t bb = 0; bb < 3; bb++) {
        for (int64_t m = 0; m < M; m++) {
          for (int64_t n = 0; n < N; n++) {
            double want =
                naive_dot(a_data + ba * M * K, b_data + bb * K * N, m, n, K, M, N, ta, tb);
            int64_t index = ((ba * 3 + bb) * M + m) * N + n;
            expect_near(at(&f->outputs[0], index), (double)(float)want, 0, "matmul", index);
          }
        }
      }
    }
  }
}

static void matmul_of_integers_is_exact(void **state) {
  fixture *f = *state;
  attn_type type = {ATTN_DTYPE_I64, 2, {2, 2}};
  attn_value_id a = input(f, "a", type), b = input(f, "b", type);
  set_output(f, op2(f, ATTN_OP_MATMUL, a, b, NULL));
  int64_t a_data[4] = {(int64_t)1 << 60, 1, 2, 3}, b_data[4] = {1, 0, 5, 7};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_I64, a_data, 2, DIMS(2, 2)),
                       tensor(ATTN_DTYPE_I64, b_data, 2, DIMS(2, 2))};
  run_ok(f, in);
  const int64_t *y = f->outputs[0].data;
  assert_int_equal(y[0], ((int64_t)1 << 60) + 5); // not representable in a double
  assert_int_equal(y[1], 7);
  assert_int_equal(y[2], 17);
  assert_int_equal(y[3], 21);
}

// ---- softmax and normalisation ---------------------------------------------------------------

static void softmax_and_log_softmax_along_any_axis(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(2, {2, 3}));
  attn_axis_attrs last = {-1}, first = {0};
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_SOFTMAX, x, &last),
                                op1(f, ATTN_OP_SOFTMAX, x, &first),
                                op1(f, ATTN_OP_LOG_SOFTMAX, x, &last)},
              3);
  float x_data[6] = {0.5f, -1.0f, 2.0f, 1000.0f, 1001.0f, 1002.0f};
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(2, 3))};
  run_ok(f, in);
  // Row 0 directly (small values); row 1 would overflow exp without the max subtraction.
  double z = exp(0.5) + exp(-1.0) + exp(2.0);
  expect_values(&f->outputs[0],
                (double[]){exp(0.5) / z, exp(-1.0) / z, exp(2.0) / z, 0.09003057317038046,
                           0.24472847105479764, 0.6652409557748219},
                6, f32_tol, "softmax(axis=-1)");
  // Along axis 0 the large row takes all the mass.
  expect_values(&f->outputs[1], (double[]){0, 0, 0, 1, 1, 1}, 6, f32_tol, "softmax(axis=0)");
  expect_values(&f->outputs[2],
                (double[]){0.5 - log(z), -1.0 - log(z), 2.0 - log(z), log(0.09003057317038046),
                           log(0.24472847105479764), log(0.6652409557748219)},
                6, f32_tol, "log_softmax");
}

static void layernorm_matches_the_moment_formula(void **state) {
  fixture *f = *state;
  enum { R = 3, C = 8 };
  attn_value_id x = input(f, "x", F32(2, {R, C}));
  attn_value_id w = input(f, "w", F32(1, {C}));
  attn_value_id b = input(f, "b", F32(1, {C}));
  attn_value_id x3 = input(f, "x3", F32(3, {2, R, 4}));
  attn_norm_attrs na = {-1, 1e-5}, na2 = {1, 1e-3};
  set_outputs(f,
              (attn_value_id[]){op(f, ATTN_OP_LAYERNORM, (attn_value_id[]){x, w, b}, 3, &na),
                                op(f, ATTN_OP_LAYERNORM, &x3, 1, &na2),
                                op(f, ATTN_OP_RMSNORM, (attn_value_id[]){x, w}, 2, &na),
                                op(f, ATTN_OP_RMSNORM, &x, 1, &na2)},
              4);
  float x_data[R * C], w_data[C], b_data[C], x3_data[2 * R * 4];
  fill_random(x_data, R * C, 3);
  fill_random(w_data, C, 4);
  fill_random(b_data, C, 5);
  fill_random(x3_data, 2 * R * 4, 6);
  attn_tensor in[4] = {tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(R, C)),
                       tensor(ATTN_DTYPE_F32, w_data, 1, DIMS(C)),
                       tensor(ATTN_DTYPE_F32, b_data, 1, DIMS(C)),
                       tensor(ATTN_DTYPE_F32, x3_data, 3, DIMS(2, R, 4))};
  run_ok(f, in);
  // var = E[x^2] - E[x]^2 (one pass, unlike the evaluator's two-pass formula).
  for (int r = 0; r < R; r++) {
    double s = 0, s2 = 0;
    for (int c = 0; c < C; c++) {
      s += (double)x_data[r * C + c];
      s2 += (double)x_data[r * C + c] * (double)x_data[r * C + c];
    }
    double mean = s / C, var = s2 / C - mean * mean, ms = s2 / C;
    for (int c = 0; c < C; c++) {
      double xv = (double)x_data[r * C + c];
      double ln = (xv - mean) / sqrt(var + 1e-5) * (double)w_data[c] + (double)b_data[c];
      expect_near(at(&f->outputs[0], r * C + c), ln, 1e-6, "layernorm", r * C + c);
      expect_near(at(&f->outputs[2], r * C + c), xv / sqrt(ms + 1e-5) * (double)w_data[c], 1e-6,
                  "rmsnorm", r * C + c);
      expect_near(at(&f->outputs[3], r * C + c), xv / sqrt(ms + 1e-3), 1e-6, "rmsnorm, no w",
                  r * C + c);
    }
  }
  // axis 1 of [2, R, 4]: each of the 2 blocks of R * 4 values is normalised as a whole.
  for (int o = 0; o < 2; o++) {
    double s = 0, s2 = 0;
    for (int i = 0; i < R * 4; i++) {
      s += (double)x3_data[o * R * 4 + i];
      s2 += (double)x3_data[o * R * 4 + i] * (double)x3_data[o * R * 4 + i];
    }
    double mean = s / (R * 4), var = s2 / (R * 4) - mean * mean;
    for (int i = 0; i < R * 4; i++)
      expect_near(at(&f->outputs[1], o * R * 4 + i),
                  ((double)x3_data[o * R * 4 + i] - mean) / sqrt(var + 1e-3), 1e-6,
                  "layernorm axis 1", o * R * 4 + i);
  }
}

// ---- reductions ------------------------------------------------------------------------------

static void reductions_over_axes_with_and_without_keepdims(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(3, {2, 3, 4}));
  static const int64_t ax1[] = {1}, ax02[] = {0, 2}, ax_last[] = {-1};
  attn_reduce_attrs sum1 = {ax1, 1, false}, mean02 = {ax02, 2, true}, all = {NULL, 0, false},
                    last = {ax_last, 1, false};
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_SUM, x, &sum1), op1(f, ATTN_OP_MEAN, x, &mean02),
                                op1(f, ATTN_OP_MAX, x, &all), op1(f, ATTN_OP_MIN, x, &last),
                                op1(f, ATTN_OP_ARGMAX, x, &sum1)},
              5);
  float x_data[24];
  fill_random(x_data, 24, 7);
  x_data[1 * 12 + 0 * 4 + 2] = x_data[1 * 12 + 2 * 4 + 2] = 5.0f; // a tie for argmax
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 3, DIMS(2, 3, 4))};
  run_ok(f, in);
#define X(i, j, k) ((double)x_data[(i)*12 + (j)*4 + (k)])
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 2, DIMS(2, 4));
  expect_shape(&f->outputs[1], ATTN_DTYPE_F32, 3, DIMS(1, 3, 1));
  expect_shape(&f->outputs[2], ATTN_DTYPE_F32, 0, NULL);
  expect_shape(&f->outputs[3], ATTN_DTYPE_F32, 2, DIMS(2, 3));
  expect_shape(&f->outputs[4], ATTN_DTYPE_I64, 2, DIMS(2, 4));
  double max_all = -(double)INFINITY;
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < 4; k++) {
      double want = X(i, 0, k) + X(i, 1, k) + X(i, 2, k);
      expect_near(at(&f->outputs[0], i * 4 + k), (double)(float)want, 0, "sum", i * 4 + k);
      int64_t best = 0;
      for (int j = 1; j < 3; j++)
        if (X(i, j, k) > X(i, best, k))
          best = j;
      expect_near(at(&f->outputs[4], i * 4 + k), (double)best, 0, "argmax", i * 4 + k);
    }
    for (int j = 0; j < 3; j++) {
      double min = (double)INFINITY;
      for (int k = 0; k < 4; k++) {
        min = fmin(min, X(i, j, k));
        max_all = fmax(max_all, X(i, j, k));
      }
      expect_near(at(&f->outputs[3], i * 3 + j), min, 0, "min", i * 3 + j);
    }
  }
  for (int j = 0; j < 3; j++) {
    double s = 0;
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < 4; k++)
        s += X(i, j, k);
    expect_near(at(&f->outputs[1], j), (double)(float)(s / 8), 0, "mean", j);
  }
#undef X
  expect_near(at(&f->outputs[2], 0), 5.0, 0, "max", 0);
  assert_true(max_all == 5.0);
  assert_int_equal(((const int64_t *)f->outputs[4].data)[1 * 4 + 2], 0); // first of the tie
}

static void integer_sum_saturates_and_max_is_exact(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", (attn_type){ATTN_DTYPE_I32, 1, {3}});
  attn_value_id big = input(f, "big", (attn_type){ATTN_DTYPE_I64, 1, {2}});
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_SUM, x, NULL), op1(f, ATTN_OP_MAX, big, NULL),
                                op1(f, ATTN_OP_ARGMAX, big,
                                    &(attn_reduce_attrs){(const int64_t[]){0}, 1, false})},
              3);
  int32_t x_data[3] = {INT32_MAX, 5, 1};
  int64_t big_data[2] = {((int64_t)1 << 62) + 1, (int64_t)1 << 62};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_I32, x_data, 1, DIMS(3)),
                       tensor(ATTN_DTYPE_I64, big_data, 1, DIMS(2))};
  run_ok(f, in);
  assert_int_equal(((const int32_t *)f->outputs[0].data)[0], INT32_MAX);
  assert_int_equal(((const int64_t *)f->outputs[1].data)[0], ((int64_t)1 << 62) + 1);
  assert_int_equal(((const int64_t *)f->outputs[2].data)[0], 0);
}

static void sums_round_once_to_half_precision(void **state) {
  fixture *f = *state;
  // 1 + 2^-11 + 2^-24 is just above the midpoint between the f16 values 1 and 1 + 2^-10, so it
  // rounds up; rounding through f32 first would land on the midpoint and round to even (1).
  attn_value_id h = input(f, "h", (attn_type){ATTN_DTYPE_F16, 1, {3}});
  // The same for bf16: 1 + 2^-8 + 2^-40 against the bf16 neighbours 1 and 1 + 2^-7.
  attn_value_id bf = input(f, "bf", (attn_type){ATTN_DTYPE_BF16, 1, {3}});
  set_outputs(f, (attn_value_id[]){op1(f, ATTN_OP_SUM, h, NULL), op1(f, ATTN_OP_SUM, bf, NULL)}, 2);
  uint16_t h_data[3] = {attn_f32_to_f16(1.0f), attn_f32_to_f16(ldexpf(1.0f, -11)),
                        attn_f32_to_f16(ldexpf(1.0f, -24))};
  uint16_t bf_data[3] = {attn_f32_to_bf16(1.0f), attn_f32_to_bf16(ldexpf(1.0f, -8)),
                         attn_f32_to_bf16(ldexpf(1.0f, -40))};
  assert_true(attn_f16_to_f32(h_data[2]) == ldexpf(1.0f, -24));
  attn_tensor in[2] = {tensor(ATTN_DTYPE_F16, h_data, 1, DIMS(3)),
                       tensor(ATTN_DTYPE_BF16, bf_data, 1, DIMS(3))};
  run_ok(f, in);
  expect_near(at(&f->outputs[0], 0), 1.0 + ldexp(1.0, -10), 0, "f16 sum", 0);
  expect_near(at(&f->outputs[1], 0), 1.0 + ldexp(1.0, -7), 0, "bf16 sum", 0);
}

// ---- shape ops -------------------------------------------------------------------------------

static void reshape_expand_and_permute_move_elements(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(2, {2, 3}));
  attn_value_id col = input(f, "col", F32(2, {3, 1}));
  attn_value_id cube = input(f, "cube", F32(3, {2, 3, 4}));
  static const attn_dim to32[] = {3, 2}, to234[] = {2, 3, 4}, keep[] = {2, ATTN_DIM_INFER, 4};
  static const int64_t perm[] = {2, 0, 1};
  attn_shape_attrs ra = {to32, 2}, ea = {to234, 3}, ea2 = {keep, 3};
  attn_perm_attrs pa = {perm, 3};
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_RESHAPE, x, &ra), op1(f, ATTN_OP_EXPAND, col, &ea),
                                op1(f, ATTN_OP_EXPAND, col, &ea2),
                                op1(f, ATTN_OP_PERMUTE, cube, &pa)},
              4);
  float x_data[6] = {0, 1, 2, 3, 4, 5}, col_data[3] = {7, 8, 9}, cube_data[24];
  for (int i = 0; i < 24; i++)
    cube_data[i] = (float)i;
  attn_tensor in[3] = {tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(2, 3)),
                       tensor(ATTN_DTYPE_F32, col_data, 2, DIMS(3, 1)),
                       tensor(ATTN_DTYPE_F32, cube_data, 3, DIMS(2, 3, 4))};
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 2, DIMS(3, 2));
  expect_values(&f->outputs[0], (double[]){0, 1, 2, 3, 4, 5}, 6, 0, "reshape");
  for (int i = 0; i < 24; i++) {
    expect_near(at(&f->outputs[1], i), (double)col_data[(i / 4) % 3], 0, "expand", i);
    expect_near(at(&f->outputs[2], i), (double)col_data[(i / 4) % 3], 0, "expand -1", i);
  }
  // out[k][i][j] = cube[i][j][k]
  expect_shape(&f->outputs[3], ATTN_DTYPE_F32, 3, DIMS(4, 2, 3));
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 3; j++)
        expect_near(at(&f->outputs[3], (k * 2 + i) * 3 + j), (double)(i * 12 + j * 4 + k), 0,
                    "permute", (k * 2 + i) * 3 + j);
}

static void slice_follows_python_semantics(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(2, {2, 5}));
  attn_slice_attrs tail_step2 = {1, -3, INT64_MAX, 2}, clamp = {1, 1, 100, 1},
                   rows = {0, -1, INT64_MAX, 1}, empty = {1, 4, 2, 1}, neg_end = {-1, 0, -2, 3};
  set_outputs(f,
              (attn_value_id[]){op1(f, ATTN_OP_SLICE, x, &tail_step2),
                                op1(f, ATTN_OP_SLICE, x, &clamp), op1(f, ATTN_OP_SLICE, x, &rows),
                                op1(f, ATTN_OP_SLICE, x, &empty),
                                op1(f, ATTN_OP_SLICE, x, &neg_end)},
              5);
  float x_data[10] = {0, 1, 2, 3, 4, 10, 11, 12, 13, 14};
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(2, 5))};
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){2, 4, 12, 14}, 4, 0, "x[:, -3::2]");
  expect_values(&f->outputs[1], (double[]){1, 2, 3, 4, 11, 12, 13, 14}, 8, 0, "x[:, 1:100]");
  expect_values(&f->outputs[2], (double[]){10, 11, 12, 13, 14}, 5, 0, "x[-1:]");
  expect_shape(&f->outputs[3], ATTN_DTYPE_F32, 2, DIMS(2, 0));
  expect_values(&f->outputs[4], (double[]){0, 10}, 2, 0, "x[:, 0:-2:3]");
}

static void concat_and_split_are_inverse(void **state) {
  fixture *f = *state;
  attn_value_id a = input(f, "a", (attn_type){ATTN_DTYPE_I32, 2, {2, 1}});
  attn_value_id b = input(f, "b", (attn_type){ATTN_DTYPE_I32, 2, {2, 3}});
  attn_value_id c = input(f, "c", (attn_type){ATTN_DTYPE_I32, 2, {2, 0}});
  attn_axis_attrs axis1 = {1};
  attn_value_id cat = op(f, ATTN_OP_CONCAT, (attn_value_id[]){a, b, c, a}, 4, &axis1);
  static const attn_dim sizes[] = {3, 2};
  attn_split_attrs sa = {-1, sizes, 2};
  attn_node_id split = node(f, ATTN_OP_SPLIT, &cat, 1, &sa);
  attn_axis_attrs axis0 = {0};
  attn_value_id rows = op(f, ATTN_OP_CONCAT, (attn_value_id[]){b, b}, 2, &axis0);
  set_outputs(f,
              (attn_value_id[]){cat, attn_node_output(f->graph, split, 0),
                                attn_node_output(f->graph, split, 1), rows},
              4);
  int32_t a_data[2] = {1, 2}, b_data[6] = {10, 11, 12, 20, 21, 22}, c_data[1] = {0};
  attn_tensor in[3] = {tensor(ATTN_DTYPE_I32, a_data, 2, DIMS(2, 1)),
                       tensor(ATTN_DTYPE_I32, b_data, 2, DIMS(2, 3)),
                       tensor(ATTN_DTYPE_I32, c_data, 2, DIMS(2, 0))};
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_I32, 2, DIMS(2, 5));
  expect_values(&f->outputs[0], (double[]){1, 10, 11, 12, 1, 2, 20, 21, 22, 2}, 10, 0, "concat");
  expect_values(&f->outputs[1], (double[]){1, 10, 11, 2, 20, 21}, 6, 0, "split 0");
  expect_values(&f->outputs[2], (double[]){12, 1, 22, 2}, 4, 0, "split 1");
  expect_values(&f->outputs[3], (double[]){10, 11, 12, 20, 21, 22, 10, 11, 12, 20, 21, 22}, 12, 0,
                "concat rows");
}

static void gather_is_numpy_take(void **state) {
  fixture *f = *state;
  attn_value_id table = input(f, "table", F32(2, {4, 3}));
  attn_value_id ids = input(f, "ids", (attn_type){ATTN_DTYPE_I64, 2, {2, 2}});
  attn_value_id cols = input(f, "cols", (attn_type){ATTN_DTYPE_I32, 1, {3}});
  attn_axis_attrs axis0 = {0}, axis1 = {-1};
  set_outputs(f,
              (attn_value_id[]){op2(f, ATTN_OP_GATHER, table, ids, &axis0),
                                op2(f, ATTN_OP_GATHER, table, cols, &axis1)},
              2);
  float t_data[12] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32};
  int64_t id_data[4] = {3, 0, -1, 1};
  int32_t col_data[3] = {2, -3, 2};
  attn_tensor in[3] = {tensor(ATTN_DTYPE_F32, t_data, 2, DIMS(4, 3)),
                       tensor(ATTN_DTYPE_I64, id_data, 2, DIMS(2, 2)),
                       tensor(ATTN_DTYPE_I32, col_data, 1, DIMS(3))};
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 3, DIMS(2, 2, 3));
  expect_values(&f->outputs[0], (double[]){30, 31, 32, 0, 1, 2, 30, 31, 32, 10, 11, 12}, 12, 0,
                "rows");
  expect_shape(&f->outputs[1], ATTN_DTYPE_F32, 2, DIMS(4, 3));
  expect_values(&f->outputs[1], (double[]){2, 0, 2, 12, 10, 12, 22, 20, 22, 32, 30, 32}, 12, 0,
                "columns");

  id_data[2] = 4;
  attn_status status = run_with(f, in, NULL, NULL);
  expect_error(f, status, ATTN_ERROR_INVALID_ARGUMENT,
               "gather: index 4 (element 2 of the indices) is out of range for axis 0 of size 4");
  const attn_diagnostic *d = &f->diag.items[f->diag.count - 1];
  assert_int_equal(d->loc.line, 3);
  assert_int_equal(d->loc.col, 7);
}

static void topk_sorts_and_breaks_ties_by_index(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(2, {2, 5}));
  attn_topk_attrs top3 = {3, -1, true}, low2 = {2, 1, false}, down = {1, 0, true};
  attn_node_id a = node(f, ATTN_OP_TOPK, &x, 1, &top3);
  attn_node_id b = node(f, ATTN_OP_TOPK, &x, 1, &low2);
  attn_node_id c = node(f, ATTN_OP_TOPK, &x, 1, &down);
  attn_value_id outs[6];
  for (int i = 0; i < 2; i++) {
    outs[i] = attn_node_output(f->graph, a, (uint32_t)i);
    outs[2 + i] = attn_node_output(f->graph, b, (uint32_t)i);
    outs[4 + i] = attn_node_output(f->graph, c, (uint32_t)i);
  }
  set_outputs(f, outs, 6);
  float x_data[10] = {1, 5, 3, 5, 0, -2, -2, 7, -2, 7};
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(2, 5))};
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 2, DIMS(2, 3));
  expect_shape(&f->outputs[1], ATTN_DTYPE_I64, 2, DIMS(2, 3));
  expect_values(&f->outputs[0], (double[]){5, 5, 3, 7, 7, -2}, 6, 0, "top-3 values");
  expect_values(&f->outputs[1], (double[]){1, 3, 2, 2, 4, 0}, 6, 0, "top-3 indices");
  expect_values(&f->outputs[2], (double[]){0, 1, -2, -2}, 4, 0, "bottom-2 values");
  expect_values(&f->outputs[3], (double[]){4, 0, 0, 1}, 4, 0, "bottom-2 indices");
  expect_values(&f->outputs[4], (double[]){1, 5, 7, 5, 7}, 5, 0, "top-1 along axis 0");
  expect_values(&f->outputs[5], (double[]){0, 0, 1, 0, 1}, 5, 0, "top-1 indices");
}

// ---- inputs, symbols and errors --------------------------------------------------------------

static void input_errors_name_the_input_and_its_type(void **state) {
  fixture *f = *state;
  attn_dim b = sym(f, "B"), t = sym(f, "T");
  attn_value_id ids = input(f, "input_ids", (attn_type){ATTN_DTYPE_I64, 2, {b, t}});
  attn_value_id x = input(f, "x", F32(2, {b, 4}));
  attn_cast_attrs to_f32 = {ATTN_DTYPE_F32};
  attn_value_id ids_f = op1(f, ATTN_OP_CAST, ids, &to_f32);
  attn_reduce_attrs last = {(const int64_t[]){-1}, 1, false};
  set_output(f, op2(f, ATTN_OP_ADD, op1(f, ATTN_OP_SUM, ids_f, &last),
                    op1(f, ATTN_OP_SUM, x, &last), NULL));
  int64_t id_data[24] = {0};
  float x_data[12] = {0};
  int64_t symbols[2] = {2, -1};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_I64, id_data, 3, DIMS(2, 3, 4)),
                       tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(2, 4))};
  expect_error(f, run_with(f, in, NULL, symbols), ATTN_ERROR_INVALID_ARGUMENT, "input");
  assert_string_equal(attn_diag_last_error(&f->diag),
                      "input 'input_ids': expected i64[B, T] (B=2), got i64[2, 3, 4]");

  in[0] = tensor(ATTN_DTYPE_I64, id_data, 2, DIMS(2, 3));
  in[1] = tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(3, 4));
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT, "input");
  assert_string_equal(attn_diag_last_error(&f->diag),
                      "input 'x': expected f32[B, 4] (B=2), got f32[3, 4]");

  in[1] = tensor(ATTN_DTYPE_F16, x_data, 2, DIMS(2, 4));
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "input 'x': expected f32[B, 4] (B=2), got f16[2, 4]");

  in[1] = tensor(ATTN_DTYPE_F32, NULL, 2, DIMS(2, 4));
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT, "with no data");

  expect_error(f, run_with(f, NULL, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "the graph has 2 inputs but none were given");

  in[1] = tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(2, 4));
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 1, DIMS(2));
}

static void integer_inputs_convert_when_the_values_fit(void **state) {
  fixture *f = *state;
  attn_dim t = sym(f, "T");
  attn_value_id ids = input(f, "ids", (attn_type){ATTN_DTYPE_I64, 1, {t}});
  attn_value_id small = input(f, "small", (attn_type){ATTN_DTYPE_I8, 1, {2}});
  attn_cast_attrs to_i64 = {ATTN_DTYPE_I64};
  set_outputs(f, (attn_value_id[]){ids, op1(f, ATTN_OP_CAST, small, &to_i64)}, 2);
  int32_t id_data[3] = {7, -1, 50000};
  int64_t small_data[2] = {-128, 127};
  attn_tensor in[2] = {tensor(ATTN_DTYPE_I32, id_data, 1, DIMS(3)),
                       tensor(ATTN_DTYPE_I64, small_data, 1, DIMS(2))};
  run_ok(f, in);
  expect_shape(&f->outputs[0], ATTN_DTYPE_I64, 1, DIMS(3));
  expect_values(&f->outputs[0], (double[]){7, -1, 50000}, 3, 0, "i32 as i64");
  expect_values(&f->outputs[1], (double[]){-128, 127}, 2, 0, "i64 as i8");
  small_data[1] = 300;
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "input 'small': element 1 = 300 does not fit the declared i8");
}

static void unbound_symbols_are_named(void **state) {
  fixture *f = *state;
  attn_dim t_past = sym(f, "T_past"), t = sym(f, "T"), s = sym(f, "S"), total;
  assert_int_equal(attn_graph_dim_binary(f->graph, ATTN_DIM_ADD, t_past, t, &total), ATTN_OK);
  attn_value_id x = input(f, "x", F32(1, {total}));
  set_output(f, op1(f, ATTN_OP_NEG, x, NULL));
  float x_data[5] = {0};
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(5))};
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "input 'x': expected f32[T_past + T], got f32[5] (symbol 'T_past' is unbound)");
  int64_t symbols[3] = {2, 3, -1}; // T_past, T, S
  assert_int_equal(run_with(f, in, NULL, symbols), ATTN_OK);
  symbols[1] = 4;
  expect_error(f, run_with(f, in, NULL, symbols), ATTN_ERROR_INVALID_ARGUMENT,
               "input 'x': expected f32[T_past + T] (T_past=2, T=4), got f32[5]");

  // A node whose type uses a symbol no input binds.
  attn_value_id y = input(f, "y", F32(1, {4}));
  attn_shape_attrs ea = {attn_graph_alloc(f->graph, 2 * sizeof(attn_dim)), 2};
  ((attn_dim *)ea.dims)[0] = s;
  ((attn_dim *)ea.dims)[1] = 4;
  set_output(f, op1(f, ATTN_OP_EXPAND, y, &ea));
  attn_tensor in2[2] = {in[0], tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(4))};
  symbols[1] = 3;
  expect_error(f, run_with(f, in2, NULL, symbols), ATTN_ERROR_INVALID_ARGUMENT,
               "expand: symbol 'S' is unbound");
  symbols[2] = 2;
  assert_int_equal(run_with(f, in2, NULL, symbols), ATTN_OK);
  expect_shape(&f->outputs[0], ATTN_DTYPE_F32, 2, DIMS(2, 4));

  // iota's start.
  attn_iota_attrs ia = {F32(1, {3}), 0, s};
  set_output(f, op(f, ATTN_OP_IOTA, NULL, 0, &ia));
  symbols[2] = -1;
  expect_error(f, run_with(f, in2, NULL, symbols), ATTN_ERROR_INVALID_ARGUMENT,
               "iota: start S: symbol 'S' is unbound");
}

static void runtime_dims_are_checked_where_types_cannot(void **state) {
  fixture *f = *state;
  attn_dim n = sym(f, "N");
  attn_value_id x = input(f, "x", F32(1, {n}));
  attn_topk_attrs ta = {3, 0, true};
  attn_slice_attrs last3 = {0, -3, INT64_MAX, 1};
  attn_node_id topk = node(f, ATTN_OP_TOPK, &x, 1, &ta);
  attn_value_id tail = op1(f, ATTN_OP_SLICE, x, &last3);
  float x_data[4] = {1, 2, 3, 4};
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(2))};
  set_output(f, attn_node_output(f->graph, topk, 0));
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "topk: k = 3 exceeds the 2 elements of axis 0");
  set_output(f, tail);
  expect_error(f, run_with(f, in, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "slice: slicing [-3:9223372036854775807:1] of axis 0 (size 2) gives 2 elements, "
               "the type says 3");
  in[0] = tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(4));
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){2, 3, 4}, 3, 0, "x[-3:]");
}

static void missing_or_mismatched_weights_are_reported_at_the_node(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"lm_head.weight", "wte.weight"};
  attn_weight_attrs wa = {names, 2, F32(2, {2, 2})};
  attn_node_id w = node(f, ATTN_OP_WEIGHT, NULL, 0, &wa);
  set_output(f, op1(f, ATTN_OP_NEG, attn_node_output(f->graph, w, 0), NULL));
  expect_error(f, run_with(f, NULL, NULL, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "weight: weight 'lm_head.weight' has no data bound");
  const attn_diagnostic *d = &f->diag.items[f->diag.count - 1];
  assert_string_equal(d->loc.file, "t.attn");
  assert_int_equal(d->loc.line, 3);
  attn_tensor weights[4] = {0};
  expect_error(f, run_with(f, NULL, weights, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "has no data bound");
  float data[6] = {1, 2, 3, 4, 5, 6};
  weights[w.index] = tensor(ATTN_DTYPE_F32, data, 2, DIMS(3, 2));
  expect_error(f, run_with(f, NULL, weights, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "weight 'lm_head.weight' is declared f32[2, 2] but the bound tensor is f32[3, 2]");
  weights[w.index] = tensor(ATTN_DTYPE_I32, data, 2, DIMS(2, 2));
  expect_error(f, run_with(f, NULL, weights, NULL), ATTN_ERROR_INVALID_ARGUMENT,
               "is declared f32[2, 2] but the bound tensor is i32[2, 2]");
  weights[w.index] = tensor(ATTN_DTYPE_F32, data, 2, DIMS(2, 2));
  assert_int_equal(run_with(f, NULL, weights, NULL), ATTN_OK);
  expect_values(&f->outputs[0], (double[]){-1, -2, -3, -4}, 4, 0, "neg(w)");
}

// ---- the driver ------------------------------------------------------------------------------

static void dead_nodes_are_skipped_and_outputs_may_repeat(void **state) {
  fixture *f = *state;
  attn_value_id x = input(f, "x", F32(1, {2}));
  attn_value_id ids = input(f, "ids", (attn_type){ATTN_DTYPE_I64, 1, {1}});
  attn_axis_attrs axis0 = {0};
  attn_node_id bad = node(f, ATTN_OP_GATHER, (attn_value_id[]){x, ids}, 2, &axis0);
  attn_value_id y = op1(f, ATTN_OP_NEG, x, NULL);
  set_outputs(f, (attn_value_id[]){y, x, y}, 3);
  attn_graph_node(f->graph, bad)->is_dead = true;
  float x_data[2] = {1, 2};
  int64_t id_data[1] = {99}; // out of range: the dead gather must not run
  attn_tensor in[2] = {tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(2)),
                       tensor(ATTN_DTYPE_I64, id_data, 1, DIMS(1))};
  run_ok(f, in);
  expect_values(&f->outputs[0], (double[]){-1, -2}, 2, 0, "y");
  expect_values(&f->outputs[1], (double[]){1, 2}, 2, 0, "x");
  expect_values(&f->outputs[2], (double[]){-1, -2}, 2, 0, "y again");
  assert_ptr_not_equal(f->outputs[0].data, f->outputs[2].data);
  assert_ptr_not_equal(f->outputs[1].data, x_data);
}

// An allocator that records the largest number of live bytes.
typedef struct peak_allocator {
  attn_allocator parent;
  size_t live_bytes, peak_bytes;
} peak_allocator;

static void *peak_realloc(void *self, void *ptr, size_t old_size, size_t new_size) {
  peak_allocator *p = self;
  void *result = p->parent.realloc_fn(p->parent.self, ptr, old_size, new_size);
  if (new_size == 0 || result) {
    p->live_bytes = p->live_bytes - (ptr ? old_size : 0) + new_size;
    if (p->live_bytes > p->peak_bytes)
      p->peak_bytes = p->live_bytes;
  }
  return result;
}

static void intermediates_are_freed_after_their_last_use(void **state) {
  fixture *f = *state;
  enum { N = 4096, CHAIN = 32 };
  attn_value_id x = input(f, "x", F32(1, {N}));
  attn_value_id y = x;
  for (int i = 0; i < CHAIN; i++)
    y = op2(f, ATTN_OP_ADD, y, x, NULL);
  set_output(f, y);
  static float x_data[N];
  for (int i = 0; i < N; i++)
    x_data[i] = (float)i;
  attn_tensor in[1] = {tensor(ATTN_DTYPE_F32, x_data, 1, DIMS(N))};
  peak_allocator peak = {attn_allocator_system(), 0, 0};
  attn_allocator allocator = {&peak, peak_realloc};
  attn_interp_args args = {in, NULL, NULL};
  attn_tensor out[1];
  assert_int_equal(attn_interp_run(f->graph, &args, allocator, &f->diag, out), ATTN_OK);
  expect_near(at(&out[0], N - 1), (double)(N - 1) * (CHAIN + 1), 0, "chain", N - 1);
  attn_tensor_free(allocator, &out[0]);
  assert_int_equal(peak.live_bytes, 0);
  // At most two N-float tensors live at once (one node's input and output), plus bookkeeping.
  assert_true(peak.peak_bytes < 2 * N * sizeof(float) + 8192);
}

static void allocation_failures_leak_nothing(void **state) {
  fixture *f = *state;
  attn_dim t = sym(f, "T");
  attn_value_id x = input(f, "x", F32(2, {t, 4}));
  attn_value_id ids = input(f, "ids", (attn_type){ATTN_DTYPE_I32, 1, {t}});
  static const char *const w_name = "w";
  attn_weight_attrs wa = {&w_name, 1, (attn_type){ATTN_DTYPE_F16, 2, {4, 4}}};
  attn_node_id w = node(f, ATTN_OP_WEIGHT, NULL, 0, &wa);
  attn_cast_attrs to_f32 = {ATTN_DTYPE_F32};
  attn_value_id wf = op1(f, ATTN_OP_CAST, attn_node_output(f->graph, w, 0), &to_f32);
  attn_value_id h = op2(f, ATTN_OP_MATMUL, x, wf, NULL);
  attn_norm_attrs na = {-1, 1e-5};
  h = op(f, ATTN_OP_LAYERNORM, &h, 1, &na);
  attn_axis_attrs axis0 = {0}, last = {-1};
  attn_value_id g = op2(f, ATTN_OP_GATHER, h, ids, &axis0);
  attn_value_id s = op1(f, ATTN_OP_SOFTMAX, g, &last);
  attn_topk_attrs ta = {2, -1, true};
  attn_node_id top = node(f, ATTN_OP_TOPK, &s, 1, &ta);
  static const attn_dim attn_shape[] = {1, 1, ATTN_DIM_INFER, 4};
  attn_shape_attrs ra = {attn_shape, 4};
  attn_value_id q = op1(f, ATTN_OP_RESHAPE, s, &ra);
  attn_attention_attrs aa = {.mask = ATTN_MASK_CAUSAL, .has_lse = true};
  attn_node_id at_node = node(f, ATTN_OP_ATTENTION, (attn_value_id[]){q, q, q}, 3, &aa);
  set_outputs(f,
              (attn_value_id[]){attn_node_output(f->graph, top, 0),
                                attn_node_output(f->graph, top, 1),
                                attn_node_output(f->graph, at_node, 0),
                                attn_node_output(f->graph, at_node, 1), x},
              5);
  float x_data[12];
  fill_random(x_data, 12, 9);
  int64_t id_data[3] = {2, 0, 1};
  uint16_t w_data[16];
  for (int i = 0; i < 16; i++)
    w_data[i] = attn_f32_to_f16((float)(i % 5) - 2.0f);
  attn_tensor in[2] = {tensor(ATTN_DTYPE_F32, x_data, 2, DIMS(3, 4)),
                       tensor(ATTN_DTYPE_I64, id_data, 1, DIMS(3))};
  attn_tensor weights[16] = {0};
  weights[w.index] = tensor(ATTN_DTYPE_F16, w_data, 2, DIMS(4, 4));
  attn_interp_args args = {in, weights, NULL};
  bool succeeded = false;
  for (long fail_after = 0; fail_after < 200 && !succeeded; fail_after++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    counter.fail_after = fail_after;
    attn_allocator allocator = attn_counting_allocator_get(&counter);
    attn_tensor out[5];
    attn_status status = attn_interp_run(f->graph, &args, allocator, &f->diag, out);
    if (status == ATTN_OK) {
      succeeded = true;
      for (int i = 0; i < 5; i++)
        attn_tensor_free(allocator, &out[i]);
    } else {
      assert_int_equal(status, ATTN_ERROR_OUT_OF_MEMORY);
      for (int i = 0; i < 5; i++)
        assert_null(out[i].data);
    }
    assert_int_equal(counter.live_bytes, 0);
    assert_int_equal(counter.live_blocks, 0);
  }
  assert_true(succeeded);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      TEST(leaves_bind_weights_constants_and_symbolic_iota),
      TEST(unary_float_ops_match_known_values),
      TEST(unary_integer_and_bool_ops_are_exact),
      TEST(cast_truncates_saturates_and_rounds),
      TEST(binary_ops_broadcast_like_numpy),
      TEST(binary_float_division_by_zero_and_nan),
      TEST(binary_integer_ops_truncate_and_saturate),
      TEST(where_broadcasts_all_three_operands),
      TEST(matmul_broadcasts_batches_and_transposes),
      TEST(matmul_of_integers_is_exact),
      TEST(softmax_and_log_softmax_along_any_axis),
      TEST(layernorm_matches_the_moment_formula),
      TEST(reductions_over_axes_with_and_without_keepdims),
      TEST(integer_sum_saturates_and_max_is_exact),
      TEST(sums_round_once_to_half_precision),
      TEST(reshape_expand_and_permute_move_elements),
      TEST(slice_follows_python_semantics),
      TEST(concat_and_split_are_inverse),
      TEST(gather_is_numpy_take),
      TEST(topk_sorts_and_breaks_ties_by_index),
      TEST(input_errors_name_the_input_and_its_type),
      TEST(integer_inputs_convert_when_the_values_fit),
      TEST(unbound_symbols_are_named),
      TEST(runtime_dims_are_checked_where_types_cannot),
      TEST(missing_or_mismatched_weights_are_reported_at_the_node),
      TEST(dead_nodes_are_skipped_and_outputs_may_repeat),
      TEST(intermediates_are_freed_after_their_last_use),
      TEST(allocation_failures_leak_nothing),
#undef TEST
  };
  return cmocka_run_group_tests_name("ir/interp", tests, NULL, NULL);
}
