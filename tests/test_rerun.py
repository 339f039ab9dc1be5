"""A rerun never destroys a run (issue 22): a run whose outputs exist (its log, its save folder's best parameters,
its checkpoints, a submission file it would write) stops before writing anything, with one `error:` line naming
them and the ways on; --overwrite replaces them, --resume continues the run (saying from where), another --desc
is another run, unless it would write the first one's submission. best_params.jl is written at the first
evaluation, not at the start; the end of a run names analysis.py by the path the user types. Tiny generated
inputs (tests/test_errors.py's)."""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

import opt
from engine import loop
import train
from formats import weights
from tests.test_errors import inputs  # noqa: F401 (a fixture)
from tests.test_hostile import REPO, argv_of, only_error, snapshot

FLAGS = dict(n_batch=1, n_iter=1, submit=True)  # 8 training examples, 4 a batch: 2 updates, 1 evaluation


@pytest.fixture
def tiny(inputs, tmp_path, monkeypatch, capsys):
    """tiny(code=0, **flags) -> (stdout, stderr) of a train.main run on copies of the inputs under tmp_path (its
    outputs in tmp_path/out), started in tmp_path/cwd; it must end with exit status `code`, without a traceback."""
    shutil.copytree(inputs['data_dir'], tmp_path / 'data')
    shutil.copytree(inputs['model_dir'], tmp_path / 'model')
    (tmp_path / 'cwd').mkdir()
    monkeypatch.chdir(tmp_path / 'cwd')

    def run(code=0, **flags):
        capsys.readouterr()
        argv = argv_of(inputs, tmp_path, **{**FLAGS, **flags})
        if code:
            with pytest.raises(SystemExit) as exit_:
                train.main(argv)
            assert exit_.value.code == code
        else:
            train.main(argv)
        out, err = capsys.readouterr()
        assert 'Traceback' not in err, err
        return out, err

    return run


@pytest.fixture(scope='module')
def previous(inputs, tmp_path_factory):
    """The outputs of a whole run with --submit and a checkpoint (--save_every 1) under out/."""
    root = tmp_path_factory.mktemp('previous')
    shutil.copytree(inputs['data_dir'], root / 'data')
    shutil.copytree(inputs['model_dir'], root / 'model')
    train.main(argv_of(inputs, root, **FLAGS, save_every=1))
    return root / 'out'


OUTPUTS = {'log': ['log/tiny.jsonl'], 'best parameters': ['save/tiny/best_params.jl'],
           'checkpoints': ['save/tiny/checkpoints'], 'submission': ['submission/ROCStories.tsv']}


@pytest.mark.parametrize('kind', OUTPUTS)
def test_a_rerun_over_any_output_stops_before_writing_anything(tiny, previous, tmp_path, kind):
    for path in OUTPUTS[kind]:  # that output alone, as the previous run wrote it
        copy = shutil.copytree if (previous / path).is_dir() else shutil.copy
        (tmp_path / 'out' / path).parent.mkdir(parents=True, exist_ok=True)
        copy(previous / path, tmp_path / 'out' / path)
    before = snapshot(tmp_path)
    msg = only_error(tiny(code=2)[1])
    assert snapshot(tmp_path) == before  # no lock, no log, no cache: nothing
    assert msg.startswith('a previous run wrote what this one would replace: ')
    if kind == 'checkpoints':  # the folder that holds it; without the run's log --resume cannot continue it
        folder = tmp_path / 'out' / 'save' / 'tiny'
        assert f"{str(folder)!r} (checkpoints/)" in msg
        assert f"{str(folder)!r} holds another run, which --resume cannot continue: its log " in msg
        assert 'continue that run' not in msg
    else:
        named = tmp_path / 'out' / OUTPUTS[kind][0]
        assert (repr(str(named)) if kind != 'best parameters' else f"{str(named.parent)!r} (best_params.jl)") in msg
        assert '--resume' not in msg  # no checkpoint to resume from
    if kind == 'submission':  # another --desc would write the same file: only another folder helps
        assert msg.endswith('start another with another --submission_dir or replace them with --overwrite')
    else:
        assert msg.endswith('start another with another --desc or replace them with --overwrite')


def test_overwrite_replaces_every_output_of_the_previous_run(tiny, previous, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(previous, out)
    old = snapshot(out)
    (out / 'log' / 'tiny.jsonl').write_text('{"the previous run": 1}\n')
    (out / 'submission' / 'ROCStories.tsv').write_text('index\tprediction\n')
    stdout, _ = tiny(overwrite=True)  # no --save_every: this run makes no checkpoint
    with open(out / 'log' / 'tiny.jsonl') as f:
        lines = [json.loads(line) for line in f]
    assert lines[0]['overwrite'] is True and [line['n_updates'] for line in lines[1:]] == [2]
    assert not (out / 'save' / 'tiny' / 'checkpoints').exists()  # the previous run's, removed
    assert len(weights.load_params(str(out / 'save' / 'tiny' / 'best_params.jl'))) == 1 + 12 * 2 + 2
    assert len((out / 'submission' / 'ROCStories.tsv').read_text().splitlines()) == 1 + 8  # the 8 test stories
    events = [p.name for p in (out / 'log' / 'tiny').iterdir() if p.name.startswith('events')]
    assert len(events) == 1 and str(out / 'log' / 'tiny' / events[0]) not in old  # this run's alone
    assert os.path.exists(out / 'submission' / 'ROCStories_probs.tsv')


def test_another_desc_is_another_run_unless_it_would_write_the_same_submission(tiny, previous, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(previous, out)
    before = snapshot(tmp_path)
    msg = only_error(tiny(code=2, desc='other')[1])
    assert snapshot(tmp_path) == before
    assert repr(str(out / 'submission' / 'ROCStories.tsv')) in msg and 'tiny' not in msg  # the other run's alone
    assert repr(str(out / 'submission' / 'ROCStories_probs.tsv')) in msg
    assert '--submission_dir' in msg and '--overwrite' in msg
    tiny(desc='other', submission_dir=tmp_path / 'other')
    after = snapshot(tmp_path)
    assert all(after[path] == content for path, content in before.items())  # the first run's, untouched
    assert (tmp_path / 'other' / 'ROCStories.tsv').exists() and (out / 'log' / 'other.jsonl').exists()
    assert (out / 'save' / 'other' / 'best_params.jl').exists()


def test_an_interrupted_run_keeps_its_checkpoint_from_a_rerun_and_resumes_saying_where(tiny, tmp_path, monkeypatch):
    """The issue's story: Ctrl-C (SIGTERM here) at the first update, the same command again (refused, pointing to
    --resume), then --resume: it says where it resumes, and best_params.jl is written at its first evaluation."""
    make_update = opt.make_update

    def signalling(*args, **kwargs):
        step = make_update(*args, **kwargs)

        def step_(*batch):
            os.kill(os.getpid(), signal.SIGTERM)  # the run stops after this update (the first), saving it
            return step(*batch)
        return step_

    monkeypatch.setattr(opt, 'make_update', signalling)
    tiny(code=143)
    monkeypatch.setattr(opt, 'make_update', make_update)
    save = tmp_path / 'out' / 'save' / 'tiny'
    checkpoint = save / 'checkpoints' / 'ckpt-1'
    assert os.path.exists(f'{checkpoint}.index') and not (save / 'best_params.jl').exists()  # no evaluation yet

    before = snapshot(tmp_path / 'out')
    msg = only_error(tiny(code=2)[1])  # the README's command again, forgetting --resume
    assert snapshot(tmp_path / 'out') == before
    assert repr(str(tmp_path / 'out' / 'log' / 'tiny.jsonl')) in msg
    assert f'continue that run with --resume (its checkpoint {str(checkpoint)!r}, update 1)' in msg

    saves, save_best_params = [], train.save_best_params

    def saving(params, path):  # when: the log's lines at that moment
        saves.append((path, len((tmp_path / 'out' / 'log' / 'tiny.jsonl').read_text().splitlines())))
        save_best_params(params, path)
    monkeypatch.setattr(train, 'save_best_params', saving)
    stdout, _ = tiny(resume=True)
    assert f'resumed from update 1 of 2 (checkpoint {checkpoint})' in stdout.splitlines()
    assert saves == [(str(save / 'best_params.jl'), 2)]  # once, with the log's first evaluation written

    (hint,) = [line for line in stdout.splitlines() if line.startswith('plot the learning curves: ')]
    command = shlex.split(hint.split(': ', 1)[1])
    assert command[:2] == ['python', os.path.join(REPO, 'analysis.py')]  # the path from the folder it ran in
    plotted = subprocess.run([sys.executable] + command[1:], cwd=tmp_path / 'cwd', capture_output=True, text=True,
                             timeout=120)
    assert plotted.returncode == 0 and (tmp_path / 'cwd' / 'tiny.png').read_bytes()[:4] == b'\x89PNG', plotted.stderr


def test_resume_and_overwrite_together_are_refused(tiny, tmp_path):
    msg = only_error(tiny(code=2, resume=True, overwrite=True)[1])
    assert '--resume' in msg and '--overwrite' in msg and 'one of them' in msg
    assert not (tmp_path / 'out').exists()


def test_the_command_that_resumes_a_run_started_with_overwrite_leaves_overwrite_out():
    from engine.run_state import resume_command
    command = shlex.split(resume_command(['--desc', 'x', '--overwrite', '--submit']))
    assert command[2:] == ['--desc', 'x', '--submit', '--resume']
    assert re.fullmatch(r'.*train\.py', command[1])
