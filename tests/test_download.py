"""download.py against a local HTTP server that supports Range requests and misbehaves on demand."""
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading

import pytest

import download
from tests.fixtures import REAL_FILES_HINT, real_path

TIMEOUT = 5  # seconds; every request in these tests goes to 127.0.0.1


def checksums(data):
    """Independent expectation: git's blob id, SHA-256 and size of `data` straight from hashlib."""
    return {'git_blob': hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest(),
            'sha256': hashlib.sha256(data).hexdigest(),
            'size': len(data)}


# Made-up files: one spanning several read chunks, one tiny.
BIG = bytes(range(256)) * 40 + b'tail'
SMALL = b'{"a": [1, 2, 3]}\n'
CONTENT = {'big.bin': BIG, 'small.json': SMALL}
EXPECTED = {name: checksums(data) for name, data in CONTENT.items()}


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files; server.mode picks a misbehaviour: 'ok', 'truncate' (half the body under the full
    Content-Length), 'drop' (half the body, then a connection reset), 'corrupt' (the last byte flipped), 'error500',
    'ignore_range' (always 200 with the whole file), 'bad_range' (206 starting at the wrong byte), 'stall'
    (headers, then no body until the test ends)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.log.append({'path': self.path, 'range': self.headers.get('Range')})
        name = self.path.rsplit('/', 1)[-1]
        if srv.mode == 'error500':
            return self.send_error(500, 'Internal Server Error')
        if name not in srv.files:
            return self.send_error(404, 'Not Found')
        data = srv.files[name]
        if srv.mode == 'corrupt':
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start, status = 0, 200
        m = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if m and srv.mode != 'ignore_range':
            start, status = int(m.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(data)}')
                self.send_header('Content-Length', '0')
                return self.end_headers()
        body = data[start:]
        self.send_response(status)
        if status == 206:
            shown = start + 1 if srv.mode == 'bad_range' else start
            self.send_header('Content-Range', f'bytes {shown}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if srv.mode == 'stall':
            self.wfile.write(body[:10])
            srv.release.wait(TIMEOUT * 2)
            return
        if srv.mode in ('truncate', 'drop'):
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
            if srv.mode == 'drop':  # close with a TCP reset instead of an orderly end of stream
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                self.connection.close()
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """A local server on an ephemeral port, stopped when the test ends. Attributes: base_url, files, mode,
    log (one dict per request: path, range)."""
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.daemon_threads = True
    srv.files, srv.mode, srv.log, srv.release = dict(CONTENT), 'ok', [], threading.Event()
    srv.base_url = f'http://127.0.0.1:{srv.server_address[1]}/model/'
    thread = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(TIMEOUT)


def closed_port_url():
    """A URL on a port nothing listens on (connection refused)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}/model/'


def fetch(server, tmp_path, name='big.bin', chunk=1000):
    dest = tmp_path / name
    return download.fetch(server.base_url + name, str(dest), EXPECTED[name], chunk=chunk, timeout=TIMEOUT)


# checksums


def test_git_blob_id_of_empty_file_is_gits_well_known_id(tmp_path):
    (tmp_path / 'empty').write_bytes(b'')
    assert download.git_blob_id(tmp_path / 'empty') == 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'


def test_checksums_match_hashlib_and_git_hash_object(tmp_path):
    path = tmp_path / 'big.bin'
    path.write_bytes(BIG)
    assert download.git_blob_id(path) == EXPECTED['big.bin']['git_blob']
    assert download.sha256(path) == EXPECTED['big.bin']['sha256']
    if shutil.which('git'):
        out = subprocess.run(['git', 'hash-object', str(path)], capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
        assert out == EXPECTED['big.bin']['git_blob']


def test_verify_names_what_disagrees(tmp_path):
    path = tmp_path / 'small.json'
    assert download.verify(str(path), EXPECTED['small.json']) == (False, 'file is missing')
    path.write_bytes(SMALL)
    assert download.verify(str(path), EXPECTED['small.json']) == (True, 'ok')
    assert download.verify(str(path), {'git_blob': EXPECTED['small.json']['git_blob']}) == (True, 'ok')
    ok, reason = download.verify(str(path), dict(EXPECTED['small.json'], size=1))
    assert not ok and 'size' in reason
    ok, reason = download.verify(str(path), dict(EXPECTED['small.json'], git_blob='0' * 40))
    assert not ok and 'git blob id' in reason
    ok, reason = download.verify(str(path), dict(EXPECTED['small.json'], sha256='0' * 64))
    assert not ok and 'SHA-256' in reason
    assert download.verify(str(path), {}) == (False, 'no checksum to verify against')


# the checksum table


def test_files_table_lists_the_13_upstream_files_with_blob_ids():
    names = {f'params_{i}.npy' for i in range(10)} | {
        'params_shapes.json', 'encoder_bpe_40000.json', 'vocab_40000.bpe'}
    assert set(download.FILES) == names
    for expected in download.FILES.values():
        assert re.fullmatch(r'[0-9a-f]{40}', expected['git_blob'])
        assert 'sha256' not in expected or re.fullmatch(r'[0-9a-f]{64}', expected['sha256'])
    assert 'a69b5c43b0452462890bca8ff92fb75dee9290cf/model/' in download.BASE_URL


@pytest.mark.parametrize('name', ['params_shapes.json', 'encoder_bpe_40000.json', 'vocab_40000.bpe'])
def test_files_table_matches_the_shared_copies(name):
    path = real_path('model', name)
    if path is None:
        pytest.skip(REAL_FILES_HINT)
    with open(path, 'rb') as f:
        data = f.read()
    assert {k: download.FILES[name][k] for k in ('git_blob', 'sha256', 'size')} == checksums(data)
    assert download.verify(path, download.FILES[name]) == (True, 'ok')


# fetch


def test_fetch_downloads_verifies_and_leaves_no_part(server, tmp_path):
    assert fetch(server, tmp_path) == str(tmp_path / 'big.bin')
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert os.listdir(tmp_path) == ['big.bin']
    assert server.log == [{'path': '/model/big.bin', 'range': None}]


def test_truncated_response_is_a_clear_error_and_keeps_the_part(server, tmp_path):
    server.mode = 'truncate'
    with pytest.raises(download.DownloadError) as err:
        fetch(server, tmp_path)
    msg = str(err.value)
    assert 'big.bin' in msg and server.base_url + 'big.bin' in msg and 're-run' in msg
    assert not (tmp_path / 'big.bin').exists()
    assert (tmp_path / 'big.bin.part').read_bytes() == BIG[:len(BIG) // 2]
    server.mode = 'ok'  # re-running resumes from the kept bytes
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert server.log[-1]['range'] == f'bytes={len(BIG) // 2}-'


def test_dropped_connection_is_a_clear_error_and_a_rerun_completes(server, tmp_path):
    server.mode = 'drop'
    with pytest.raises(download.DownloadError, match=r'big\.bin.*re-run'):
        fetch(server, tmp_path)
    assert not (tmp_path / 'big.bin').exists()
    server.mode = 'ok'
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert not (tmp_path / 'big.bin.part').exists()


def test_resume_sends_range_and_appends(server, tmp_path):
    (tmp_path / 'big.bin.part').write_bytes(BIG[:1234])
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert server.log == [{'path': '/model/big.bin', 'range': 'bytes=1234-'}]
    assert not (tmp_path / 'big.bin.part').exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.mode = 'ignore_range'
    (tmp_path / 'big.bin.part').write_bytes(BIG[:1234])
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert server.log == [{'path': '/model/big.bin', 'range': 'bytes=1234-'}]


def test_resume_at_the_wrong_offset_restarts_from_zero(server, tmp_path):
    server.mode = 'bad_range'
    (tmp_path / 'big.bin.part').write_bytes(BIG[:1234])
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert [r['range'] for r in server.log] == ['bytes=1234-', None]


def test_part_with_bad_bytes_fails_verification_then_restarts_once(server, tmp_path):
    (tmp_path / 'big.bin.part').write_bytes(b'x' * 1234)
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert [r['range'] for r in server.log] == ['bytes=1234-', None]


def test_part_longer_than_the_file_gets_416_then_restarts(server, tmp_path):
    (tmp_path / 'big.bin.part').write_bytes(BIG + b'junk')
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert [r['range'] for r in server.log] == [f'bytes={len(BIG) + 4}-', None]


def test_complete_part_answered_416_is_accepted(server, tmp_path):
    (tmp_path / 'big.bin.part').write_bytes(BIG)
    fetch(server, tmp_path)
    assert (tmp_path / 'big.bin').read_bytes() == BIG
    assert [r['range'] for r in server.log] == [f'bytes={len(BIG)}-']


def test_corrupt_content_fails_verification_and_leaves_nothing(server, tmp_path):
    server.mode = 'corrupt'
    with pytest.raises(download.DownloadError, match=r'big\.bin.*failed verification.*git blob id'):
        fetch(server, tmp_path)
    assert os.listdir(tmp_path) == []


def test_corrupt_content_after_resume_retries_once_then_fails(server, tmp_path):
    server.mode = 'corrupt'
    (tmp_path / 'big.bin.part').write_bytes(BIG[:1234])
    with pytest.raises(download.DownloadError, match='failed verification'):
        fetch(server, tmp_path)
    assert [r['range'] for r in server.log] == ['bytes=1234-', None]
    assert os.listdir(tmp_path) == []


def test_server_error_names_the_file_and_url(server, tmp_path):
    server.mode = 'error500'
    with pytest.raises(download.DownloadError) as err:
        fetch(server, tmp_path, 'small.json')
    msg = str(err.value)
    assert 'small.json' in msg and server.base_url + 'small.json' in msg and 'HTTP 500' in msg
    assert 're-run' in msg
    assert os.listdir(tmp_path) == []


def test_missing_file_is_http_404(server, tmp_path):
    with pytest.raises(download.DownloadError, match='HTTP 404'):
        download.fetch(server.base_url + 'nope.bin', str(tmp_path / 'nope.bin'), EXPECTED['big.bin'],
                       timeout=TIMEOUT)


def test_connection_refused_is_a_clear_error(tmp_path):
    url = closed_port_url() + 'small.json'
    with pytest.raises(download.DownloadError) as err:
        download.fetch(url, str(tmp_path / 'small.json'), EXPECTED['small.json'], timeout=TIMEOUT)
    assert 'small.json' in str(err.value) and url in str(err.value)


def test_stalled_server_times_out(server, tmp_path):
    server.mode = 'stall'
    with pytest.raises(download.DownloadError, match='timed out'):
        download.fetch(server.base_url + 'big.bin', str(tmp_path / 'big.bin'), EXPECTED['big.bin'],
                       timeout=0.5)
    assert (tmp_path / 'big.bin.part').read_bytes() == BIG[:10]


# download and main


def test_download_fetches_all_then_skips_verified_files_without_requests(server, tmp_path):
    model = tmp_path / 'model'
    paths = download.download(str(model), server.base_url, files=EXPECTED, timeout=TIMEOUT)
    assert paths == [str(model / n) for n in EXPECTED]
    assert {p.name: p.read_bytes() for p in model.iterdir()} == CONTENT
    assert len(server.log) == 2
    server.log.clear()
    download.download(str(model), server.base_url, files=EXPECTED, timeout=TIMEOUT)
    assert server.log == []
    # nothing is listening there: a skip must not touch the network at all
    download.download(str(model), closed_port_url(), files=EXPECTED, timeout=TIMEOUT)


def test_download_replaces_a_present_file_that_fails_verification(server, tmp_path):
    (tmp_path / 'small.json').write_bytes(b'stale')
    download.download(str(tmp_path), server.base_url.rstrip('/'), files={'small.json': EXPECTED['small.json']},
                      timeout=TIMEOUT)
    assert (tmp_path / 'small.json').read_bytes() == SMALL
    assert server.log == [{'path': '/model/small.json', 'range': None}]


def test_download_from_a_file_url(tmp_path):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    (mirror / 'small.json').write_bytes(SMALL)
    download.download(str(tmp_path / 'model'), mirror.as_uri() + '/', files={'small.json': EXPECTED['small.json']},
                      timeout=TIMEOUT)
    assert (tmp_path / 'model' / 'small.json').read_bytes() == SMALL


def test_download_rejects_unknown_names(tmp_path):
    with pytest.raises(download.DownloadError, match='unknown'):
        download.download(str(tmp_path), closed_port_url(), files=['nope.bin'])


def test_main_fails_with_one_line_on_stderr(server, tmp_path, capsys):
    server.mode = 'error500'
    with pytest.raises(SystemExit) as exit_:
        download.main(['--model_dir', str(tmp_path / 'model'), '--base_url', server.base_url])
    assert exit_.value.code == 1
    out, stderr = capsys.readouterr()
    err = stderr.strip().splitlines()[-1]
    assert err.startswith('error: ') and 'params_0.npy' in err and '13 of 13 files failed' in err
    assert 'Traceback' not in stderr
    assert 'params_0.npy' in out and 'HTTP 500' in out  # each file's reason, in the report


def test_main_downloads_the_table(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(download, 'FILES', EXPECTED)
    assert download.main(['--model_dir', str(tmp_path), '--base_url', server.base_url]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == CONTENT
    assert 'all 2 files' in capsys.readouterr().out


def test_real_shapes_file_served_locally_verifies_against_the_table(server, tmp_path):
    path = real_path('model', 'params_shapes.json')
    if path is None:
        pytest.skip(REAL_FILES_HINT)
    with open(path, 'rb') as f:
        server.files['params_shapes.json'] = f.read()
    download.download(str(tmp_path), server.base_url, files=['params_shapes.json'], timeout=TIMEOUT)
    shapes = json.loads((tmp_path / 'params_shapes.json').read_text())
    # UPSTREAM.md: the ten shards hold 116,534,784 float32 values in all
    total = 0
    for shape in shapes:
        n = 1
        for d in shape:
            n *= d
        total += n
    assert total == 116_534_784


# a newcomer's download: the small files first, every file tried, a report, --only bpe, a local folder


def test_files_table_lists_the_small_files_first():
    assert list(download.FILES)[:3] == ['encoder_bpe_40000.json', 'vocab_40000.bpe', 'params_shapes.json']
    assert download.ONLY['bpe'] == ['encoder_bpe_40000.json', 'vocab_40000.bpe']


def test_a_failed_file_does_not_stop_the_others_and_every_result_is_reported(server, tmp_path, capsys, monkeypatch):
    gone = {'git_blob': '0' * 40}  # not served: HTTP 404
    monkeypatch.setattr(download, 'FILES', {'gone.bin': gone, 'small.json': EXPECTED['small.json'],
                                            'big.bin': EXPECTED['big.bin']})
    (tmp_path / 'big.bin').write_bytes(BIG)  # already there
    with pytest.raises(SystemExit) as exit_:
        download.main(['--model_dir', str(tmp_path), '--base_url', server.base_url])
    assert exit_.value.code == 1
    assert (tmp_path / 'small.json').read_bytes() == SMALL  # fetched after the failure
    assert not (tmp_path / 'gone.bin').exists()
    out, err = capsys.readouterr()
    report = out[out.index(f'{tmp_path}:'):].splitlines()[1:]
    assert [line.split()[0] for line in report] == ['gone.bin', 'small.json', 'big.bin']
    assert 'FAILED' in report[0] and 'HTTP 404' in report[0]
    assert report[1].split(None, 1)[1] == 'downloaded and verified'
    assert report[2].split(None, 1)[1] == 'present and verified, skipped'
    assert err.strip().splitlines()[-1].startswith('error: 1 of 3 files failed (gone.bin;')
    assert '--base_url' in err


def test_only_bpe_fetches_the_bpe_files_alone(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(download, 'FILES', dict(EXPECTED))
    monkeypatch.setattr(download, 'ONLY', {'bpe': ['small.json']})
    assert download.main(['--model_dir', str(tmp_path), '--base_url', server.base_url, '--only', 'bpe']) == 0
    assert [p.name for p in tmp_path.iterdir()] == ['small.json']
    assert [r['path'] for r in server.log] == ['/model/small.json']


def test_base_url_may_be_a_local_folder_path(tmp_path, monkeypatch):
    mirror = tmp_path / 'my copy'  # a space: the path is quoted into a file URL
    mirror.mkdir()
    for name, data in CONTENT.items():
        (mirror / name).write_bytes(data)
    monkeypatch.setattr(download, 'FILES', dict(EXPECTED))
    monkeypatch.chdir(tmp_path)
    assert download.main(['--model_dir', 'model', '--base_url', 'my copy']) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / 'model').iterdir()} == CONTENT


def test_only_bpe_from_a_local_copy_of_the_real_files_verifies_against_the_table(tmp_path):
    folder = real_path('model', 'vocab_40000.bpe')
    if folder is None or real_path('model', 'encoder_bpe_40000.json') is None:
        pytest.skip(REAL_FILES_HINT)
    download.main(['--model_dir', str(tmp_path), '--base_url', os.path.dirname(folder), '--only', 'bpe'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['encoder_bpe_40000.json', 'vocab_40000.bpe']


# a newcomer without a network: the unreachable server named once, one line per file, "resume" only for a .part


def run_main(monkeypatch, capsys, tmp_path, base_url, files=EXPECTED):
    """download.main's exit status, stdout and stderr for `files` (a FILES table) into tmp_path / 'model'."""
    monkeypatch.setattr(download, 'FILES', dict(files))
    with pytest.raises(SystemExit) as exit_:
        download.main(['--model_dir', str(tmp_path / 'model'), '--base_url', base_url])
    out, err = capsys.readouterr()
    assert 'Traceback' not in err
    return exit_.value.code, out, err


@pytest.mark.parametrize('how', ['no name resolution', 'connection refused'])
def test_an_unreachable_server_is_named_once_and_stops_the_command(tmp_path, monkeypatch, capsys, how):
    if how == 'no name resolution':  # what a machine without a network meets first
        def no_resolver(*args, **kwargs):
            raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')
        monkeypatch.setattr(socket, 'getaddrinfo', no_resolver)
        base_url, host = 'https://mirror.example/gpt1/model/', 'mirror.example'
    else:
        base_url, host = closed_port_url(), '127.0.0.1'
    code, out, err = run_main(monkeypatch, capsys, tmp_path, base_url)
    message = f'cannot reach {host}: no network? use --base_url with a mirror or a local copy'
    assert code == 1 and err.strip().splitlines() == [f'error: {message}']
    assert (out + err).count('cannot reach') == 1  # once, not once per file
    assert 'Errno' not in out + err and 'resume' not in out + err  # nothing was half downloaded
    assert 'big.bin' not in out and 'small.json' not in out  # no file was tried after the first
    assert os.listdir(tmp_path / 'model') == []


def test_each_file_has_one_line_and_resume_is_offered_only_for_a_part(server, tmp_path, monkeypatch, capsys):
    (tmp_path / 'model').mkdir()
    (tmp_path / 'model' / 'small.json').write_bytes(SMALL)  # present: skipped
    files = {'gone.bin': {'git_blob': '0' * 40}, **EXPECTED}  # gone.bin: HTTP 404
    code, out, err = run_main(monkeypatch, capsys, tmp_path, server.base_url, files)
    assert code == 1
    lines = out.splitlines()
    for name in files:
        assert len([line for line in lines if name in line]) == 1, out
    assert 'resume' not in out + err and 're-run the same command' in err  # a 404 keeps no .part

    server.mode = 'truncate'  # big.bin's first half arrives: a .part to resume
    (tmp_path / 'model' / 'big.bin').unlink()
    code, out, err = run_main(monkeypatch, capsys, tmp_path, server.base_url, files)
    part = tmp_path / 'model' / 'big.bin.part'
    (line,) = [line for line in out.splitlines() if 'big.bin' in line]
    assert 'FAILED' in line and f're-run the same command to resume it ({len(BIG) // 2} bytes kept in {part})' in line
    (gone,) = [line for line in out.splitlines() if 'gone.bin' in line]
    assert 'resume' not in gone and 'try again' in gone
    assert 're-run the same command to resume' in err.strip().splitlines()[-1]
