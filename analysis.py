"""The paper's figures of runs: a run's metrics on its dev set (its best evaluation) and, where the test labels are
public (SNLI, SciTail, RACE, Story Cloze), of its submission (report: what train.py --analysis prints); learning
curves; the paper's Tables 2-5 with the runs' figures beside the paper's; Figure 2 (left) of an n_transfer sweep.
    python analysis.py --log log/rocstories.jsonl [--data_dir data/ --submission submission/ROCStories.tsv]
    python analysis.py --plot curves.png log/a.jsonl [log/b.jsonl ...]
    python analysis.py --table log/*.jsonl
    python analysis.py --figure2 figure2.png log/mnli-layers*.jsonl log/race-layers*.jsonl
--log reads the data folder and the submission from the run's flags (its log's first line) unless given.
"""
import argparse
import os

from utils import InputError, exit_on_input_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--plot', metavar='OUT_PNG', help='draw the learning curves of the LOGS to this PNG')
    parser.add_argument('--table', action='store_true',
                        help="print the paper's Tables 2-4 (and 5, given ablation runs) with the LOGS' figures (a "
                             "log that is not a run with an evaluation is left out, with a line saying why)")
    parser.add_argument('--figure2', metavar='OUT_PNG',
                        help="draw Figure 2 (left) of the LOGS of an --n_transfer sweep to this PNG")
    parser.add_argument('logs', nargs='*', metavar='LOG', help='with --plot, --table, --figure2: train.py logs '
                                                              '(log/{desc}.jsonl)')
    parser.add_argument('--log', help="the run's log, log/{desc}.jsonl: print its figures")
    parser.add_argument('--data_dir', help="with --log: the task's data folder (the test labels; default: the run's)")
    parser.add_argument('--submission', help="with --log: the test predictions (default: the run's, e.g. "
                                             "submission/ROCStories.tsv)")
    args = parser.parse_args(argv)
    modes = [flag for flag, on in [('--plot', args.plot is not None), ('--table', args.table),
                                   ('--figure2', args.figure2 is not None), ('--log', args.log is not None)] if on]
    if len(modes) != 1:
        parser.error('give one of --plot OUT_PNG LOG..., --table LOG..., --figure2 OUT_PNG LOG... or --log LOG '
                     f'(given: {", ".join(modes) or "none"})')
    if modes[0] == '--log' and args.logs:
        parser.error('LOG files go with --plot, --table or --figure2; --log takes one')
    if modes[0] != '--log' and not args.logs:
        parser.error(f'{modes[0]} needs at least one LOG')
    if modes[0] != '--log' and (args.data_dir or args.submission):
        parser.error(f'{modes[0]} takes LOG files, not --data_dir or --submission: those go with --log')
    return args


def check_files(args):
    """InputError when a file or folder to read is missing (checked before numpy and the task registry are
    imported)."""
    files = [('log', path, 'a log/{desc}.jsonl that train.py wrote') for path in args.logs] + [
        ('--log', args.log, 'the log/{desc}.jsonl that train.py wrote'),
        ('--submission', args.submission, 'the test predictions that train.py --submit wrote')]
    for what, path, hint in files:
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{what} {path!r} not found: give {hint}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise InputError(f"--data_dir {args.data_dir!r} not found: give the task's data folder")


if __name__ == '__main__':  # --help, a bad flag and a missing file answer now, before the imports below
    exit_on_input_error(check_files, parse_args())

# after the command line is checked; the names the tests read here too (analysis.rocstories is the original's)
from paper.runs import analyse_log, plot, read_log, report, rocstories  # noqa: E402,F401


def analyse(args):
    check_files(args)
    if args.plot is not None:
        plot(args.logs, args.plot)
    elif args.table or args.figure2:
        from paper import tables
        print(tables.tables(args.logs) if args.table else tables.figure2(args.logs, args.figure2),
              end='')
    else:
        analyse_log(args.log, args.data_dir, args.submission)


def main(argv=None):
    exit_on_input_error(analyse, parse_args(argv))


if __name__ == '__main__':
    main()
