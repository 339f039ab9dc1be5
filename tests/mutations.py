"""Mutation testing: plant one-line bugs, one at a time, in a temporary copy of the project, run the tests that
should catch each, and print a caught / survived table. Not part of the test suite (pytest collects test_*.py
files only; this one defines no tests):

    python tests/mutations.py                 # every mutation (200-odd: 25-30 minutes on 2 idle cores)
    python tests/mutations.py -k lm_coef -j 2 # the mutations whose name contains lm_coef, two at a time

A mutation whose original text is no longer found (the code was changed since) is reported 'not applicable':
update its text. Before the mutations, every test selection runs once on the unchanged copy, the selections of one
test file joined into one run (--no_baseline skips that): a selection that fails there would count every mutation as
caught, and the script stops after listing the runs that failed.
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_LEVEL = 'tests/test_run_level.py'
ZERO_SHOT = 'tests/test_zeroshot.py'
PRETRAIN, CORPUS = 'tests/test_pretrain.py', 'tests/test_corpus.py'
PACKING = 'tests/test_packing.py'
REDESIGN = 'tests/test_redesign.py'  # what issue 28's redesign built, and the run's lr and step size
SAVEDMODEL = 'tests/test_savedmodel.py'

# (name, file, original text (must occur exactly once), replacement, pytest arguments that should catch it)
MUTATIONS = [
    # --- layers: the model
    ('gelu constant', 'model.py', '(x + 0.044715 * tf.pow(x, 3))', '(x + 0.04715 * tf.pow(x, 3))',
     ['tests/test_model.py', '-k', 'numpy_reference']),
    ('gelu fused gradient', 'engine/kernels.py', 'c * (1 + 3 * 0.044715 * x * x)', 'c * (1 + 0.044715 * x * x)',
     ['tests/test_fast_paths.py', '-k', 'fused_kernels']),
    ('LayerNorm epsilon', 'model.py', 'def norm(x, g, b, e=1e-5):', 'def norm(x, g, b, e=1e-3):',
     ['tests/test_model.py', '-k', 'epsilon or numpy_reference']),
    ('fused LayerNorm epsilon', 'engine/kernels.py', 'def fused_norm(x, g, b, e=1e-5):', 'def fused_norm(x, g, b, e=1e-3):',
     ['tests/test_fast_paths.py', '-k', 'fused_kernels or fused_forward']),
    ('attention scaling', 'model.py', 'w = w * tf.math.rsqrt(tf.cast(v.shape[-1], w.dtype))',
     'w = w / tf.cast(v.shape[-1], w.dtype)', ['tests/test_model.py', '-k', 'numpy_reference']),
    ('causal mask', 'model.py', 'tf.linalg.band_part(tf.ones([T, T]), -1, 0)', 'tf.linalg.band_part(tf.ones([T, T]), -1, -1)',
     ['tests/test_model.py', '-k', 'causal or numpy_reference']),
    ('masking of attention weights', 'model.py', 'return w * b + -1e9 * (1 - b)', 'return w * b',
     ['tests/test_model.py', '-k', 'causal or numpy_reference']),
    ('pooling at the delimiter', 'model.py', 'tf.equal(X[:, :, 0], clf_token)', 'tf.equal(X[:, :, 0], clf_token - 1)',
     ['tests/test_model.py', '-k', 'numpy_reference']),
    ('dropout keep/drop confusion', 'model.py', 'tf.cast(u >= pdrop, x.dtype)', 'tf.cast(u < pdrop, x.dtype)',
     ['tests/test_model.py', '-k', 'dropout']),
    ('classifier dropout mask per choice', 'model.py', 'noise_shape=tf.concat([tf.shape(clf_h)[:1], [1, C]], 0)',
     'noise_shape=tf.concat([tf.shape(clf_h)[:1], [2, C]], 0)', ['tests/test_model.py', '-k', 'dropout']),
    ('special rows scale', 'formats/weights.py', '(np.random.randn(n_special, n_embd) * 0.02)', '(np.random.randn(n_special, n_embd) * 0.01)',
     ['tests/test_loading.py']),
    # --- layers: the optimiser
    ('Adam bias correction', 'opt.py', 'tf.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)', 'tf.sqrt(1 - self.b2 ** t)',
     ['tests/test_opt.py']),
    ('Adam epsilon inside the root', 'opt.py', 'pt = p - lrt * (mt / (tf.sqrt(vt) + e) + l2 * p)',
     'pt = p - lrt * (mt / tf.sqrt(vt + e) + l2 * p)', ['tests/test_opt.py']),
    ('Adam decay on vectors', 'opt.py', 'l2 = self.l2 if len(p.shape) > 1 or self.vector_l2 else 0.', 'l2 = self.l2',
     ['tests/test_opt.py']),
    ('Adam schedule counter before the increment', 'opt.py', 'lrt = self.learning_rate(t)', 'lrt = self.learning_rate(t - 1)',
     ['tests/test_opt.py']),
    ('Adam clipping per tensor', 'opt.py', 'grads, _ = tf.clip_by_global_norm(grads, self.max_grad_norm, use_norm=norm)',
     'grads = [tf.clip_by_norm(g, self.max_grad_norm) for g in grads]', ['tests/test_opt.py']),
    # --- layers: the data
    ('data split seed', 'datasets.py', 'SPLIT_SEED = 3535999445', 'SPLIT_SEED = 3535999444', ['tests/test_datasets.py']),
    ('position ids', 'text_utils.py', 'return self.n_vocab + self.n_special + t', 'return self.n_vocab + self.n_special - 1 + t',
     ['tests/test_tasks.py', '-k', 'transform_roc']),
    ('BPE end-of-word mark', 'text_utils.py', "word = tuple(token[:-1]) + (token[-1] + '</w>',)", 'word = tuple(token)',
     ['tests/test_text_utils.py']),
    ('BPE highest rank first', 'text_utils.py', 'first, second = min(ranked)[1]', 'first, second = max(ranked)[1]',
     ['tests/test_text_utils.py']),
    ('packed evaluation mask', 'model.py', 'tf.equal(part[:, None, :], 0)', 'tf.equal(part[:, None, :], 3)',
     ['tests/test_fast_paths.py', '-k', 'packed']),
    ('context length', 'finetuning/inputs.py', '        max_len = n_ctx // 2 - 2', '        max_len = n_ctx // 2 - 1',
     [RUN_LEVEL, '-k', 'evaluation_logs']),
    # --- the run (the survivors of issue 15)
    ('lm_coef fixed at 0.5 in the run', 'train.py', 'finetune_objective(model, args.lm_coef, path)',
     'finetune_objective(model, 0.5, path)', [RUN_LEVEL, REDESIGN, '-k', 'evaluation_logs or numpy_runs_cost_norm']),
    ('lm_coef ignored by the loss', 'model.py', 'return tf.reduce_mean(clf_losses) + lm_coef * tf.reduce_mean(lm_losses)',
     'return tf.reduce_mean(clf_losses) + 0.5 * tf.reduce_mean(lm_losses)', [RUN_LEVEL, REDESIGN, '-k', 'evaluation_logs or numpy_runs_cost_norm']),
    ('attention dropout given a keep probability', 'model.py', 'w = dropout(w, cfg.attn_pdrop, seeds)',
     'w = dropout(w, 1 - cfg.attn_pdrop, seeds)', [RUN_LEVEL, '-k', 'dropout_site']),
    ('we dropout by rows', 'model.py', 'we = dropout(self.we, self.cfg.embd_pdrop, seeds)',
     'we = dropout(self.we, self.cfg.embd_pdrop, seeds, noise_shape=[self.we.shape[0], 1])',
     [RUN_LEVEL, '-k', 'dropout_site']),
    ('best_params saved at every evaluation', 'train.py',
     'if args.submit and score > run.state.best_score:', 'if args.submit:',
     [RUN_LEVEL, '-k', 'best_params']),
    ('best_params saved on an equal accuracy', 'train.py',
     'if args.submit and score > run.state.best_score:', 'if args.submit and score >= run.state.best_score:',
     [RUN_LEVEL, '-k', 'best_params']),
    ('the submission from the last parameters', 'train.py',
     'model.assign(load_params(params_path, [p.shape for p in model.params]))', 'pass',
     [RUN_LEVEL, '-k', 'submission']),
    ('no shuffle', 'train.py', 'order = shuffle(np.arange(n_train), random_state=np.random.mtrand._rand)',
     'order = np.arange(n_train)', [REDESIGN, '-k', 'numpy_runs_cost_norm']),
    ('the same order every epoch', 'train.py', 'run.state.epoch_rng = np.random.get_state()  # where', 'pass  # where',
     [REDESIGN, '-k', 'numpy_runs_cost_norm']),
    ('t_total from n_batch alone', 'train.py', 'data.n_ctx,\n                                          n_batches * args.n_iter)',
     'data.n_ctx,\n                                          len(train_split.Y) // args.n_batch * args.n_iter)', [REDESIGN, '-k', 'numpy_runs_cost_norm']),
    ('evaluation cost summed', 'engine/loop.py', 'float(np.sum(np.concatenate(losses), dtype=np.float64)) / n',
     'float(np.sum(np.concatenate(losses), dtype=np.float64))', [RUN_LEVEL, '-k', 'evaluation_logs']),
    # --- the other tasks' heads and inputs
    ('similarity orders averaged', 'model.py', 'tf.matmul(tf.reduce_sum(clf_h, 1), self.clf_w)',
     'tf.matmul(tf.reduce_mean(clf_h, 1), self.clf_w)', ['tests/test_heads.py']),
    ('regression loss absolute', 'model.py', 'return tf.square(clf_logits[:, 0] - tf.cast(Y, tf.float32))',
     'return tf.abs(clf_logits[:, 0] - tf.cast(Y, tf.float32))', ['tests/test_heads.py']),
    ('pair cut from the first text on a tie', 'finetuning/inputs.py', "new_b = np.where(~over | b_short & ~a_short, lb, np.where(a_short, budget - la, budget // 2))",
     "new_b = np.where(~over | b_short & ~a_short, lb, np.where(a_short, budget - la, (budget + 1) // 2))",
     ['tests/test_tasks.py']),
    ('--deterministic ignored', 'train.py', '        tf.config.experimental.enable_op_determinism()', '        pass',
     [RUN_LEVEL, '-k', 'determinism']),
    ('--max_grad_norm not passed to the optimiser', 'train.py', 'max_grad_norm=args.max_grad_norm,', 'max_grad_norm=-1,',
     [RUN_LEVEL, REDESIGN, '-k', 'evaluation_logs or numpy_runs_cost_norm']),
    ('default learning rate', 'engine/flags.py', "'lr': dict(type=float, default=6.25e-5,", "'lr': dict(type=float, default=6.25e-4,",
     [RUN_LEVEL, '-k', 'default']),
    ('the same dropout seed at every update', 'opt.py', 'tf.cast(opt.t, tf.int32)', 'tf.constant(0, tf.int32)',
     [RUN_LEVEL, '-k', 'masks_change']),
    ('accumulated parts share the dropout seed', 'opt.py',
     'return tf.random.experimental.stateless_fold_in(tower_seed, k % accum_steps)', 'return tower_seed',
     [RUN_LEVEL, '-k', 'own_dropout']),
    ('towers share the dropout seed', 'opt.py', 'stateless_fold_in(update_seed, first_tower + k // accum_steps)',
     'stateless_fold_in(update_seed, 0)', ['tests/test_towers.py', '-k', 'own_we_mask']),
    ('dropout seeded by replica, not by tower', 'opt.py', 'first_tower = ctx.replica_id_in_sync_group * towers',
     'first_tower = ctx.replica_id_in_sync_group', ['tests/test_towers.py', '-k', 'own_we_mask or two_make']),
    # --- hostile files
    ('the cache read with pickle allowed', 'text_utils.py', 'with np.load(path, allow_pickle=False) as z:',
     'with np.load(path, allow_pickle=True) as z:', ['tests/test_hostile.py', '-k', 'cache']),
    ('the params unpickler is joblib\'s own', 'formats/weights.py', '    def find_class(self, module, name):',
     '    def _find_class(self, module, name):',
     ['tests/test_hostile.py', '-k', 'restore']),
    ('accuracy by argmin', 'finetuning/tasks.py', 'else np.argmax(logits, 1)', 'else np.argmin(logits, 1)',
     [RUN_LEVEL, '-k', 'evaluation_logs']),
    ('accuracy: a tie goes to the last choice', 'finetuning/tasks.py', 'else np.argmax(logits, 1)',
     'else logits.shape[1] - 1 - np.argmax(logits[:, ::-1], 1)', [RUN_LEVEL, '-k', 'accuracy']),
    ('--analysis reports the last evaluation', 'paper/runs.py',
     'best = evaluations[int(np.argmax([e[first] for e in evaluations]))]', 'best = evaluations[-1]',
     ['tests/test_analysis.py', '-k', 'report']),
    ('mixed precision softmax in 16 bits', 'model.py', 'w = tf.nn.softmax(w)',
     'w = tf.cast(tf.nn.softmax(tf.cast(w, v.dtype)), tf.float32)', [RUN_LEVEL, '-k', 'softmax']),
    ('generate ignores the temperature', 'generate.py', 'logits = np.asarray(logits, np.float64) / temperature',
     'logits = np.asarray(logits, np.float64)', ['tests/test_generate.py', '-k', 'temperature']),
    ('fused Adam drops the weight decay', 'opt.py', 'fused_update = tf.function(update_step, jit_compile=True)',
     'fused_update = tf.function(lambda p, g, m, v, lrt, b1, b2, e, l2: update_step(p, g, m, v, lrt, b1, b2, e, 0.), '
     'jit_compile=True)', [RUN_LEVEL, '-k', 'adam']),
    ('op-by-op Adam drops the weight decay', 'opt.py', 'update = fused_update if self.fused and not mirrored else update_step',
     'update = fused_update if self.fused and not mirrored else (lambda *a: update_step(*a[:-1], 0.))',
     [RUN_LEVEL, '-k', 'adam']),
    ('--xla: labels flipped in the compiled step', 'opt.py',
     'part_grads = tf.function(part_grads, jit_compile=True) if jit_compile else part_grads',
     'part_grads = tf.function(lambda b, s, f=part_grads: f((*b[:-1], 1 - b[-1]), s), jit_compile=True) '
     'if jit_compile else part_grads', [REDESIGN, '-k', 'xla_run']),
    # --- packed training and evaluation (issue 23)
    ('packed rows: a sequence sees its whole row', 'model.py',
     'visible = tf.logical_and(tf.equal(unit[:, :, None], unit[:, None, :]),',
     'visible = tf.logical_and(tf.equal(unit[:, :, None], unit[:, :, None]),',
     [PACKING, '-k', 'references_outputs or attends_only']),
    ('packed evaluation: an answer sees the others', 'model.py',
     'tf.logical_or(tf.equal(part[:, None, :], 0), tf.equal(part[:, :, None], part[:, None, :])))',
     'tf.logical_or(tf.equal(part[:, None, :], part[:, None, :]), tf.equal(part[:, :, None], part[:, None, :])))',
     [PACKING, '-k', 'evaluation_in_rows']),
    ('packed evaluation: the context a unit apart from its answers', 'train.py',
     'eval_step = loop.make_eval_step(model, 1 + task.n_seq if data.packed else 1, ',
     'eval_step = loop.make_eval_step(model, 1, ', [RUN_LEVEL, '-k', 'evaluation_logs']),
    ('packed LM: a sequence predicts the next one', 'model.py',
     'weights *= tf.cast(tf.logical_and(tf.equal(seg[:, 1:], seg[:, :-1]), seg[:, 1:] > 0), weights.dtype)',
     'weights *= tf.cast(seg[:, 1:] > 0, weights.dtype)',
     [PACKING, '-k', 'references_outputs']),
    ('packed LM: the mean over the part, not the sequence', 'model.py',
     'else tf.math.unsorted_segment_sum(weights, seq, n_seqs)\n        return total, count',
     'else tf.ones_like(total) * tf.reduce_sum(weights) / tf.cast(n_seqs, tf.float32)\n        return total, count', [PACKING, '-k', 'references_outputs']),
    ('packed positions run on along the row', 'finetuning/inputs.py',
     'X[at, 0], X[at, 1] = batch.ids, Vocab(n_vocab).position(t)',
     'X[at, 0], X[at, 1] = batch.ids, Vocab(n_vocab).position(at % L)',
     [PACKING, '-k', 'positions_restarting or references_outputs']),
    ('packed extract one token early', 'finetuning/inputs.py',
     'clf_at = begin + extract_positions(batch, Vocab(n_vocab).classify) - part * R * L',
     'clf_at = begin + extract_positions(batch, Vocab(n_vocab).classify) - part * R * L - 1',
     [PACKING, '-k', 'positions_restarting or references_outputs']),
    ('first fit in the given order', 'finetuning/inputs.py', "for j in np.argsort(-lengths, axis=1, kind='stable').T:",
     "for j in np.argsort(np.zeros_like(lengths), axis=1, kind='stable').T:", [PACKING, '-k', 'first_fit']),
    ('the plan one row short', 'finetuning/inputs.py', 'rows = first_fit(np.minimum(lengths, length), length)[0].max(1) + 1',
     'rows = np.maximum(first_fit(np.minimum(lengths, length), length)[0].max(1), 1)', [PACKING, '-k', 'plans_rows']),
    # --- packing: a run's several shapes (issue 34)
    ('every batch at the largest shape', 'finetuning/inputs.py',
     'for k, (R, L) in reversed(list(enumerate(packing.shapes))):',
     'for k, (R, L) in list(enumerate(packing.shapes))[-1:]:', [PACKING, '-k', 'cheapest_of_the_plans']),
    ('a batch at the dearest shape that holds it', 'finetuning/inputs.py',
     'for k, (R, L) in reversed(list(enumerate(packing.shapes))):', 'for k, (R, L) in enumerate(packing.shapes):',
     [PACKING, '-k', 'cheapest_of_the_plans']),
    ('a run of one shape', 'finetuning/inputs.py', 'n_shapes=N_SHAPES, per_batch=n_parts_per_batch)',
     'n_shapes=1, per_batch=n_parts_per_batch)', [PACKING, '-k', 'cheapest_of_the_plans']),
    ('a shape saving work on batches it does not hold', 'finetuning/inputs.py',
     'np.maximum(taken - cost((R, L)), 0.) * (need[L] <= R)', 'np.maximum(taken - cost((R, L)), 0.)',
     ['tests/test_blind_spots_stages.py', '-k', 'smaller_shapes']),
    ('the batches of a shape sized by their parts alone', 'finetuning/inputs.py',
     "    return rows.reshape(-1, per_batch).max(1)\n", "    return rows.reshape(-1, per_batch).min(1)\n",
     ['tests/test_blind_spots_stages.py', '-k', 'smaller_shapes']),
    ('the real share at the largest shape', 'finetuning/inputs.py',
     'real=tokens / float(np.sum(n_parts_per_batch * R * L))',
     'real=tokens / float(len(R) * n_parts_per_batch * packing.rows * packing.length)', [PACKING, '-k', 'plans_rows']),
    ('a sequence longer than the rows packed all the same', 'finetuning/inputs.py',
     '    rows[lengths.max(1) > length] = np.iinfo(np.int64).max\n', '',
     [PACKING, '-k', 'longer_than_a_shapes']),
    ('the epochs drawn ahead on the global generator', 'finetuning/inputs.py',
     'return [shuffle(np.arange(n_train), random_state=rng) for _ in range(n_epochs)]',
     'return [shuffle(np.arange(n_train), random_state=np.random.mtrand._rand) for _ in range(n_epochs)]',
     [PACKING, '-k', 'epoch_orders or packed_run']),
    ('packing chosen whatever its work', 'finetuning/inputs.py',
     'return packing, packed_work <= float(np.sum(work(per_batch.shape[1] * T, T, n_embd)))',
     'return packing, True', [PACKING, '-k', 'equal_lengths']),
    ('parts cut at the first array\'s size', 'opt.py', 'sizes = [tf.shape(x)[0] // n_parts for x in batch]',
     'sizes = [tf.shape(batch[0])[0] // n_parts for x in batch]', [PACKING, '-k', 'numpy_runs_on_one_device']),
    ('replicas cut at the first array\'s size', 'engine/loop.py',
     'return tuple(x[r * (int(x.shape[0]) // n_replicas):(r + 1) * (int(x.shape[0]) // n_replicas)]',
     'return tuple(x[r * (int(batch[0].shape[0]) // n_replicas):(r + 1) * (int(batch[0].shape[0]) // n_replicas)]',
     [PACKING, '-k', 'numpy_runs_on_one_device']),
    ('evaluation fillers counted in the cost', 'engine/loop.py', 'losses.append(clf_losses.numpy()[:k])',
     'losses.append(clf_losses.numpy())', [PACKING, '-k', 'evaluation_in_rows']),
    ('bench: packed rows executed at their sequences\' lengths', 'bench/bench_harness.py',
     "return f'{n_rows}x{L}', float(lengths.sum()), useful, 3 * forward_flops(np.zeros(n_rows), L, lm_rows, n_layer,",
     "return f'{n_rows}x{L}', float(lengths.sum()), useful, 3 * forward_flops(lengths, None, lm_rows, n_layer,",
     ['tests/test_bench.py', '-k', 'flops']),
    # --- the benchmarks
    ('bench: attention FLOPs halved', 'bench/bench_harness.py',
     'blocks = len(lengths) * T * (24 * n_layer * n_embd ** 2 + 4 * n_layer * T * n_embd)',
     'blocks = len(lengths) * T * (24 * n_layer * n_embd ** 2 + 2 * n_layer * T * n_embd)',
     ['tests/test_bench.py', '-k', 'flops']),
    ('bench: the LM head over padding counted as masked', 'bench/bench_harness.py',
     'lm_rows = M[:, 1:].sum() if masked else M.shape[0] * (T - 1)', 'lm_rows = M[:, 1:].sum()',
     ['tests/test_bench.py', '-k', 'flops']),
    ('bench: rounds in the same order', 'bench/bench_harness.py',
     'return names[r % len(names):] + names[:r % len(names)]', 'return names',
     ['tests/test_bench.py', '-k', 'interleaved']),
    ('bench: retraced jobs not timed again', 'bench/bench_harness.py',
     "(out[n]['traces'] or jobs[n].get('always_again'))", "jobs[n].get('always_again')",
     ['tests/test_bench.py', '-k', 'interleaved']),
    ('bench: the original fed trimmed batches', 'bench/bench_setup.py',
     'self.n_vocab, self.n_ctx, path, self.n_gpu)\n',
     'self.n_vocab, self.n_ctx, path._replace(multiple=path.multiple or 1), self.n_gpu)\n',
     ['tests/test_bench.py', '-k', 'original']),
    ('bench: the hand-over keeps its switch', 'bench/bench.py',
     '*[a for a in argv if a != asked[0]]', '*argv',
     ['tests/test_bench.py', '-k', 'hands or refuses']),
    # --- Hugging Face's layout and best_params.safetensors (issue 21; the tests need the real BPE files, which
    # real_files_env points the copies at)
    ('convert: Conv1D weights transposed in --to_hf', 'convert.py',
     "arrays[f'transformer.h.{l}.{HF_LAYER[k]}'] = a[0] if k.endswith('/w') else a",
     "arrays[f'transformer.h.{l}.{HF_LAYER[k]}'] = a[0].T if k.endswith('/w') else a",
     ['tests/test_convert.py', '-k', 'multiple_choice_best_params']),
    ('convert: special rows left out of tokens_embed', 'convert.py',
     'tokens, positions = we[:n_vocab + 3], we[n_vocab + 3:]', 'tokens, positions = we[:n_vocab], we[n_vocab + 3:]',
     ['tests/test_convert.py', '-k', 'multiple_choice_best_params']),
    ('convert: the classifier not transposed', 'convert.py', "'multiple_choice_head.summary.weight': clf_w.T,",
     "'multiple_choice_head.summary.weight': clf_w,", ['tests/test_convert.py', '-k', 'multiple_choice_best_params']),
    ('convert: summary dropout from resid_pdrop', 'convert.py', "summary_first_dropout=flags['clf_pdrop'])",
     "summary_first_dropout=flags['resid_pdrop'])", ['tests/test_convert.py', '-k', 'multiple_choice_best_params']),
    ('convert: the run log ignored', 'convert.py', "(getattr(args, k), logged.get(k), FLAGS[k].get('default'))",
     "(getattr(args, k), FLAGS[k].get('default'))", ['tests/test_convert.py', '-k', 'from_its_log']),
    ('convert: any vocabulary accepted', 'convert.py',
     'if any(hashlib.sha256(data).hexdigest() != ORIGINAL_BPE[name] for name, data in files.items()):', 'if False:',
     ['tests/test_convert.py', '-k', 'bad_input']),
    ('convert: --from_hf positions and tokens swapped', 'convert.py',
     "params = [arrays['positions_embed.weight'], arrays['tokens_embed.weight']]",
     "params = [arrays['tokens_embed.weight'], arrays['positions_embed.weight']]",
     ['tests/test_convert.py', '-k', 'original_layout']),
    ('convert: an untied lm_head accepted', 'convert.py',
     'if tokens.shape != head.shape or not np.array_equal(tokens, head):', 'if tokens.shape != head.shape:',
     ['tests/test_convert.py', '-k', 'bad_input']),
    ('convert: a half-written --out left behind', 'convert.py', '        shutil.rmtree(tmp, ignore_errors=True)',
     '        pass', ['tests/test_convert.py', '-k', 'while_writing']),
    ('safetensors: arrays in the order of their names', 'formats/weights.py', '    return [tensors[name] for name in names]',
     '    return [tensors[name] for name in sorted(names)]', ['tests/test_convert.py', '-k', 'safetensors']),
    ('safetensors: not written beside best_params.jl', 'formats/weights.py',
     "                    (safetensors_path(path), 'wb', lambda f: write_safetensors(f, arrays))])",
     "                    ])", ['tests/test_convert.py', '-k', 'safetensors']),
    ('safetensors: streamed in the order of the parameters', 'formats/weights.py', '    for name in sorted(data):\n        f.write(',
     '    for name in data:\n        f.write(', ['tests/test_convert.py', '-k', 'safetensors_package']),
    ('safetensors: header not padded to 8 bytes', 'formats/weights.py', "    text += b' ' * (-len(text) % 8)\n", '',
     ['tests/test_convert.py', '-k', 'safetensors_package']),
    ('safetensors: --restore reads the .jl beside it', 'formats/weights.py',
     "load_safetensors_params(path) if path.endswith('.safetensors') else load_joblib_params(path)",
     "load_joblib_params(path[:-len('safetensors')] + 'jl' if path.endswith('.safetensors') else path)",
     ['tests/test_convert.py', '-k', 'refuses_other_files']),
    # --- a newcomer's second day (issue 22): the rerun guard, --resume's line, the hints, --help, download.py
    ('the rerun guard lets a run replace outputs', 'engine/run_state.py', "    if flags['overwrite'] or not found:",
     '    if True:', ['tests/test_rerun.py', '-k', 'rerun_over']),
    ('the rerun guard overlooks the save folder', 'engine/run_state.py',
     ' + [save_folder] * save', '', ['tests/test_rerun.py', '-k', 'rerun_over']),
    ('the submission files are not guarded', 'train.py',
     "elsewhere=[('--submission_dir', path) for path in submission_files(args, task)])", 'elsewhere=[])',
     ['tests/test_rerun.py', '-k', 'another_desc']),
    ('--overwrite keeps the previous outputs', 'engine/loop.py', '    remove_outputs(replace)', '    pass',
     ['tests/test_rerun.py', '-k', 'overwrite_replaces']),
    ('--resume and --overwrite together', 'engine/flags.py', '    if args.resume and args.overwrite:', '    if False:',
     ['tests/test_rerun.py', '-k', 'together']),
    ('best_params.jl written at the start', 'train.py', 'before_writing=data.write_cache,\n                         replace=replaced)\n',
     'before_writing=data.write_cache,\n                         replace=replaced)\n    if args.submit and not args.resume:\n'
     '        save_best_params(model.params, params_path)', ['tests/test_rerun.py', '-k', 'interrupted']),
    ('--resume says nothing of where', 'engine/loop.py', "resumed from update {state.n_updates}", "resumed",
     ['tests/test_rerun.py', '-k', 'interrupted']),
    ('the plot hint names a bare analysis.py', 'train.py', "shlex.join([command_path('analysis.py'),",
     "shlex.join(['analysis.py',", ['tests/test_rerun.py', '-k', 'interrupted']),
    ('missing data found after the start-up', 'train.py', '    check_inputs(args)\n', '',
     ['tests/test_newcomer.py', '-k', 'missing_input']),
    ('analysis --help imports numpy', 'analysis.py', 'from utils import InputError, exit_on_input_error',
     'import numpy\nfrom utils import InputError, exit_on_input_error',
     ['tests/test_newcomer.py', '-k', 'every_program']),
    ('download tries every file of an unreachable server', 'download.py',
     'except Unreachable as err:  # the other files', 'except ZeroDivisionError as err:  # the other files',
     ['tests/test_download.py', '-k', 'unreachable']),
    ('download offers to resume without a .part', 'download.py', "the same command{' to resume' * resume}",
     'the same command to resume', ['tests/test_download.py', '-k', 'one_line']),
    # --- the paper's analysis: zero-shot rules, ablation flags, tables
    ('zero-shot SST-2 without very', 'paper/heuristics.py', 'return [list(s[:n_ctx - 1]) + [very] for s in sentences]',
     'return [list(s[:n_ctx - 1]) for s in sentences]', [ZERO_SHOT, '-k', 'sst2 or rules']),
    ('zero-shot SST-2 negative for positive', 'paper/heuristics.py', 'return (logits[:, 0] > logits[:, 1]).astype(np.int32)',
     'return (logits[:, 1] > logits[:, 0]).astype(np.int32)', [ZERO_SHOT, '-k', 'sst2']),
    ('zero-shot score summed, not averaged', 'paper/heuristics.py',
     'return (sums / np.maximum(counts, 1)).reshape(len(examples), k)', 'return sums.reshape(len(examples), k)',
     [ZERO_SHOT, '-k', 'packed']),
    ('zero-shot softmax over every row of we', 'paper/heuristics.py',
     'logp = lm_logprobs(model, X, at, n_vocab, *one_unit(seg))', 'logp = lm_logprobs(model, X, at, None, *one_unit(seg))',
     [ZERO_SHOT, '-k', 'packed']),
    ('zero-shot positions from 1', 'paper/heuristics.py',
     'X[b, :n, 0], X[b, :n, 1], seg[b, :n] = context, vocab.position(np.arange(n)), 0',
     'X[b, :n, 0], X[b, :n, 1], seg[b, :n] = context, vocab.position(1 + np.arange(n)), 0',
     [ZERO_SHOT, '-k', 'packed']),
    ('CoLA threshold: the largest score on ties', 'paper/heuristics.py',
     'best = max(range(len(keys)), key=lambda i: (keys[i], -i))',
     'best = max(range(len(keys)), key=lambda i: (keys[i], i))', [ZERO_SHOT, '-k', 'cola_threshold']),
    ('CoLA acceptable at the threshold too', 'paper/heuristics.py', "above = np.searchsorted(s, candidates, side='right')",
     "above = np.searchsorted(s, candidates, side='left')", [ZERO_SHOT, '-k', 'cola_threshold']),
    ('RACE cut at the article\'s start', 'paper/heuristics.py', 'kept.insert(0, list(field[:max(left, 0)]))',
     'kept.insert(0, list(field[len(field) - max(left, 0):]))', [ZERO_SHOT, '-k', 'race']),
    ('zero-shot ties to the last choice', 'paper/heuristics.py', 'return np.argmax(scores, 1).astype(np.int32)',
     'return (scores.shape[1] - 1 - np.argmax(scores[:, ::-1], 1)).astype(np.int32)', [ZERO_SHOT, '-k', 'likelier']),
    ('DPRD scores the whole sequence', 'paper/heuristics.py',
     'return [(list(p[:n_ctx]), [list(after[:max(0, n_ctx - len(p))])]) for p in prefixes]',
     'return [([], [list(p[:n_ctx]) + list(after[:max(0, n_ctx - len(p))])]) for p in prefixes]',
     [ZERO_SHOT, '-k', 'dprd or rules']),
    ('DPRD replaces the last occurrence', 'datasets.py',
     "found = re.search(r'(?<!\\w)' + re.escape(pronoun) + r'(?!\\w)', sentence, flags)",
     "found = ([*re.finditer(r'(?<!\\w)' + re.escape(pronoun) + r'(?!\\w)', sentence, flags)] or [None])[-1]",
     [ZERO_SHOT, '-k', 'pronoun']),
    ('--lm_coef 0 keeps the LM term', 'model.py', '    return tf.reduce_mean(clf_losses)\n',
     '    return tf.reduce_mean(clf_losses) + 0.5 * tf.reduce_mean(lm_losses)\n',
     ['tests/test_ablations.py', '-k', 'lm_coef']),
    ('--n_transfer -1 reads the weights', 'train.py', '    if args.n_transfer == -1:\n',
     '    if args.n_transfer == -2:\n', ['tests/test_ablations.py', '-k', 'minus_1']),
    ('--n_transfer 0 loads nothing', 'formats/weights.py', '    if n_transfer == -1:\n        return []',
     '    if n_transfer <= 0:\n        return []', ['tests/test_ablations.py', '-k', 'first_blocks']),
    ('Table 5 averages the columns it has', 'paper/tables.py', 'mean = None if None in figures else float(np.mean(figures))',
     'mean = float(np.mean([f for f in figures if f is not None])) if any(f is not None for f in figures) else None',
     ['tests/test_analysis.py', '-k', 'table_5']),
    ('--table counts a partial transfer as full', 'paper/tables.py', "full_transfer = n_transfer == flags.get('n_layer', 12)",
     'full_transfer = n_transfer >= 0', ['tests/test_analysis.py', '-k', 'beside_the_papers']),
    # --- pre-training (pretrain.py, corpus.py, windows.py, model.lm_cost)
    ('pre-training softmax over every row of we', 'model.py',
     'rows = we if n_rows is None else tf.split(we, [n_rows, we.shape[0] - n_rows])[0]', 'rows = we',
     [PRETRAIN, '-k', 'one_update']),
    ('fused cross-entropy gradient', 'engine/kernels.py', "return (tf.nn.softmax(logits) - tf.one_hot(labels, tf.shape(logits)[-1])) * dy[:, None]",
     "return tf.nn.softmax(logits) * dy[:, None]", [PRETRAIN, '-k', 'one_update']),
    ('pre-training loss averaged per window', 'pretraining/windows.py', 'return (M * (len(M) / max(M.sum(), 1))).astype(np.float32)',
     'return (M / np.maximum(M.sum(1, keepdims=True), 1)).astype(np.float32)', [PRETRAIN, '-k', 'one_update']),
    ('pre-training warmup given as a fraction', 'pretrain.py', 'warmup = args.warmup_updates / n_updates',
     'warmup = args.warmup_updates / n_updates / 2', [PRETRAIN, '-k', 'one_update']),
    ('pre-training schedule ignores --max_updates', 'pretrain.py',
     '\n    n_updates = min(sum(per_epoch), args.max_updates) if args.max_updates else sum(per_epoch)\n',
     '\n    n_updates = sum(per_epoch)\n', [PRETRAIN, '-k', 'max_updates_ends']),
    ('tr_cost not reset after a line', 'pretraining/lm_log.py', '            self.tr_sum, self.tr_count = 0., 0.', '            pass',
     [PRETRAIN, '-k', 'max_updates_ends']),
    ('epochs always cut at 0', 'pretraining/windows.py', 'o = int(rng.integers(self.n_ctx))  # offset() draws the same number first',
     'o = 0 * int(rng.integers(self.n_ctx))', [CORPUS, '-k', 'every_training_token_once']),
    ('every epoch in the order of the first', 'pretraining/windows.py', 'return np.random.default_rng([self.seed, epoch])',
     'return np.random.default_rng([self.seed, 0])', [CORPUS, '-k', 'every_training_token_once']),
    ('held-out windows without their shared token', 'pretraining/windows.py',
     'starts = np.arange(n_windows, dtype=np.int64) * (n_ctx - 1)', 'starts = np.arange(n_windows, dtype=np.int64) * n_ctx',
     [CORPUS, '-k', 'held_out_windows']),
    ('documents joined without a paragraph break', 'pretraining/corpus.py',
     'for part in (ids, np.array([self.separator], np.uint16)):', 'for part in (ids,):',
     [CORPUS, '-k', 'paragraph_break']),
    ('held-out documents trained on too', 'pretraining/corpus.py',
     "writers['valid' if held_out(text, seed, valid_fraction) else 'train'].add(ids)",
     "writers['train'].add(ids) if not held_out(text, seed, valid_fraction) else (writers['valid'].add(ids), "
     "writers['train'].add(ids))", [CORPUS, '-k', 'never_reach_training']),
    ('corpus cache not keyed by the seed', 'pretraining/corpus.py', "{spacy.__version__} {seed} {valid_fraction!r}'",
     "{spacy.__version__} {valid_fraction!r}'", [CORPUS, '-k', 'follows_the_corpus']),
    ('a damaged shard read as it is', 'pretraining/corpus.py', '                if file_hash(path) != digest:',
     '                if False:', [CORPUS, '-k', 'damaged']),
    ('the held-out loss with dropout', 'engine/loop.py', 'return lm_cost(model, X, M, n_rows, path=path), tf.reduce_sum(M[:, 1:])',
     'return lm_cost(model, X, M, n_rows, train=True, path=path), tf.reduce_sum(M[:, 1:])',
     [PRETRAIN, '-k', 'va_cost_is_the_numpy']),
    ('the model folder with tokens before positions', 'formats/weights.py', '[we[n_vocab:], we[:n_vocab]]',
     '[we[:n_vocab], we[n_vocab:]]', [PRETRAIN, '-k', 'originals_layout']),
    ('a resumed epoch from its start', 'pretrain.py', 'for starts, lengths in plan.batches(epoch, done):',
     'for starts, lengths in plan.batches(epoch):', [PRETRAIN, '-k', 'ctrl_c']),
    ('the counts not in the checkpoints', 'pretrain.py', 'saved = dict(model=model, opt=adam, progress=progress, ',
     'saved = dict(model=model, opt=adam, ', [PRETRAIN, '-k', 'ctrl_c']),
    # --- the layout (issue 24)
    ('a program imports another program', 'generate.py', 'from engine.flags import add_flags, bpe_paths\n',
     'from engine.flags import add_flags, bpe_paths\nimport download  # noqa: F401\n',
     ['tests/test_layout.py', '-k', 'no_program_imports']),
    ('pretrain: a rerun replaces the previous outputs', 'pretrain.py',
     'replaced = check_outputs(vars(own), own_log, save=True)', 'replaced = []', [PRETRAIN, '-k', 'rerun']),
    # --- the redesign (issue 28): one forward, its segments, the switch, the loop in view
    ('segment mask: units and parts counted from 0', 'model.py',
     'unit, part = (seg - 1) // n_parts, (seg - 1) % n_parts', 'unit, part = seg // n_parts, seg % n_parts',
     [REDESIGN, '-k', 'segment_mask']),
    ('rows_of: clf_at without its row', 'model.py', 'clf_at = tf.reshape(tf.range(tf.shape(X)[0]) * T + first, [-1, n_seq])',
     'clf_at = tf.reshape(first, [-1, n_seq])', [REDESIGN, '-k', 'rows_of']),
    ('packed LM: the sequence index off by one', 'model.py', 'seq = tf.maximum(seg[:, 1:] - 1, 0)',
     'seq = tf.maximum(seg[:, 1:], 0)', [REDESIGN, '-k', 'packed_lm_losses']),
    ('the switch: fused ignored', 'engine/kernels.py', '    if not use_kernels:\n', '    if True:\n',
     [REDESIGN, '-k', 'switch']),
    ('without_xla leaves the compiled steps on', 'engine/kernels.py',
     'return path._replace(fused=False, jit_compile=False)', 'return path._replace(fused=False)',
     [REDESIGN, '-k', 'without_xla']),
    ('the bar and TensorBoard: lr the step size lrt', 'engine/loop.py', 'lr = float(self.opt.scheduled_lr())',
     'lr = float(lrt)', [REDESIGN, '-k', 'bar_and_tensorboard']),
    ('TensorBoard: train/lr the step size lrt', 'engine/loop.py', "tf.summary.scalar('train/lr', lr)",
     "tf.summary.scalar('train/lr', lrt)", [REDESIGN, '-k', 'bar_and_tensorboard']),
    ('Adam.scheduled_lr one update ahead', 'opt.py', 'return self.lr * self.schedule(self.t / self.t_total)',
     'return self.lr * self.schedule((self.t + 1) / self.t_total)', [REDESIGN, '-k', 'adam_scheduled_lr']),
    ('a signal stops without a checkpoint', 'engine/run_state.py', '    if save or signum:\n        save_checkpoint(',
     '    if save:\n        save_checkpoint(', [REDESIGN, '-k', 'signal_saves']),
    ("a signal stops without the program's files", 'engine/loop.py',
     'if on_save and (save or self.control.signum):', 'if on_save and save:', [REDESIGN, '-k', 'signal_saves']),
    ("replicas all given replica 0's rows", 'engine/loop.py',
     'r, n_replicas = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync', 'r, n_replicas = 0, ctx.num_replicas_in_sync',
     ['tests/test_train.py', '-k', 'two_replicas']),
    ('evaluation fillers kept in the logits', 'engine/loop.py', 'logits.append(clf_logits.numpy()[:k])',
     'logits.append(clf_logits.numpy())', [PACKING, '-k', 'evaluation_in_rows']),
    ('train_batch ignores the packing', 'finetuning/inputs.py', '    if packing is not None:\n        return packed_train_batch(',
     '    if False:\n        return packed_train_batch(', [REDESIGN, '-k', 'train_batch']),
    ('eval_batches count the fillers', 'finetuning/inputs.py',
     'yield len(rows), eval_batch(task, split, rows, n_vocab, n_batch, packing)',
     'yield n_batch, eval_batch(task, split, rows, n_vocab, n_batch, packing)', [REDESIGN, '-k', 'eval_batches']),
    ('a lone part seeded by the update alone', 'opt.py', 'return part_grads(batch, part_seed(0))',
     'return part_grads(batch, update_seed)', [REDESIGN, '-k', 'lone_tower']),
    ("epoch_rng saved before the epoch's batches", 'train.py',
     'order = shuffle(np.arange(n_train), random_state=np.random.mtrand._rand)\n',
     'order = shuffle(np.arange(n_train), random_state=np.random.mtrand._rand)\n'
     '                run.state.epoch_rng = np.random.get_state()\n', ['tests/test_run_features.py', '-k', 'resumed']),
    ('evaluations at EVAL_UPDATES in every epoch', 'train.py',
     'if run.state.n_updates in EVAL_UPDATES and epoch == 0:', 'if run.state.n_updates in EVAL_UPDATES:',
     [REDESIGN, '-k', 'first_epoch_alone']),
    ('a resumed epoch skips updates, not examples', 'train.py', 'order[done * n_batch_train:]', 'order[done:]',
     ['tests/test_run_features.py', '-k', 'resumed']),
    ('pretrain: --max_updates does not stop the epoch', 'pretrain.py', '                if n == args.max_updates:',
     '                if False:', [PRETRAIN, '-k', 'max_updates_ends']),
    ('a library imports a program', 'engine/loop.py', 'from utils import InputError, ResultLogger\n',
     'from utils import InputError, ResultLogger\nimport train  # noqa: F401\n',
     ['tests/test_layout.py', '-k', 'no_program_imports']),
    ('an import circle: utils imports model', 'utils.py', 'def round_up(n, multiple):\n',
     'def round_up(n, multiple):\n    import model  # noqa: F401\n', ['tests/test_layout.py', '-k', 'circle']),
    ("the data set's cache key without the task's module", 'text_utils.py',
     'code = [__file__, datasets.__file__, sys.modules[type(task).__module__].__file__]',
     'code = [__file__, datasets.__file__]', [REDESIGN, '-k', 'cache_of_an_encoded']),
    # --- issue 32: the tests' blind spots
    ('generate positions shifted by one', 'generate.py',
     'return Vocab(model.cfg.n_vocab).position(np.arange(T, dtype=np.int32))',
     'return Vocab(model.cfg.n_vocab).position(1 + np.arange(T, dtype=np.int32))', ['tests/test_blind_spots_generate.py']),
    ('generate reads the distribution one token early', 'generate.py', 'tf.fill([B], T - 1)',
     'tf.fill([B], tf.maximum(T - 2, 0))', ['tests/test_blind_spots_generate.py']),
    ('generate without _start_', 'generate.py', 'tokens = [Vocab(n_vocab).start] + text_encoder.encode(',
     'tokens = [] + text_encoder.encode(', ['tests/test_blind_spots_generate.py', '-k', 'command']),
    ('corpus cache not keyed by the held-out share', 'pretraining/corpus.py', "{spacy.__version__} {seed} {valid_fraction!r}'",
     "{spacy.__version__} {seed}'", ['tests/test_blind_spots_corpus.py', '-k', 'one_input']),
    ('corpus cache not keyed by the merges', 'pretraining/corpus.py',
     'for path in [encoder_path, bpe_path, text_utils.__file__, __file__]:',
     'for path in [encoder_path, text_utils.__file__, __file__]:', ['tests/test_blind_spots_corpus.py', '-k', 'one_input']),
    ('corpus cache not keyed by the vocabulary', 'pretraining/corpus.py',
     'for path in [encoder_path, bpe_path, text_utils.__file__, __file__]:',
     'for path in [bpe_path, text_utils.__file__, __file__]:', ['tests/test_blind_spots_corpus.py', '-k', 'one_input']),
    ('corpus cache not keyed by the code', 'pretraining/corpus.py',
     'for path in [encoder_path, bpe_path, text_utils.__file__, __file__]:', 'for path in [encoder_path, bpe_path]:',
     ['tests/test_blind_spots_corpus.py', '-k', 'one_input']),
    ('corpus hash remembered by the size alone', 'pretraining/corpus.py', 'memo[key][:2] == seen', 'memo[key][:1] == seen[:1]',
     ['tests/test_blind_spots_corpus.py', '-k', 'one_input']),
    ('corpus hash remembered by the file name', 'pretraining/corpus.py', 'key, seen = os.path.realpath(source.path), ',
     'key, seen = os.path.basename(source.path), ', ['tests/test_blind_spots_corpus.py', '-k', 'elsewhere']),
    ('corpus uint16 bound refuses 65536 pieces', 'pretraining/corpus.py', 'if len(encoder) > 2 ** 16:',
     'if len(encoder) >= 2 ** 16:', ['tests/test_blind_spots_corpus.py', '-k', '65536']),
    ('corpus uint16 bound stores 65537 pieces', 'pretraining/corpus.py', 'if len(encoder) > 2 ** 16:',
     'if len(encoder) > 2 ** 16 + 1:', ['tests/test_blind_spots_corpus.py', '-k', '65536']),
    ('corpus held-out hash read big-endian', 'pretraining/corpus.py', "return int.from_bytes(digest, 'little')",
     "return int.from_bytes(digest, 'big')", ['tests/test_blind_spots_corpus.py', '-k', 'blake2b']),
    ('epoch generator seeded with seed + epoch', 'pretraining/windows.py', 'return np.random.default_rng([self.seed, epoch])',
     'return np.random.default_rng(self.seed + epoch)', ['tests/test_blind_spots_corpus.py', '-k', 'permutations_order']),
    ('zero-shot SST-2 with _start_ first', 'zeroshot.py', "examples=heuristics.sst2(fields[0], ids['very'], n_ctx)",
     "examples=heuristics.sst2([[len(text_encoder.encoder)] + s for s in fields[0]], ids['very'], n_ctx)",
     [ZERO_SHOT, '-k', 'exactly_the_specs']),
    ('zero-shot CoLA with _start_ first', 'zeroshot.py', 'examples=heuristics.cola(fields[0], n_ctx)',
     'examples=heuristics.cola([[len(text_encoder.encoder)] + s for s in fields[0]], n_ctx)',
     [ZERO_SHOT, '-k', 'exactly_the_specs']),
    ('zero-shot RACE with _start_ first', 'zeroshot.py', 'heuristics.fit_context(row[:n_context], ',
     "heuristics.fit_context([[len(text_encoder.encoder)] * (task == 'race')] + list(row[:n_context]), ",
     [ZERO_SHOT, '-k', 'exactly_the_specs']),
    ('zero-shot Story Cloze with _start_ first', 'zeroshot.py', 'heuristics.fit_context(row[:n_context], ',
     "heuristics.fit_context([[len(text_encoder.encoder)] * (task == 'rocstories')] + list(row[:n_context]), ",
     [ZERO_SHOT, '-k', 'exactly_the_specs']),
    ('zero-shot DPRD with _start_ first', 'zeroshot.py', 'heuristics.dprd([prefix1[i], prefix2[i]], ',
     'heuristics.dprd([[len(text_encoder.encoder)] + prefix1[i], [len(text_encoder.encoder)] + prefix2[i]], ',
     [ZERO_SHOT, '-k', 'exactly_the_specs']),
    ('tr_cost a plain mean of the updates', 'pretraining/lm_log.py', 'self.tr_sum + cost * n_predicted, self.tr_count + n_predicted',
     'self.tr_sum + cost, self.tr_count + 1', [PRETRAIN, '-k', 'predicted_token']),
    ('tr_cost weighted by the windows', 'pretrain.py', 'progress.add(int(lengths.sum()), float(M.sum()), float(cost))',
     'progress.add(int(lengths.sum()), float(len(lengths)), float(cost))', [PRETRAIN, '-k', 'predicted_token']),
    ('tr_cost weighted by the tokens read', 'pretrain.py', 'progress.add(int(lengths.sum()), float(M.sum()), float(cost))',
     'progress.add(int(lengths.sum()), float(lengths.sum()), float(cost))', [PRETRAIN, '-k', 'predicted_token']),
    ('va_cost a mean of the batches', 'pretrain.py', 'total, count = total + float(t), count + float(c)',
     'total, count = total + float(t) / float(c), count + 1', [PRETRAIN, '-k', 'predicted_token']),
    ("packing work without the attention's element-wise cost", 'finetuning/inputs.py',
     'return positions * (6 * n_embd + 4 * length)', 'return positions * (6 * n_embd + length)',
     ['tests/test_blind_spots_stages.py', '-k', 'packing']),
    ('Figure 2 RACE state of the art the ensemble', 'paper/results.py', "'race': 59.0", "'race': 53.3",
     ['tests/test_blind_spots_stages.py', '-k', 'figure_2']),
    ('zero-shot CoLA cut to n_ctx + 1', 'paper/heuristics.py', 'return [(list(s[:1]), [list(s[1:n_ctx])]) for s in sentences]',
     'return [(list(s[:1]), [list(s[1:n_ctx + 1])]) for s in sentences]', ['tests/test_blind_spots_stages.py', '-k', 'cola']),
    # --- issue 31: a newcomer's third day
    ('day3: --table stops at a log that is no run', 'paper/tables.py',
     '            left_out.append(f"{path}: left out: {why_not_a_run(path, err)}")\n            continue',
     '            raise', ['tests/test_newcomer_third_day.py', '-k', 'table_leaves_out']),
    ('day3: --table of no usable log prints empty tables', 'paper/tables.py',
     '    if left_out and not chosen and not others:', '    if False:',
     ['tests/test_newcomer_third_day.py', '-k', 'no_usable_log']),
    ('day3: the guard offers --resume for another run', 'engine/run_state.py', '        if changed == []:', '        if True:',
     ['tests/test_newcomer_third_day.py', '-k', 'guard_says']),
    ('day3: the guard compares the flags that change no number', 'engine/run_state.py',
     'if k in flags and k not in RESUMABLE_CHANGES and flags[k] != v]', 'if k in flags and flags[k] != v]',
     ['tests/test_newcomer_third_day.py', '-k', 'guard_offers']),
    ('day3: Ctrl-C says nothing until the update ends', 'engine/run_state.py',
     '            if self.armed:\n                self.tell(signum)', '            pass',
     ['tests/test_newcomer_third_day.py', '-k', 'ctrl_c_says']),
    ('day3: a second Ctrl-C waits for the C call to return', 'engine/run_state.py', '            if self.n_signals >= 2:',
     '            if self.n_signals >= 3:', ['tests/test_newcomer_third_day.py', '-k', 'ctrl_c_says']),
    ("day3: Ctrl-C's line without the pace", 'engine/run_state.py', "        when = '' if pace is None else",
     "        when = '' if True else", ['tests/test_newcomer_third_day.py', '-k', 'ctrl_c_says']),
    ('day3: the resume line is never printed', 'engine/run_state.py', '            f.close()\n        self.print_resume()',
     '            f.close()', ['tests/test_newcomer_third_day.py', '-k', 'resume_line_comes_last']),
    ("day3: a --base_url folder without the file: 're-run'", 'download.py',
     '        elif folder is not None and not os.path.isfile(os.path.join(folder, name)):', '        elif False:',
     ['tests/test_newcomer_third_day.py', '-k', 'lacks_them']),
    ('day3: a --base_url folder that does not exist', 'download.py',
     '    if folder is not None and not os.path.isdir(folder):', '    if False:',
     ['tests/test_newcomer_third_day.py', '-k', 'does_not_exist_is_one']),
    ('day3: --random_weights over weights', 'download.py', '    if present:\n        what =',
     '    if False:\n        what =', ['tests/test_newcomer_third_day.py', '-k', 'never_write_over']),
    ('day3: --random_weights without the note', 'download.py',
     "    with open(os.path.join(model_dir, RANDOM_NOTE), 'w') as f:", "    with open(os.devnull, 'w') as f:",
     ['tests/test_newcomer_third_day.py', '-k', 'originals_layout_and_labelled']),
    ('day3: a missing --model_dir offers the BPE files alone', 'engine/flags.py',
     '            with_weights = args.n_transfer != -1 and', '            with_weights = False and',
     ['tests/test_newcomer_third_day.py', '-k', 'missing_model_dir']),
    ("day3: a bad copy in a --base_url folder: 're-run'", 'download.py', "if url.startswith('file:') else",
     'if False else', ['tests/test_newcomer_third_day.py', '-k', 'bad_copy']),
    # --- issue 30: the SavedModel
    ('savedmodel: positions counted from 1', 'formats/savedmodel.py', 'first + tf.range(T)', 'first + 1 + tf.range(T)',
     [SAVEDMODEL, '-k', 'loaded_without']),
    ('savedmodel: the extract token at the delimiter', 'formats/savedmodel.py',
     'rows_of((X, tf.zeros(tf.shape(input_ids)), None), clf)', 'rows_of((X, tf.zeros(tf.shape(input_ids)), None), clf - 1)',
     [SAVEDMODEL, '-k', 'loaded_without']),
    ("savedmodel: STS-B's score squashed", 'formats/savedmodel.py', "return {'score': logits[:, 0]}",
     "return {'score': tf.nn.sigmoid(logits[:, 0])}", [SAVEDMODEL, '-k', 'loaded_without']),
    ('savedmodel: last_log_probs at the last column', 'formats/savedmodel.py',
     'tf.gather(log_probs, lengths - 1, batch_dims=1)', 'log_probs[:, -1]', [SAVEDMODEL, '-k', 'loaded_without']),
    ('savedmodel: the LM over every row of we', 'formats/savedmodel.py', 'n_rows=model.cfg.n_vocab)', 'n_rows=None)',
     [SAVEDMODEL, '-k', 'loaded_without']),
    ('savedmodel: a sequence without _classify_ served', 'formats/savedmodel.py',
     'tf.debugging.assert_equal(has_clf, True,', 'tf.debugging.assert_equal(True, True,',
     [SAVEDMODEL, '-k', 'request_without']),
    ("to_savedmodel: the head's size against --dataset unchecked", 'convert.py',
     '        if params[-2].shape != (n_embd, n_out):', '        if False:', [SAVEDMODEL, '-k', 'bad_input']),
    ("to_savedmodel: TensorFlow's write errors not caught", 'convert.py', 'except tf.errors.OpError as err:',
     'except tf.errors.NotFoundError as err:', [SAVEDMODEL, '-k', 'bad_input']),
    ('to_savedmodel: --example of a model folder without the BPE files', 'convert.py',
     'if args.to_savedmodel and os.path.isdir(source) and not args.example:',
     'if args.to_savedmodel and os.path.isdir(source):', [SAVEDMODEL, '-k', 'bad_input']),
    ("to_savedmodel: the LM's example not cut to n_ctx", 'convert.py', 'rows = [ids[:n_ctx] for ids in',
     'rows = [ids for ids in', [SAVEDMODEL, '-k', 'examples']),
    # --- issue 29: GPUs
    ('gpus: TF32 on in an fp32 run', 'engine/devices.py',
     "tf.config.experimental.enable_tensor_float_32_execution(precision == 'tf32')",
     "tf.config.experimental.enable_tensor_float_32_execution(precision in ('tf32', 'fp32'))",
     ['tests/test_gpu_wiring.py', '-k', 'tf32']),
    ('gpus: the XLA fallback not taken', 'train.py', '    return strategy, path if plan.xla else without_xla(path)',
     '    return strategy, path', ['tests/test_gpu_wiring.py', '-k', 'fallback']),
    ('gpus: the fallback keeps the fused kernels', 'engine/kernels.py',
     '    return path._replace(fused=False, jit_compile=False)', '    return path._replace(jit_compile=False)',
     ['tests/test_gpu_wiring.py', '-k', 'fallback']),
    ('gpus: a dry run writes the data cache', 'train.py', "    print('dry run: ' + guard_says(vars(args), log_path,",
     "    data.write_cache()\n    print('dry run: ' + guard_says(vars(args), log_path,",
     ['tests/test_gpu_wiring.py', '-k', 'dry_run_writes_nothing']),
    ('gpus: a dry run refused beside a previous run', 'engine/run_state.py',
     "        return f'nothing trained or written; the run would stop: {err}'", '        raise',
     ['tests/test_gpu_wiring.py', '-k', 'dry_run_writes_nothing']),
    ('gpus: pretrain.py --dry_run trains', 'pretrain.py', '    if args.dry_run:\n        exit_on_input_error(dry_run',
     '    if False:\n        exit_on_input_error(dry_run', ['tests/test_gpu_wiring.py', '-k', 'pretrain_dry_run']),
    ('gpus: a bad --device_memory a traceback', 'engine/flags.py',
     "        return parse_size(args.device_memory)\n    except ValueError as err:",
     "        return parse_size(args.device_memory)\n    except KeyError as err:",
     ['tests/test_gpu_wiring.py', '-k', 'bad_device_memory']),
    # --- issue 31 in the training programs, and the docs' commands
    ('third day: the n_ctx line silent', 'train.py', '    if n_ctx < args.n_ctx:\n        print(f\'n_ctx {n_ctx}:',
     '    if False:\n        print(f\'n_ctx {n_ctx}:', ['tests/test_third_day_programs.py', '-k', 'n_ctx']),
    ('third day: best_params.safetensors not listed', 'train.py',
     "('best parameters (safetensors)', safetensors_path(params_path))", "('best parameters (safetensors)', params_path)",
     ['tests/test_third_day_programs.py', '-k', 'n_ctx']),
    ('third day: pretrain.py lists checkpoints it never made', 'pretrain.py',
     "    if args.save_every:  # (a signal's checkpoint", "    if True:  # (a signal's checkpoint",
     ['tests/test_third_day_programs.py', '-k', 'checkpoints']),
    ('third day: the corpus checked only after TensorFlow', 'pretrain.py', '    find_sources(args.corpus)\n', '',
     ['tests/test_third_day_programs.py', '-k', 'binary']),
    ("docs: the pre-training example's train.py without its --desc", 'docs/pretraining.md',
     '--desc books_small-rocstories ', '', ['tests/test_docs_commands.py']),
]


def project_files():
    """The project's files as git sees them (tracked, and untracked but not ignored)."""
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [path for path in out.splitlines() if os.path.isfile(os.path.join(ROOT, path))]


def copy_project(dst):
    for path in project_files():
        os.makedirs(os.path.dirname(os.path.join(dst, path)) or dst, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), os.path.join(dst, path))


def real_files_env():
    """The environment of the copies' test runs: GPT1_DATA_DIR and GPT1_MODEL_DIR set to where this project finds
    the real files (a copy has no ../shared beside it), so that the tests that need them run rather than skip."""
    sys.path.insert(0, ROOT)
    from formats.sample_files import real_path
    env = dict(os.environ)
    for kind in ('data', 'model'):
        if f'GPT1_{kind.upper()}_DIR' not in env and real_path(kind):
            env[f'GPT1_{kind.upper()}_DIR'] = os.path.abspath(real_path(kind))
    return env


def run_tests(where, tests, timeout):
    """(status, how): status 0 when the selected tests pass in `where`, else pytest's (124 on a timeout); how, the
    first failure as pytest's summary names it (test and exception)."""
    try:
        done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider', '-rfE'] + tests,
                              cwd=where, capture_output=True, text=True, timeout=timeout, env=real_files_env())
    except subprocess.TimeoutExpired:
        return 124, 'timeout'
    failures = [line for line in done.stdout.splitlines() if line.startswith(('FAILED ', 'ERROR '))]
    if not failures:
        return done.returncode, ''
    test = failures[0].split('::', 1)[-1].split(' - ')[0]
    errors = [line[1:].strip() for line in done.stdout.splitlines() if line.startswith('E ') and line[1:].strip()]
    return done.returncode, f"{test} ({errors[0].split(':')[0][:40] if errors else '?'})"


def baseline_runs(selections):
    """The test runs that try every selection unmutated, fewer than the selections: the selections of one test file
    (or of one set of files) joined into one run, their -k expressions or'ed (no -k: the whole file)."""
    by_files = {}
    for tests in selections:
        files = tuple(t for i, t in enumerate(tests) if t != '-k' and (i == 0 or tests[i - 1] != '-k'))
        k = tests[tests.index('-k') + 1] if '-k' in tests else None
        by_files.setdefault(files, []).append(k)
    runs = []
    for files, ks in sorted(by_files.items()):
        runs.append(list(files) if None in ks else list(files) + ['-k', ' or '.join(f'({k})' for k in sorted(set(ks)))])
    return [tuple(r) for r in runs]


def try_mutation(mutation, timeout):
    """'caught', 'survived', 'not applicable' or 'ambiguous' for one mutation, the seconds it took, and the test
    failure that caught it."""
    name, path, original, replacement, tests = mutation
    start = time.time()
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        text = f.read()
    count = text.count(original)
    if count != 1:
        return ('not applicable' if count == 0 else 'ambiguous'), 0., ''
    with tempfile.TemporaryDirectory(prefix='mutation-') as tmp:
        copy_project(tmp)
        with open(os.path.join(tmp, path), 'w', encoding='utf-8') as f:
            f.write(text.replace(original, replacement))
        status, how = run_tests(tmp, tests, timeout)
    return ('survived' if status == 0 else 'caught'), time.time() - start, how


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-k', default='', help='only the mutations whose name contains this text')
    parser.add_argument('-j', type=int, default=1, help='mutations tried at a time')
    parser.add_argument('--timeout', type=int, default=900, help='seconds allowed to one test run')
    parser.add_argument('--no_baseline', action='store_true', help='skip running the selections unmutated first')
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if args.k in m[0]]
    if not args.no_baseline:
        selections = baseline_runs(sorted({tuple(m[4]) for m in mutations}))
        with tempfile.TemporaryDirectory(prefix='mutation-baseline-') as tmp:
            copy_project(tmp)
            failed = False
            with concurrent.futures.ThreadPoolExecutor(args.j) as pool:
                for tests, (status, how) in zip(selections, pool.map(lambda t: run_tests(tmp, list(t), args.timeout),
                                                                     selections)):
                    print(f"baseline {'passes' if status == 0 else f'FAILS ({status}: {how})'}: {' '.join(tests)}",
                          flush=True)
                    failed = failed or status != 0
        if failed:
            sys.exit(1)
    width = max(len(m[0]) for m in mutations)
    print(f"\n{'mutation'.ljust(width)}  {'file'.ljust(20)}  result          seconds  caught by", flush=True)
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.j) as pool:
        for (name, path, *_), (result, seconds, how) in zip(mutations, pool.map(lambda m: try_mutation(m, args.timeout),
                                                                                 mutations)):
            print(f"{name.ljust(width)}  {path.ljust(20)}  {result.ljust(14)}  {seconds:7.0f}  {how}", flush=True)
            results.append(result)
    caught = sum(r == 'caught' for r in results)
    applicable = sum(r in ('caught', 'survived') for r in results)
    print(f"\n{caught} of {applicable} applicable mutations caught ({len(mutations) - applicable} not applicable)")


if __name__ == '__main__':
    main()
