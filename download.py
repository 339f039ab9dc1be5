"""Fetch the pretrained GPT-1 files of the original repository (openai/finetune-transformer-lm, pinned commit)
into model/, verified against the checksums below.

    python download.py                       # all 13 files (466 MB) into model/
    python download.py --only bpe            # the two BPE files (1.3 MB): enough for --n_transfer -1
    python download.py --model_dir DIR --base_url URL_OR_FOLDER
    python download.py --random_weights      # the BPE files, then RANDOM weights: to try the pipeline, not for results

The small files (the BPE files, params_shapes.json) come first, then the ten weight shards; one line says what
became of each. A file that fails does not stop the others, and the exit status is 1 if any failed; but a server
that cannot be reached at all (no network) stops the command at once, with one line saying so. A file already
present and verified is skipped. A download goes to `<name>.part` beside the final file and is renamed onto it
only once verified, so an interrupted run leaves no half file under the final name; re-running resumes the .part
with an HTTP Range request.

--random_weights: a stand-in for trying the pipeline without the 466 MB of weights: the two BPE files are fetched
as by --only bpe (the real ones: the text must be encoded as the original's), then params_shapes.json and
params_0..9.npy are written with RANDOM N(0, 0.02) values of the original's full size, and RANDOM_WEIGHTS.txt says
so. A run on them says nothing of GPT-1: never use them for results. It refuses a folder that already holds a
params_*.npy; a later `python download.py` replaces the random files with the real ones (and removes the note).

--base_url: where the files are, instead of GitHub: a mirror's URL (the folder holding the 13 files, as
http(s)://.../model/), or a local folder holding copies (a path or a file:// URL); every file is verified all
the same.
"""
import argparse
import errno
import glob
import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request

from tqdm import tqdm

from utils import HelpFormatter, InputError, exit_on_input_error

BASE_URL = ('https://raw.githubusercontent.com/openai/finetune-transformer-lm/'
            'a69b5c43b0452462890bca8ff92fb75dee9290cf/model/')

# The files under model/ at that commit (from shared/model/UPSTREAM.md), the small ones first (every command
# needs them). 'git_blob' is git's SHA-1 of b"blob <size>\0" + content (what `git hash-object FILE` prints),
# known for every file; 'sha256' and 'size' were computed from copies of the three small files and are not known
# for the parameter shards.
FILES = {
    'encoder_bpe_40000.json': {
        'git_blob': '9dc3f0af5a80956e57dc8d9401e16dfadcade7c2',
        'sha256': 'fdf49b19e7de236852091da09b84a7a3cd5e7b0e79916376cf45f6b8127b8078',
        'size': 815973},
    'vocab_40000.bpe': {
        'git_blob': '0023a687b3d4d0b795a5e97cc914bdabb5a253df',
        'sha256': '0ea9b51ae695073cd871e0358f7016311d671a7ff3963e367d5236522f294725',
        'size': 458495},
    'params_shapes.json': {
        'git_blob': '29fac299ae848d7e447be84a33345edcf1b5353c',
        'sha256': '3bff3faa381e06d81c60f44520eb82c673d14a8ae61d821c63167f59acc6a768',
        'size': 1478},
    'params_0.npy': {'git_blob': '84d83ac1f1cc878f56f33b167482c184491875d2'},
    'params_1.npy': {'git_blob': '0f19f4d4cda3d8f908e3faffd2cb2a8b9a4039da'},
    'params_2.npy': {'git_blob': '25bc19c72fdff69505a828ec6d73b32063532148'},
    'params_3.npy': {'git_blob': '5b2e6958d42a930966c9d602a012eb846ca67c83'},
    'params_4.npy': {'git_blob': '87ad158987e307e6aa64952610f466d750b73bc7'},
    'params_5.npy': {'git_blob': '74f3853316bba327229605dbedfe921996f11448'},
    'params_6.npy': {'git_blob': '5ef44e40bc076d0c9686d1273d54cbc16c3f0980'},
    'params_7.npy': {'git_blob': 'd8d5c8d3bee9b20a677605ac1fe6c7af4df57c94'},
    'params_8.npy': {'git_blob': 'f980f4b393716f396ae5ae6401708dcf4f270dc9'},
    'params_9.npy': {'git_blob': 'd389eb2074dd74754444b8062aba78b49f6a9053'},
}
ONLY = {'bpe': ['encoder_bpe_40000.json', 'vocab_40000.bpe']}  # --only: subsets of FILES

TIMEOUT = 60  # seconds without data before a request gives up
USER_AGENT = 'finetune-transformer-lm-tf2/download.py'


class DownloadError(Exception):
    """A download that cannot complete (server error, lost connection, bad checksum): the message names the
    file and URL and says what to do. main() prints it on one line and exits with status 1."""


class Unreachable(DownloadError):
    """The server of a URL cannot be reached at all (a name that does not resolve, no route to it, a connection
    refused or timed out): every other file from it would fail alike. host: the URL's."""

    def __init__(self, message, host):
        super().__init__(message)
        self.host = host


class _Restart(Exception):
    """Internal: discard the .part and fetch the file again from byte zero."""


def _hashes(path, chunk=1 << 20):
    """(git blob id, SHA-256) of the file at `path`, in one streaming pass."""
    blob = hashlib.sha1(b'blob %d\0' % os.path.getsize(path))
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            blob.update(block)
            sha.update(block)
    return blob.hexdigest(), sha.hexdigest()


def git_blob_id(path):
    """git's id of the file's content: SHA-1 of b"blob <size>\\0" + content (as `git hash-object`)."""
    return _hashes(path)[0]


def sha256(path):
    """Hex SHA-256 of the file's content."""
    return _hashes(path)[1]


def verify(path, expected):
    """Check the file at `path` against `expected` ({'git_blob': ..., optional 'sha256', 'size'}); return
    (ok, reason), reason saying what disagreed."""
    if not os.path.isfile(path):
        return False, 'file is missing'
    if 'git_blob' not in expected and 'sha256' not in expected:
        return False, 'no checksum to verify against'
    size = os.path.getsize(path)
    if 'size' in expected and size != expected['size']:
        return False, f"size is {size} bytes, expected {expected['size']}"
    blob, sha = _hashes(path)
    if 'git_blob' in expected and blob != expected['git_blob']:
        return False, f"git blob id is {blob}, expected {expected['git_blob']}"
    if 'sha256' in expected and sha != expected['sha256']:
        return False, f"SHA-256 is {sha}, expected {expected['sha256']}"
    return True, 'ok'


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _content_range_start(value):
    """Start offset of a Content-Range header 'bytes N-M/T', or None when it does not parse."""
    try:
        unit, rest = value.split(None, 1)
        return int(rest.split('-', 1)[0]) if unit == 'bytes' else None
    except (AttributeError, ValueError):
        return None


def _transfer(url, part, name, chunk, timeout):
    """One request for `url` into `part`, resuming from the bytes already there. Raises _Restart when the
    .part must be discarded, DownloadError for an error the user can only retry."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {'User-Agent': USER_AGENT, 'Accept-Encoding': 'identity'}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            raise _Restart(f'the server refused to resume from byte {offset} (HTTP 416)')
        hint = ' (is --base_url right?)' if err.code in (403, 404) else ''
        raise DownloadError(f'HTTP {err.code} {err.reason}{hint}') from None
    except urllib.error.URLError as err:  # raised while connecting and sending the request
        if _unreachable(err):
            raise Unreachable(_describe(err), urllib.parse.urlparse(url).hostname) from None
        raise DownloadError(_describe(err)) from None
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(_describe(err)) from None
    with resp:
        status = getattr(resp, 'status', None) or 200  # file:// URLs have no status: a whole file
        if status == 206:
            start = _content_range_start(resp.headers.get('Content-Range'))
            if start != offset:
                raise _Restart(f'the server resumed at byte {start} instead of {offset}')
            mode = 'ab'
        elif status == 200:
            offset, mode = 0, 'wb'  # no resume (first request, or the server ignored Range): from zero
        else:
            raise DownloadError(f'unexpected HTTP {status} {resp.reason}')
        length = resp.headers.get('Content-Length')
        length = int(length) if length is not None and length.isdigit() else None
        read = getattr(resp, 'read1', resp.read)  # read1: whatever has arrived, so a stall keeps it
        received = 0
        with open(part, mode) as f, tqdm(total=None if length is None else offset + length, initial=offset,
                                         desc=name, unit='B', unit_scale=True, unit_divisor=1024,
                                         file=sys.stderr, ncols=80, leave=False) as bar:
            try:
                while length is None or received < length:
                    block = read(chunk if length is None else min(chunk, length - received))
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(f'{_describe(err)} after {offset + received} bytes') from None
    if length is not None and received < length:
        raise DownloadError(f'the connection closed after {offset + received} of {offset + length} bytes')
    return offset > 0


def _unreachable(err):
    """Whether the URLError of a request says that its server could not be reached at all."""
    return isinstance(err.reason, (socket.gaierror, ConnectionRefusedError, TimeoutError)) or \
        getattr(err.reason, 'errno', None) in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN)


def _describe(err):
    """A one-line reason for a network error."""
    if isinstance(err, urllib.error.URLError):
        err = err.reason
    if isinstance(err, TimeoutError) or 'timed out' in str(err):
        return 'the connection timed out'
    return str(err) or type(err).__name__


def fetch(url, dest, expected, chunk=1 << 20, timeout=TIMEOUT):
    """Download `url` to `dest` through `dest + '.part'` (resumed with a Range request when it exists),
    verify it against `expected` and rename it onto `dest`. Raises DownloadError on failure: after a network
    error the .part is kept for the next run to resume; after a failed verification it is deleted."""
    name = os.path.basename(dest)
    part = dest + '.part'
    restarted = False
    while True:
        try:
            resumed = _transfer(url, part, name, chunk, timeout)
        except _Restart as why:
            if os.path.exists(part) and verify(part, expected)[0]:
                break  # the .part was already complete (a run stopped just before the rename)
            if restarted:
                raise DownloadError(f'could not download {name} from {url}: {why}; {_retry(part)}') from None
            _remove(part)
            restarted = True
            continue
        except Unreachable as err:
            raise Unreachable(f'could not download {name} from {url}: {err}; {_retry(part)}', err.host) from None
        except DownloadError as err:
            raise DownloadError(f'could not download {name} from {url}: {err}; {_retry(part)}') from None
        ok, reason = verify(part, expected)
        if ok:
            break
        _remove(part)
        if resumed and not restarted:  # the earlier partial bytes may be the bad ones: start over once
            restarted = True
            continue
        again = ('the copy there is not the original file: replace it, or give --base_url another folder or a '
                 'mirror') if url.startswith('file:') else 're-run to download it again'
        raise DownloadError(f'{name} downloaded from {url} failed verification ({reason}); the file was deleted: '
                            f'{again}')
    os.replace(part, dest)
    return dest


def _retry(part):
    """What to do after a failed transfer into `part`: resume it when it holds bytes, else try again."""
    if os.path.isfile(part) and os.path.getsize(part):
        return f're-run the same command to resume it ({os.path.getsize(part)} bytes kept in {part})'
    return 're-run the same command to try again'


def _url(base_url, name):
    """The URL of `name` under base_url: a URL, or a local folder (a path without a scheme)."""
    if not urllib.parse.urlparse(base_url).scheme and os.path.isdir(base_url):
        base_url = urllib.parse.urljoin('file:', urllib.request.pathname2url(os.path.abspath(base_url)))
    return base_url.rstrip('/') + '/' + urllib.parse.quote(name)


def local_folder(base_url):
    """The local folder that `base_url` names (a path without a scheme, or a file:// URL), else None (a server)."""
    parsed = urllib.parse.urlparse(base_url)
    if parsed.scheme == 'file':
        return urllib.request.url2pathname(parsed.path)
    return None if parsed.scheme else base_url


def download(model_dir, base_url=BASE_URL, files=None, timeout=TIMEOUT):
    """Fetch `files` (names from FILES, or a dict name -> expected checksums; default all of FILES) from
    `base_url` (a URL or a local folder) into `model_dir`, skipping those already present and verified. A file
    that fails does not stop the others; every file's result is printed at the end. Returns the local paths;
    raises DownloadError naming the files that failed, once all were tried; or at once, saying so, when the server
    cannot be reached."""
    if files is None:
        files = FILES
    if not isinstance(files, dict):
        unknown = [n for n in files if n not in FILES]
        if unknown:
            raise DownloadError(f'unknown file(s) {unknown}: the files are {list(FILES)}')
        files = {n: FILES[n] for n in files}
    os.makedirs(model_dir, exist_ok=True)
    print(f'{model_dir}: {len(files)} files from {base_url}')
    paths, failed, lacking = [], [], []
    folder = local_folder(base_url)
    for name, expected in files.items():
        dest = os.path.join(model_dir, name)
        ok, reason = verify(dest, expected)
        if ok:
            result = 'present and verified, skipped'
        elif folder is not None and not os.path.isfile(os.path.join(folder, name)):
            result = f'FAILED: {folder!r} has no {name}'
            failed.append(name)
            lacking.append(name)
        else:
            result = f'present but {reason}: downloaded again and verified' if os.path.exists(dest) else \
                'downloaded and verified'
            try:
                fetch(_url(base_url, name), dest, expected, timeout=timeout)
            except Unreachable as err:  # the other files would fail alike, each after its own wait
                raise DownloadError(f'cannot reach {err.host}: no network? use --base_url with a mirror or a local '
                                    'copy') from None
            except DownloadError as err:
                result = f'FAILED: {err}'
                failed.append(name)
        print(f'  {name:<24} {result}')
        paths.append(dest)
    if failed:
        resume = any(os.path.isfile(os.path.join(model_dir, name + '.part')) for name in failed)
        ways = [f"the folder {folder!r} lacks {', '.join(lacking)}: copy {'it' if len(lacking) == 1 else 'them'} "
                "there, or give --base_url a folder or a mirror that holds the files"] if lacking else []
        if len(lacking) < len(failed) and folder is not None:  # a local copy that failed: a re-run reads it again
            ways.append(f"the copies of {', '.join(n for n in failed if n not in lacking)} in {folder!r} are not the "
                        "original files (why: above): replace them, or give --base_url another folder or a mirror")
        elif len(lacking) < len(failed):
            ways.append(f"re-run the same command{' to resume' * resume}, or fetch them from a mirror or a local copy "
                        "with --base_url")
        raise DownloadError(f"{len(failed)} of {len(files)} files failed ({', '.join(failed)}; why: above): "
                            + '; '.join(ways))
    return paths


RANDOM_NOTE = 'RANDOM_WEIGHTS.txt'  # written beside random weights: what they are


def random_weights(model_dir, shapes=None):
    """Write random weights in the original's layout into `model_dir`: params_shapes.json (`shapes`; default the
    original's full-size GPT-1, weights.openai_shapes) and params_0..9.npy of N(0, 0.02) values, and RANDOM_NOTE
    saying that they are random. InputError, before writing anything, when the folder already holds a weight
    shard (real weights, or random ones: neither is written over). Returns the number of parameters."""
    import numpy as np  # here: downloading needs neither

    from formats.sample_files import write_random_weights
    from formats.weights import openai_shapes
    present = sorted(glob.glob(os.path.join(glob.escape(model_dir), 'params_*.npy')))
    if present:
        what = 'random weights written by --random_weights' if os.path.isfile(os.path.join(model_dir, RANDOM_NOTE)) \
            else 'weights (the real ones?)'
        names = ', '.join(os.path.basename(p) for p in present[:3]) + ', ...' * (len(present) > 3)
        raise InputError(f"--random_weights: {model_dir!r} already holds {what} ({names}): it never writes over "
                         "them; give another --model_dir, or delete them first")
    shapes = shapes or openai_shapes(40478, 768, 12)
    write_random_weights(model_dir, shapes)
    n = int(sum(np.prod(shape) for shape in shapes))
    with open(os.path.join(model_dir, RANDOM_NOTE), 'w') as f:
        f.write(f"params_shapes.json and params_0..9.npy here are RANDOM weights (N(0, 0.02), {n:,} parameters) that "
                "download.py --random_weights wrote, in the original's layout: for trying the pipeline, never for "
                "results. `python download.py` replaces them with the real pretrained weights.\n")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--model_dir', default='model/', help='folder to write the files into')
    parser.add_argument('--base_url', default=BASE_URL,
                        help='the folder holding the files: a URL (a mirror) or a local folder')
    parser.add_argument('--only', choices=sorted(ONLY),
                        help=f"only these files; bpe: {', '.join(ONLY['bpe'])} (default: all the files)")
    parser.add_argument('--random_weights', action='store_true',
                        help="fetch the two BPE files, then write RANDOM full-size weights (params_shapes.json, "
                             "params_0..9.npy, 466 MB) in place of the pretrained ones: for trying the pipeline "
                             "without the 466 MB download, never for results; refused where weights are already")
    args = parser.parse_args(argv)
    folder = local_folder(args.base_url)
    scheme = urllib.parse.urlparse(args.base_url).scheme
    if folder is not None and not os.path.isdir(folder):
        print(f"error: --base_url {args.base_url!r}: no such folder: give the folder that holds the files (a path or "
              "a file:// URL) or a mirror's http(s):// URL", file=sys.stderr)
        sys.exit(2)
    if folder is None and scheme not in ('http', 'https', 'ftp'):
        print(f"error: --base_url {args.base_url!r}: unknown scheme {scheme!r}: give a folder or an http(s):// URL",
              file=sys.stderr)
        sys.exit(2)
    if args.random_weights and args.only:
        print("error: --random_weights fetches the BPE files and writes random weights; --only picks files to "
              "download: pass one of them", file=sys.stderr)
        sys.exit(2)
    if args.random_weights:
        present = glob.glob(os.path.join(glob.escape(args.model_dir), 'params_*.npy'))
        if present:  # checked before the download too: nothing is fetched for a command that is refused
            exit_on_input_error(random_weights, args.model_dir)
    try:
        paths = download(args.model_dir, args.base_url,
                         files=ONLY['bpe'] if args.random_weights else ONLY[args.only] if args.only else None)
    except DownloadError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)
    except OSError as err:  # local trouble: an unwritable folder, a full disk
        print(f'error: {err.strerror or err} ({err.filename or args.model_dir})', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        parts = glob.glob(os.path.join(glob.escape(args.model_dir), '*.part'))
        print(f"error: interrupted; re-run the same command to {'resume' if parts else 'download the rest'}",
              file=sys.stderr)
        sys.exit(130)
    print(f'all {len(paths)} files in {args.model_dir} verified')
    note = os.path.join(args.model_dir, RANDOM_NOTE)
    if not args.random_weights and not args.only and os.path.isfile(note):
        os.remove(note)  # the real weights replaced the random ones
        print(f'  {RANDOM_NOTE:<24} removed: the weights here are the real ones now')
    if args.random_weights:
        n = exit_on_input_error(random_weights, args.model_dir)
        print(f"RANDOM weights ({n:,} parameters, N(0, 0.02)) written to {args.model_dir} in the original's layout "
              f"(params_shapes.json, params_0..9.npy; {RANDOM_NOTE} says so): for trying the pipeline, never for "
              "results; `python download.py` replaces them with the pretrained GPT-1")
    return 0


if __name__ == '__main__':
    sys.exit(main())
