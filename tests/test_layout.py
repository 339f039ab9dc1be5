"""The project's layout (issue 24): programs import libraries, never another program; the required top-level files
stay; every program runs as a script, and every library is imported by some file of the project."""
import ast
import glob
import os

from sample_files import PROJECT

# The programs: a file a user runs. Everything else at the top level is a library (analysis.py is the original's
# library with a command line of its own, as the original's was imported by train.py).
PROGRAMS = {'train', 'pretrain', 'zeroshot', 'generate', 'download', 'convert', 'bench', 'bench_masks',
            'bench_pipeline', 'bench_pretrain'}
REQUIRED = {'train', 'model', 'opt', 'text_utils', 'datasets', 'analysis', 'utils'}


def modules():
    return {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(PROJECT, '*.py'))}


def project_imports(path, names):
    """The project's modules that the file at `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            found |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split('.')[0])
    return found & names


def test_no_program_imports_another_program_and_every_program_exists():
    files = modules()
    assert PROGRAMS <= set(files) and REQUIRED <= set(files)
    for name in sorted(files):
        imported = project_imports(files[name], set(files))
        assert not (imported & PROGRAMS) - {name}, f'{name}.py imports the program(s) {sorted(imported & PROGRAMS)}'


def test_every_program_runs_as_a_script_and_every_library_is_imported_by_one():
    files = modules()
    for name in PROGRAMS:
        assert "if __name__ == '__main__':" in open(files[name], encoding='utf-8').read(), name
    used = set().union(*(project_imports(path, set(files)) for path in files.values()))
    libraries = set(files) - PROGRAMS - {'conftest'}
    assert not libraries - used, f'libraries no file imports: {sorted(libraries - used)}'
