// Kernel partitioning and memory planning over the bundled models and small graphs: the
// partition is complete, contiguous, convex and in execution order, its kernels have the kinds
// the fusion rules give; partition + plan-memory leave the interpreter's results bit-identical;
// the memory plan never lets two live values share a buffer (except a view and what it views,
// or an in-place output and the input it overwrites) and every buffer holds its values; the
// passes fail cleanly (missing partition, out of memory) and the printed IR parses back.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/parse.h"
#include "ir/interp.h"
#include "ir/print.h"
#include "passes/pass.h"
#include "runtime/tensor/weights.h"
#include "tests/unit/passes/pass_test_util.h"

enum { SYMBOL_DEFAULT = 5 };

typedef struct model_case {
  const char *model;
  const char *config;
  const char *bindings; // "B=2,T=7"; symbols not named get SYMBOL_DEFAULT
  int64_t int_bound;    // integer inputs are drawn from [0, int_bound)
  bool is_evaluated;    // small enough to run through the interpreter
  uint32_t layers;      // transformer blocks
  double max_ratio;     // planned bytes / largest live set at most this; 0: not checked
  uint32_t kinds[ATTN_KERNEL_KIND_COUNT]; // kernels by kind, counted by hand from the model
} model_case;

// GPT-2, per block: ln_1 and ln_2 (norm); c_attn + bias, c_proj + bias + residual, c_fc + bias +
// gelu, mlp c_proj + bias + residual (gemm); attention; split and four permutes (layout); three
// head reshapes and the merge reshape (alias). Before the blocks two gathers and their add
// (elementwise), after them ln_f and the lm head.
// Llama, per block: two rmsnorms; q, k, v, o (+ residual), gate (+ silu + the product with up),
// up, down (+ residual) gemms; two ropes; attention; four permutes; four reshapes; before the
// blocks one gather, after them a norm and a gemm.
// ViT, per block: two layernorms; q, k, v, o (+ residual), fc (+ gelu), proj (+ residual) gemms;
// attention; four permutes, four reshapes. Before the blocks the patches (reshape, permute,
// reshape), the patch weight's reshape, the patch gemm (+ bias), the class token's expand, the
// concat and the position add; after them a layernorm, the class token's slice and reshape and
// the classifier. Its first buffer (the patches) is much larger than the others and a buffer is
// only reused whole, so its ratio is not checked.
// ACMIL: six gemms (fc1 + relu, U + bias + sigmoid, V + bias + tanh + the gate, the attention
// weights + the bias's alias, the pooling, the classifier + bias), a softmax and a mean.
// clang-format off
static const model_case model_cases[] = {
    {.model = "models/gpt2.attn", .config = "models/configs/gpt2-tiny.json",
     .bindings = "B=2,T=7", .int_bound = 64, .is_evaluated = true, .layers = 2, .max_ratio = 1.3,
     .kinds = {[ATTN_KERNEL_ELEMENTWISE] = 1, [ATTN_KERNEL_NORM] = 5, [ATTN_KERNEL_GEMM] = 9,
               [ATTN_KERNEL_ATTENTION] = 2, [ATTN_KERNEL_GATHER] = 2, [ATTN_KERNEL_LAYOUT] = 10,
               [ATTN_KERNEL_ALIAS] = 8}},
    {.model = "models/gpt2.attn", .config = "models/configs/gpt2-small.json",
     .bindings = "B=1,T=1024", .layers = 12, .max_ratio = 1.3,
     .kinds = {[ATTN_KERNEL_ELEMENTWISE] = 1, [ATTN_KERNEL_NORM] = 25, [ATTN_KERNEL_GEMM] = 49,
               [ATTN_KERNEL_ATTENTION] = 12, [ATTN_KERNEL_GATHER] = 2, [ATTN_KERNEL_LAYOUT] = 60,
               [ATTN_KERNEL_ALIAS] = 48}},
    {.model = "models/llama.attn", .config = "models/configs/llama-tiny.json",
     .bindings = "B=2,T=9", .int_bound = 64, .is_evaluated = true, .layers = 2, .max_ratio = 1.3,
     .kinds = {[ATTN_KERNEL_NORM] = 5, [ATTN_KERNEL_GEMM] = 15, [ATTN_KERNEL_ATTENTION] = 2,
               [ATTN_KERNEL_GATHER] = 1, [ATTN_KERNEL_ROPE] = 4, [ATTN_KERNEL_LAYOUT] = 8,
               [ATTN_KERNEL_ALIAS] = 8}},
    {.model = "models/vit.attn", .config = "tests/data/hf/vit-tiny/config.json",
     .bindings = "B=2", .is_evaluated = true, .layers = 2,
     .kinds = {[ATTN_KERNEL_ELEMENTWISE] = 1, [ATTN_KERNEL_NORM] = 5, [ATTN_KERNEL_GEMM] = 14,
               [ATTN_KERNEL_ATTENTION] = 2, [ATTN_KERNEL_LAYOUT] = 12, [ATTN_KERNEL_ALIAS] = 12}},
    {.model = "models/acmil.attn", .config = "models/configs/acmil-tiny.json",
     .bindings = "N=11", .is_evaluated = true, .max_ratio = 1.3,
     .kinds = {[ATTN_KERNEL_NORM] = 1, [ATTN_KERNEL_GEMM] = 6, [ATTN_KERNEL_REDUCTION] = 1,
               [ATTN_KERNEL_ALIAS] = 1}},
};
// clang-format on

enum { MODEL_CASE_COUNT = sizeof(model_cases) / sizeof(model_cases[0]) };

// The graph of tests/ir/passes/plan_memory.attn: reuse, growth, an alias chain, in place.
static const char small_graph[] =
    "graph plan(x: f32[B, T, 8]) -> (y: f32[B, T, 8], s: f32[B, T, T], z: f32[B, T]) {\n"
    "  h = layernorm(x)\n"
    "  u = gelu(matmul(h, weight(\"up\", f32[8, 32])))\n"
    "  d = matmul(u, weight(\"down\", f32[32, 8]))\n"
    "  r = reshape(d, shape=[B, T, 2, 4])\n"
    "  t = tanh(r)\n"
    "  y = reshape(t, shape=[B, T, 8])\n"
    "  s = matmul(x, x, transpose_b=true)\n"
    "  big = exp(matmul(x, weight(\"wide\", f32[8, 64])))\n"
    "  z = sum(big, axes=[2])\n"
    "  return y, s, z\n"
    "}\n";

// ---- loading and running ---------------------------------------------------------------------

static attn_graph *load_model(const model_case *c, attn_diag *diag) {
  attn_config *config = NULL;
  attn_status status = attn_config_read(c->config, attn_allocator_system(), diag, &config);
  attn_graph *graph = NULL;
  attn_parse_options options = {.config = config};
  if (status == ATTN_OK)
    status = attn_parse_file(c->model, &options, attn_allocator_system(), diag, &graph);
  attn_config_destroy(config);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
  return graph;
}

static attn_graph *parse_text(const char *text, attn_allocator allocator, attn_diag *diag) {
  attn_graph *graph = NULL;
  attn_status status =
      attn_parse_text("small.attn", text, strlen(text), NULL, allocator, diag, &graph);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
  return graph;
}

static attn_status run_passes(attn_graph *graph, const char *text, const int64_t *symbols) {
  attn_pipeline pipeline;
  attn_status status = attn_pipeline_parse(text, attn_allocator_system(), graph->diag, &pipeline);
  attn_pipeline_run_options options = {.verify_each = true, .symbol_values = symbols};
  if (status == ATTN_OK)
    status = attn_pipeline_run(&pipeline, graph, &options);
  attn_pipeline_deinit(&pipeline);
  return status;
}

static void expect_passes(attn_graph *graph, const char *text, const int64_t *symbols) {
  attn_status status = run_passes(graph, text, symbols);
  if (status != ATTN_OK)
    attn_diag_write(graph->diag, stderr);
  assert_int_equal(status, ATTN_OK);
}

// ---- graph facts -------------------------------------------------------------------------------

static bool is_computed(const attn_graph *graph, uint32_t n) {
  return n && !graph->nodes[n].is_dead &&
         !(attn_op_get_info(graph->nodes[n].op)->flags & ATTN_OP_LEAF);
}

static uint32_t producer_of(const attn_graph *graph, attn_value_id v) {
  uint32_t p = graph->values[v.index].producer.index;
  return is_computed(graph, p) ? p : 0;
}

static attn_kernel_kind kind_of(const attn_graph *graph, uint32_t n) {
  return graph->kernels[graph->nodes[n].kernel].kind;
}

static bool is_output(const attn_graph *graph, uint32_t v) {
  for (uint32_t i = 0; i < graph->output_count; i++)
    if (graph->outputs[i].index == v)
      return true;
  return false;
}

// Readers of each node's outputs (one entry per input slot), by node.
typedef struct readers {
  uint32_t *start; // node_count + 1
  uint32_t *items;
} readers;

static readers find_readers(const attn_graph *graph) {
  readers r = {calloc((size_t)graph->node_count + 1, sizeof(uint32_t)), NULL};
  assert_non_null(r.start);
  uint32_t edges = 0;
  for (uint32_t n = 1; n < graph->node_count; n++)
    for (uint32_t i = 0; is_computed(graph, n) && i < graph->nodes[n].input_count; i++) {
      uint32_t p = producer_of(graph, graph->nodes[n].inputs[i]);
      if (p) {
        r.start[p + 1]++;
        edges++;
      }
    }
  for (uint32_t n = 1; n < graph->node_count; n++)
    r.start[n + 1] += r.start[n];
  r.items = calloc(edges + 1, sizeof(uint32_t));
  uint32_t *fill = calloc(graph->node_count, sizeof(uint32_t));
  assert_true(r.items && fill);
  for (uint32_t n = 1; n < graph->node_count; n++)
    for (uint32_t i = 0; is_computed(graph, n) && i < graph->nodes[n].input_count; i++) {
      uint32_t p = producer_of(graph, graph->nodes[n].inputs[i]);
      if (p)
        r.items[r.start[p] + fill[p]++] = n;
    }
  free(fill);
  return r;
}

static void readers_free(readers *r) {
  free(r->start);
  free(r->items);
}

// ---- partition checks ------------------------------------------------------------------------

// Every computed node is in a kernel, leaves in none; each kernel's nodes are contiguous (no
// leaf between them either), kernels are numbered in the order they appear, and the kernel
// table counts their nodes.
static void check_complete_and_contiguous(const attn_graph *graph) {
  assert_true(graph->kernel_count >= 1);
  uint32_t *counts = calloc(graph->kernel_count, sizeof(uint32_t));
  assert_non_null(counts);
  uint32_t open = 0, last = 0;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    assert_false(node->is_dead);
    if (!is_computed(graph, n)) {
      assert_int_equal(node->kernel, 0);
      open = 0;
      continue;
    }
    uint32_t k = node->kernel;
    assert_true(k >= 1 && k < graph->kernel_count);
    if (k != open) {
      if (k != last + 1)
        fail_msg("node %u: kernel k%u follows k%u (not contiguous or out of order)", n, k, last);
      open = last = k;
    }
    counts[k]++;
  }
  assert_int_equal(last, graph->kernel_count - 1);
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    assert_true(counts[k] > 0);
    assert_int_equal(counts[k], graph->kernels[k].node_count);
  }
  free(counts);
}

// No path leaves a kernel and comes back into it.
static void check_convex(const attn_graph *graph) {
  readers r = find_readers(graph);
  uint32_t *stamp = calloc(graph->node_count, sizeof(uint32_t));
  uint32_t *stack = calloc(graph->node_count, sizeof(uint32_t));
  assert_true(stamp && stack);
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    uint32_t depth = 0;
    for (uint32_t m = 1; m < graph->node_count; m++) {
      if (!is_computed(graph, m) || graph->nodes[m].kernel != k)
        continue;
      for (uint32_t e = r.start[m]; e < r.start[m + 1]; e++) {
        uint32_t c = r.items[e];
        if (graph->nodes[c].kernel != k && stamp[c] != k) {
          stamp[c] = k;
          stack[depth++] = c;
        }
      }
    }
    while (depth) {
      uint32_t x = stack[--depth];
      for (uint32_t e = r.start[x]; e < r.start[x + 1]; e++) {
        uint32_t c = r.items[e];
        if (graph->nodes[c].kernel == k)
          fail_msg("kernel k%u is not convex: a path leaves it and comes back at node %u", k, c);
        if (stamp[c] != k) {
          stamp[c] = k;
          stack[depth++] = c;
        }
      }
    }
  }
  free(stamp);
  free(stack);
  readers_free(&r);
}

// Each kernel holds what its kind says: one anchor plus elementwise nodes for gemm, norm and
// reduction kernels, only elementwise nodes in an elementwise kernel, one node otherwise.
static void check_kinds(const attn_graph *graph, uint32_t *out_kind_counts) {
  memset(out_kind_counts, 0, ATTN_KERNEL_KIND_COUNT * sizeof(uint32_t));
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    uint32_t classes[ATTN_OP_CLASS_COUNT] = {0}, size = 0;
    for (uint32_t n = 1; n < graph->node_count; n++) {
      if (is_computed(graph, n) && graph->nodes[n].kernel == k) {
        classes[attn_op_get_class(graph->nodes[n].op)]++;
        size++;
      }
    }
    attn_kernel_kind kind = graph->kernels[k].kind;
    out_kind_counts[kind]++;
    uint32_t elementwise = classes[ATTN_OP_CLASS_ELEMENTWISE];
    switch (kind) {
    case ATTN_KERNEL_ELEMENTWISE:
      assert_int_equal(elementwise, size);
      break;
    case ATTN_KERNEL_GEMM:
      assert_int_equal(classes[ATTN_OP_CLASS_MATMUL], 1);
      assert_int_equal(elementwise, size - 1);
      break;
    case ATTN_KERNEL_NORM:
      assert_int_equal(classes[ATTN_OP_CLASS_NORM], 1);
      assert_int_equal(elementwise, size - 1);
      break;
    case ATTN_KERNEL_REDUCTION:
      assert_int_equal(classes[ATTN_OP_CLASS_REDUCTION], 1);
      assert_int_equal(elementwise, size - 1);
      break;
    case ATTN_KERNEL_ALIAS:
      assert_int_equal(classes[ATTN_OP_CLASS_RESHAPE], 1);
      assert_int_equal(size, 1);
      break;
    case ATTN_KERNEL_LAYOUT:
      assert_int_equal(classes[ATTN_OP_CLASS_LAYOUT] + classes[ATTN_OP_CLASS_RESHAPE], 1);
      assert_int_equal(size, 1);
      break;
    case ATTN_KERNEL_ATTENTION:
      assert_int_equal(classes[ATTN_OP_CLASS_ATTENTION], 1);
      assert_int_equal(size, 1);
      break;
    case ATTN_KERNEL_GATHER:
      assert_int_equal(classes[ATTN_OP_CLASS_GATHER], 1);
      assert_int_equal(size, 1);
      break;
    case ATTN_KERNEL_TOPK:
      assert_int_equal(classes[ATTN_OP_CLASS_TOPK], 1);
      assert_int_equal(size, 1);
      break;
    case ATTN_KERNEL_ROPE:
      assert_int_equal(classes[ATTN_OP_CLASS_ROPE], 1);
      assert_int_equal(size, 1);
      break;
    case ATTN_KERNEL_OTHER:
    case ATTN_KERNEL_KIND_COUNT:
      assert_int_equal(size, 1);
      break;
    }
  }
}

static void check_partition(const attn_graph *graph) {
  check_complete_and_contiguous(graph);
  check_convex(graph);
  uint32_t kinds[ATTN_KERNEL_KIND_COUNT];
  check_kinds(graph, kinds);
}

// ---- memory plan checks ----------------------------------------------------------------------

static bool same_dims(const attn_type *a, const attn_type *b) {
  if (a->rank != b->rank)
    return false;
  for (uint32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i])
      return false;
  return true;
}

static int64_t value_bytes(const attn_graph *graph, uint32_t v, const int64_t *symbols) {
  const attn_type *type = &graph->values[v].type;
  int64_t bytes = (int64_t)attn_dtype_size(type->dtype);
  for (uint32_t d = 0; d < type->rank; d++) {
    int64_t dim;
    assert_int_equal(attn_graph_dim_eval(graph, type->dims[d], symbols, &dim), ATTN_OK);
    bytes *= dim;
  }
  return bytes;
}

// Which values get buffers: the computed values read by another kernel or returned, an alias
// sharing its input's; nothing else. Every buffer is at least as large as each of its values.
// Values viewing the same data (an alias chain from one owner) form a group living from the
// owner's kernel to the last read of any of them; two groups in one buffer may overlap only
// where the later one is written in place over the earlier at the earlier's last kernel, by a
// kernel that reads it.
static void check_plan(const attn_graph *graph, const int64_t *symbols) {
  assert_true(graph->buffer_count >= 1);
  uint32_t forever = graph->kernel_count;
  uint32_t v_count = graph->value_count;
  uint32_t *last = calloc(v_count, sizeof(uint32_t));
  uint32_t *owner = calloc(v_count, sizeof(uint32_t)); // the value whose data it views
  bool *read_outside = calloc(v_count, sizeof(bool));
  int64_t *capacity = calloc(graph->buffer_count, sizeof(int64_t));
  assert_true(last && owner && read_outside && capacity);
  for (uint32_t b = 1; b < graph->buffer_count; b++)
    assert_int_equal(attn_graph_dim_eval(graph, graph->buffers[b].bytes, symbols, &capacity[b]),
                     ATTN_OK);
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    for (uint32_t i = 0; is_computed(graph, n) && i < node->input_count; i++) {
      uint32_t v = node->inputs[i].index, p = producer_of(graph, node->inputs[i]);
      if (p && graph->nodes[p].kernel != node->kernel)
        read_outside[v] = true;
      if (last[v] < node->kernel)
        last[v] = node->kernel; // kernels are numbered in execution order
    }
  }
  for (uint32_t i = 0; i < graph->output_count; i++)
    last[graph->outputs[i].index] = forever;

  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (!is_computed(graph, n)) {
      for (uint32_t o = 0; o < node->output_count; o++)
        assert_int_equal(graph->values[node->outputs[o].index].buffer, 0);
      continue;
    }
    for (uint32_t o = 0; o < node->output_count; o++) {
      uint32_t v = node->outputs[o].index, buffer = graph->values[v].buffer;
      bool is_needed = read_outside[v] || is_output(graph, v);
      owner[v] = v;
      if (kind_of(graph, n) == ATTN_KERNEL_ALIAS) {
        uint32_t input = node->inputs[0].index;
        owner[v] = owner[input] ? owner[input] : v;
        if (!is_needed)
          assert_int_equal(buffer, 0);
        else if (producer_of(graph, node->inputs[0]))
          assert_int_not_equal(buffer, 0);
        if (is_needed)
          assert_int_equal(buffer, graph->values[input].buffer);
      } else if (is_needed) {
        assert_int_not_equal(buffer, 0);
      } else {
        assert_int_equal(buffer, 0);
      }
      assert_true(buffer < graph->buffer_count);
      if (buffer)
        assert_true(value_bytes(graph, v, symbols) <= capacity[buffer]);
    }
  }
  for (uint32_t i = 0; i < graph->input_count; i++)
    assert_int_equal(graph->values[graph->inputs[i].index].buffer, 0);

  // Group lifetimes, by owner: first = the owner's kernel, end = the last read of any view.
  uint32_t *end = calloc(v_count, sizeof(uint32_t));
  assert_non_null(end);
  for (uint32_t v = 1; v < v_count; v++)
    if (graph->values[v].buffer && end[owner[v]] < last[v])
      end[owner[v]] = last[v];
  for (uint32_t a = 1; a < v_count; a++) {
    if (owner[a] != a || !graph->values[a].buffer)
      continue;
    for (uint32_t b = a + 1; b < v_count; b++) {
      if (owner[b] != b || graph->values[b].buffer != graph->values[a].buffer)
        continue;
      uint32_t ka = graph->nodes[graph->values[a].producer.index].kernel;
      uint32_t kb = graph->nodes[graph->values[b].producer.index].kernel;
      uint32_t early = ka <= kb ? a : b, late = ka <= kb ? b : a;
      uint32_t late_kernel = ka <= kb ? kb : ka;
      if (end[early] < late_kernel)
        continue; // the earlier group died before the later one was written
      // Overlapping: only an in-place write at the earlier group's last kernel.
      if (end[early] != late_kernel)
        fail_msg("values %u and %u share buffer b%u while both live", early, late,
                 graph->values[a].buffer);
      // In place: the later value comes from an elementwise node, and every read of the
      // earlier group in that kernel is by an elementwise node of the read value's shape,
      // which is the later value's shape, so each element is read before it is overwritten.
      const attn_value *written = &graph->values[late];
      uint32_t reads = 0;
      if (!(attn_op_get_info(graph->nodes[written->producer.index].op)->flags &
            ATTN_OP_ELEMENTWISE))
        fail_msg("value %u is written over %u in b%u by a node that is not elementwise", late,
                 early, written->buffer);
      for (uint32_t n = 1; n < graph->node_count; n++) {
        const attn_node *node = &graph->nodes[n];
        for (uint32_t i = 0;
             is_computed(graph, n) && node->kernel == late_kernel && i < node->input_count; i++) {
          const attn_value *read = &graph->values[node->inputs[i].index];
          if (owner[node->inputs[i].index] != early)
            continue;
          reads++;
          bool is_elementwise = (attn_op_get_info(node->op)->flags & ATTN_OP_ELEMENTWISE) != 0;
          if (!is_elementwise ||
              !same_dims(&graph->values[node->outputs[0].index].type, &read->type) ||
              !same_dims(&read->type, &written->type))
            fail_msg("value %u overwrites %u in b%u while node %u (%s) still reads it", late, early,
                     written->buffer, n, attn_op_get_info(node->op)->name);
        }
      }
      if (reads == 0)
        fail_msg("value %u overwrites %u in b%u without reading it", late, early, written->buffer);
    }
  }
  free(end);
  free(last);
  free(owner);
  free(read_outside);
  free(capacity);
}

// ---- the model tests ---------------------------------------------------------------------------

static void models_are_partitioned_completely_contiguously_and_convexly(void **state) {
  (void)state;
  for (size_t i = 0; i < MODEL_CASE_COUNT; i++) {
    const model_case *c = &model_cases[i];
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *graph = load_model(c, &diag);
    int64_t *symbols = pass_test_symbols(graph, c->bindings, SYMBOL_DEFAULT);
    expect_passes(graph, "partition", symbols);
    check_complete_and_contiguous(graph);
    check_convex(graph);
    uint32_t kinds[ATTN_KERNEL_KIND_COUNT];
    check_kinds(graph, kinds);
    for (int k = 0; k < ATTN_KERNEL_KIND_COUNT; k++)
      if (kinds[k] != c->kinds[k])
        fail_msg("%s with %s: %u %s kernels, expected %u", c->model, c->config, kinds[k],
                 attn_kernel_kind_name((attn_kernel_kind)k), c->kinds[k]);
    // Partitioning a partitioned graph gives the same kernels.
    uint32_t first_count = graph->kernel_count;
    expect_passes(graph, "partition", symbols);
    assert_int_equal(graph->kernel_count, first_count);
    check_partition(graph);
    free(symbols);
    attn_graph_destroy(graph);
    attn_diag_deinit(&diag);
  }
}

// attn_graph_kernel_io against a brute-force reading of the partition: each kernel's node range
// holds exactly its nodes; its inputs are the values its nodes read from outside it (iotas
// excepted), each once in first-use order; its outputs the values it makes that another kernel
// reads or that are graph outputs, in the order they are made.
static void check_kernel_io(const attn_graph *graph) {
  attn_arena arena;
  attn_arena_init(&arena, attn_allocator_system());
  attn_kernel_io *io = NULL;
  assert_int_equal(attn_graph_kernel_io(graph, &arena, &io), ATTN_OK);
  assert_non_null(io);
  attn_value_id *want = calloc(graph->value_count + 1, sizeof(*want));
  assert_non_null(want);
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    uint32_t count = 0;
    for (uint32_t n = 1; n < graph->node_count; n++) {
      if (!is_computed(graph, n) || graph->nodes[n].kernel != k)
        continue;
      assert_true(n >= io[k].first_node && n < io[k].end_node);
      for (uint32_t i = 0; i < graph->nodes[n].input_count; i++) {
        attn_value_id v = graph->nodes[n].inputs[i];
        uint32_t p = graph->values[v.index].producer.index;
        if ((is_computed(graph, p) && graph->nodes[p].kernel == k) ||
            (p && graph->nodes[p].op == ATTN_OP_IOTA))
          continue;
        bool seen = false;
        for (uint32_t j = 0; j < count && !seen; j++)
          seen = want[j].index == v.index;
        if (!seen)
          want[count++] = v;
      }
    }
    assert_int_equal(io[k].input_count, count);
    for (uint32_t j = 0; j < count; j++)
      assert_int_equal(io[k].inputs[j].index, want[j].index);
    count = 0;
    for (uint32_t n = io[k].first_node; n < io[k].end_node; n++) {
      if (!is_computed(graph, n) || graph->nodes[n].kernel != k)
        continue;
      for (uint32_t o = 0; o < graph->nodes[n].output_count; o++) {
        uint32_t v = graph->nodes[n].outputs[o].index;
        bool leaves = is_output(graph, v);
        for (uint32_t r = 1; r < graph->node_count && !leaves; r++)
          for (uint32_t i = 0; is_computed(graph, r) && graph->nodes[r].kernel != k &&
                               i < graph->nodes[r].input_count;
               i++)
            leaves = leaves || graph->nodes[r].inputs[i].index == v;
        if (leaves)
          want[count++] = graph->nodes[n].outputs[o];
      }
    }
    assert_int_equal(io[k].output_count, count);
    for (uint32_t j = 0; j < count; j++)
      assert_int_equal(io[k].outputs[j].index, want[j].index);
  }
  free(want);
  attn_arena_deinit(&arena);
}

static void kernel_io_matches_the_partition(void **state) {
  (void)state;
  for (size_t i = 0; i < MODEL_CASE_COUNT; i++) {
    const model_case *c = &model_cases[i];
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *graph = load_model(c, &diag);
    int64_t *symbols = pass_test_symbols(graph, c->bindings, SYMBOL_DEFAULT);
    attn_arena arena;
    attn_arena_init(&arena, attn_allocator_system());
    attn_kernel_io *io = (attn_kernel_io *)&arena; // anything but NULL
    assert_int_equal(attn_graph_kernel_io(graph, &arena, &io), ATTN_OK);
    assert_null(io); // not partitioned yet
    attn_arena_deinit(&arena);
    expect_passes(graph, "default", symbols);
    check_kernel_io(graph);
    free(symbols);
    attn_graph_destroy(graph);
    attn_diag_deinit(&diag);
  }
}

static void models_get_a_valid_memory_plan(void **state) {
  (void)state;
  for (size_t i = 0; i < MODEL_CASE_COUNT; i++) {
    const model_case *c = &model_cases[i];
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *graph = load_model(c, &diag);
    int64_t *symbols = pass_test_symbols(graph, c->bindings, SYMBOL_DEFAULT);
    expect_passes(graph, "partition,plan-memory", symbols);
    check_partition(graph);
    check_plan(graph, symbols);
    attn_graph_stats stats;
    assert_int_equal(attn_graph_stats_compute(graph, symbols, &stats), ATTN_OK);
    assert_true(stats.has_bytes);
    assert_true(stats.live_peak_bytes > 0);
    double ratio = (double)stats.planned_bytes / (double)stats.live_peak_bytes;
    if (c->max_ratio > 0.0 && ratio > c->max_ratio)
      fail_msg("%s with %s: planned %lld bytes, %.3f times the largest live set", c->model,
               c->config, (long long)stats.planned_bytes, ratio);
    // The default pipeline ends with the same two passes and gives a valid plan as well.
    attn_graph_destroy(graph);
    graph = load_model(c, &diag);
    expect_passes(graph, "default", symbols);
    check_partition(graph);
    check_plan(graph, symbols);
    free(symbols);
    attn_graph_destroy(graph);
    attn_diag_deinit(&diag);
  }
}

static void models_keep_exact_numerics(void **state) {
  (void)state;
  for (size_t i = 0; i < MODEL_CASE_COUNT; i++) {
    const model_case *c = &model_cases[i];
    if (!c->is_evaluated)
      continue;
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *graph = load_model(c, &diag);
    int64_t *symbols = pass_test_symbols(graph, c->bindings, SYMBOL_DEFAULT);
    // Inputs: floats in [-1, 1), ids below int_bound; weights small.
    pass_test_data input_data = {1.0, c->int_bound, false}, weight_data = {0.25, 4, false};
    pass_test_outputs before = {0}, after = {0};
    assert_int_equal(pass_test_evaluate(graph, symbols, &input_data, &weight_data, &diag, &before),
                     ATTN_OK);
    expect_passes(graph, "partition,plan-memory", symbols);
    assert_int_equal(pass_test_evaluate(graph, symbols, &input_data, &weight_data, &diag, &after),
                     ATTN_OK);
    assert_true(before.count > 0);
    pass_test_compare(c->model, &before, &after, 0.0, PASS_TEST_EXACT);
    pass_test_outputs_free(&before);
    pass_test_outputs_free(&after);
    free(symbols);
    attn_graph_destroy(graph);
    attn_diag_deinit(&diag);
  }
}

// In GPT-2 each gelu is a gemm epilogue, and each residual add (an add in a gemm kernel that
// reads another kernel's value of its own shape) writes in place over the residual stream.
static void gpt2_fuses_epilogues_and_adds_residuals_in_place(void **state) {
  (void)state;
  const model_case *c = &model_cases[0];
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = load_model(c, &diag);
  int64_t *symbols = pass_test_symbols(graph, c->bindings, SYMBOL_DEFAULT);
  expect_passes(graph, "partition,plan-memory", symbols);
  uint32_t gelus = 0, residuals = 0;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->op == ATTN_OP_GELU) {
      assert_int_equal(kind_of(graph, n), ATTN_KERNEL_GEMM);
      gelus++;
    }
    if (node->op != ATTN_OP_ADD || kind_of(graph, n) != ATTN_KERNEL_GEMM)
      continue;
    for (uint32_t i = 0; i < 2; i++) {
      uint32_t p = producer_of(graph, node->inputs[i]);
      if (!p || graph->nodes[p].kernel == node->kernel)
        continue;
      assert_int_equal(graph->values[node->outputs[0].index].buffer,
                       graph->values[node->inputs[i].index].buffer);
      residuals++;
    }
  }
  assert_int_equal(gelus, c->layers);
  assert_int_equal(residuals, 2 * c->layers);
  free(symbols);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// ---- small graphs ------------------------------------------------------------------------------

// `text` without the kernel comment lines and the buffer comments after nodes.
static char *strip_plan_comments(const char *text) {
  char *copy = malloc(strlen(text) + 1);
  assert_non_null(copy);
  size_t used = 0;
  for (const char *line = text; *line;) {
    const char *end = strchr(line, '\n');
    size_t length = end ? (size_t)(end - line + 1) : strlen(line);
    if (strncmp(line, "  # kernel ", 11) != 0) {
      const char *comment = strstr(line, "  # buffer");
      size_t keep = comment && comment < line + length ? (size_t)(comment - line) : length;
      memcpy(copy + used, line, keep);
      used += keep;
      if (keep != length)
        copy[used++] = '\n';
    }
    line += length;
  }
  copy[used] = '\0';
  return copy;
}

static void printed_plan_parses_back(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  const model_case *c = &model_cases[2];
  attn_graph *graph = load_model(c, &diag);
  expect_passes(graph, "partition,plan-memory", NULL);
  char *printed = pass_test_print(graph);
  assert_non_null(strstr(printed, "  # kernel k1 gather: gather\n"));
  assert_non_null(strstr(printed, "  # buffer b"));
  attn_graph *again = parse_text(printed, attn_allocator_system(), &diag);
  assert_int_equal(again->kernel_count, 0);
  assert_int_equal(again->buffer_count, 0);
  char *reprinted = pass_test_print(again);
  char *stripped = strip_plan_comments(printed);
  assert_string_equal(reprinted, stripped);
  free(printed);
  free(reprinted);
  free(stripped);
  attn_graph_destroy(again);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

static void plan_memory_requires_the_partition(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_text(small_graph, attn_allocator_system(), &diag);
  assert_int_equal(run_passes(graph, "plan-memory", NULL), ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_diag_last_error(&diag), "requires the partition"));
  assert_int_equal(graph->buffer_count, 0);

  // A node added after the partition belongs to no kernel; the plan refuses it until the
  // partition runs again.
  expect_passes(graph, "partition", NULL);
  attn_node_id added;
  assert_int_equal(
      attn_graph_add_node(graph, ATTN_OP_NEG, &graph->outputs[0], 1, NULL, ATTN_LOC_NONE, &added),
      ATTN_OK);
  assert_int_equal(attn_graph_node(graph, added)->kernel, 0);
  assert_int_equal(attn_graph_value(graph, attn_node_output(graph, added, 0))->buffer, 0);
  attn_diag_clear(&diag);
  assert_int_equal(run_passes(graph, "plan-memory", NULL), ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_diag_last_error(&diag), "is in no kernel"));
  expect_passes(graph, "partition,plan-memory", NULL);
  assert_int_not_equal(attn_graph_node(graph, (attn_node_id){graph->node_count - 1})->kernel, 0);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// Compaction keeps each node's kernel and recounts the kernels' nodes.
static void compaction_keeps_the_partition(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_text("graph g(x: f32[4]) -> (y: f32[4]) {\n"
                                 "  y = tanh(exp(x))\n"
                                 "  unused = sigmoid(x)\n"
                                 "  return y\n"
                                 "}\n",
                                 attn_allocator_system(), &diag);
  expect_passes(graph, "partition", NULL);
  assert_int_equal(graph->kernel_count, 3); // the sentinel, exp + tanh, sigmoid
  uint32_t sigmoid = 0, tanh_kernel = 0;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    if (graph->nodes[n].op == ATTN_OP_SIGMOID)
      sigmoid = n;
    if (graph->nodes[n].op == ATTN_OP_TANH)
      tanh_kernel = graph->nodes[n].kernel;
  }
  assert_true(sigmoid && tanh_kernel);
  uint32_t sigmoid_kernel = graph->nodes[sigmoid].kernel;
  assert_int_equal(graph->kernels[tanh_kernel].node_count, 2);
  assert_int_equal(graph->kernels[sigmoid_kernel].node_count, 1);
  graph->nodes[sigmoid].is_dead = true;
  assert_int_equal(attn_graph_compact(graph), ATTN_OK);
  assert_int_equal(graph->kernels[sigmoid_kernel].node_count, 0);
  assert_int_equal(graph->kernels[tanh_kernel].node_count, 2);
  for (uint32_t n = 1; n < graph->node_count; n++)
    if (graph->nodes[n].op == ATTN_OP_EXP || graph->nodes[n].op == ATTN_OP_TANH)
      assert_int_equal(graph->nodes[n].kernel, tanh_kernel);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// Both passes under every allocation failure: out of memory or success, never a leak, and a
// graph that still verifies (the passes allocate everything before they change the graph).
static void passes_survive_allocation_failures(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_pipeline pipeline;
  assert_int_equal(
      attn_pipeline_parse("partition,plan-memory", attn_allocator_system(), &diag, &pipeline),
      ATTN_OK);
  int64_t symbols[2] = {2, 3};
  uint32_t failures = 0;
  for (long fail_after = 0;; fail_after++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    attn_graph *graph = parse_text(small_graph, attn_counting_allocator_get(&counter), &diag);
    attn_diag_clear(&diag);
    counter.total_requests = 0;
    counter.fail_after = fail_after;
    attn_pipeline_run_options options = {.symbol_values = symbols};
    attn_status status = attn_pipeline_run(&pipeline, graph, &options);
    counter.fail_after = -1;
    bool is_done = status == ATTN_OK;
    if (!is_done) {
      if (status != ATTN_ERROR_OUT_OF_MEMORY)
        fail_msg("fail_after=%ld: %s: %s", fail_after, attn_status_name(status),
                 attn_diag_last_error(&diag));
      failures++;
    }
    assert_int_equal(attn_graph_verify(graph), ATTN_OK);
    if (is_done) {
      check_partition(graph);
      check_plan(graph, symbols);
    }
    attn_graph_destroy(graph);
    if (counter.live_bytes != 0)
      fail_msg("fail_after=%ld: %zu bytes leaked", fail_after, counter.live_bytes);
    if (is_done)
      break;
  }
  assert_true(failures >= 4);
  attn_pipeline_deinit(&pipeline);
  attn_diag_deinit(&diag);
}

// The report: counts without a partition, then with the plan and bindings the figures of
// tests/ir/passes/plan_memory.attn.
static void stats_report_partition_and_plan(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_text(small_graph, attn_allocator_system(), &diag);
  attn_graph_stats stats;
  int64_t symbols[2] = {2, 3};
  assert_int_equal(attn_graph_stats_compute(graph, symbols, &stats), ATTN_OK);
  assert_int_equal(stats.live_node_count, 14);
  assert_int_equal(stats.op_class_counts[ATTN_OP_CLASS_MATMUL], 4);
  assert_false(stats.is_partitioned);
  assert_int_equal(stats.kernel_count, 0);
  assert_false(stats.is_planned);
  assert_false(stats.has_bytes);

  expect_passes(graph, "partition,plan-memory", symbols);
  assert_int_equal(attn_graph_stats_compute(graph, symbols, &stats), ATTN_OK);
  assert_int_equal(stats.kernel_count, 9);
  assert_int_equal(stats.kernel_kind_counts[ATTN_KERNEL_GEMM], 4);
  assert_int_equal(stats.buffer_count, 4);
  assert_true(stats.has_bytes);
  // b1 6*32 + b2 6*256 + b3 2*3*3*4 + b4 6*4; at the sum: y + s + big + z, the same buffers.
  assert_int_equal(stats.planned_bytes, 192 + 1536 + 72 + 24);
  assert_int_equal(stats.live_peak_bytes, 192 + 72 + 1536 + 24);
  assert_int_equal(stats.live_peak_kernel, 9);

  int64_t unbound[2] = {-1, -1};
  assert_int_equal(attn_graph_stats_compute(graph, unbound, &stats), ATTN_OK);
  assert_true(stats.is_planned);
  assert_false(stats.has_bytes);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(models_are_partitioned_completely_contiguously_and_convexly),
      cmocka_unit_test(models_get_a_valid_memory_plan),
      cmocka_unit_test(kernel_io_matches_the_partition),
      cmocka_unit_test(models_keep_exact_numerics),
      cmocka_unit_test(gpt2_fuses_epilogues_and_adds_residuals_in_place),
      cmocka_unit_test(printed_plan_parses_back),
      cmocka_unit_test(plan_memory_requires_the_partition),
      cmocka_unit_test(compaction_keeps_the_partition),
      cmocka_unit_test(passes_survive_allocation_failures),
      cmocka_unit_test(stats_report_partition_and_plan),
  };
  return cmocka_run_group_tests_name("passes/partition", tests, NULL, NULL);
}
