"""Where scenes are found (root, $JSPARSE_HSI_ROOT, user folder, bundled), bundled checksums, and
download_dataset against a local HTTP server (no test reaches the internet)."""
import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest
import scipy.io as sio

from jsparse.core.errors import CorruptFileError
from jsparse.unmixing import data, datasets, download_dataset, fetch, load_dataset
from jsparse.unmixing.data.__main__ import main as download_main

pytestmark = pytest.mark.default_pass_only  # files, processes or CLIs: not run again under JAX_ENABLE_X64=1


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local file server: files under `served/<source>/<path>` answer BASE_URLS[source] + path."""
    served = tmp_path_factory.mktemp("served")
    requests = []

    class Handler(_Handler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(server, tmp_path, monkeypatch):
    """No $JSPARSE_HSI_ROOT, an empty user folder, and every source pointed at the local server."""
    _, url, _ = server
    monkeypatch.delenv(fetch.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "BASE_URLS", {k: f"{url}/{k}/" for k in fetch.BASE_URLS})


def _serve(server, rel, payload: bytes):
    """Put `payload` where the server answers the source of local file `rel` (e.g. 'jasper/end4.mat')."""
    served = server[0]
    name = rel.split("/")[0]
    source, remote = next((s, r) for (lr, s, r) in fetch.SOURCES[name] if lr == rel)
    path = served / source / remote
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def _small_urban(folder, L=5, H=2, W=3, R=4):
    """Urban-layout files (ground truth for R endmembers, and the image) small enough to write per test."""
    rng = np.random.default_rng(R)
    A = rng.dirichlet(np.ones(R), H * W).T
    (folder / "urban").mkdir(parents=True, exist_ok=True)
    gt, img = folder / "urban" / f"end{R}_groundTruth.mat", folder / "urban" / "Urban_R162.mat"
    sio.savemat(gt, {"M": rng.random((L, R)), "A": A, "nRow": np.array([[H]]), "nCol": np.array([[W]])})
    sio.savemat(img, {"Y": rng.random((L, H * W)) * 1000, "maxValue": np.array([[1000.0]]),
                      "nRow": np.array([[H]]), "nCol": np.array([[W]])})
    return gt, img


def test_download_checks_sha256_and_keeps_good_files(server, tmp_path):
    rels = [rel for rel, _, _ in fetch.SOURCES["jasper"]]
    for rel in rels:
        _serve(server, rel, (data.folder() / rel).read_bytes())
    before = len(server[2])
    out = tmp_path / "dl"
    assert download_main(["jasper", "--root", str(out)]) == [out]
    for rel in rels:
        assert (out / rel).read_bytes() == (data.folder() / rel).read_bytes()
    assert len(server[2]) == before + 2
    d = load_dataset("jasper", root=out)
    assert d.Y.shape == (198, 10000) and d.names[0] == "1-tree"
    # Verified files are kept; a damaged one is fetched again and replaced.
    (out / rels[1]).write_bytes(b"damaged")
    download_dataset("jasper", root=out)
    assert len(server[2]) == before + 3
    assert (out / rels[1]).read_bytes() == (data.folder() / rels[1]).read_bytes()
    assert sorted(p.name for p in (out / "jasper").iterdir()) == sorted(r.split("/")[1] for r in rels)


def test_download_refuses_wrong_bytes_and_missing_files(server, tmp_path):
    rel = "samson/end3.mat"
    _serve(server, rel, b"not the file")
    _serve(server, "samson/samson_1.mat", (data.folder() / "samson/samson_1.mat").read_bytes())
    out = tmp_path / "dl"
    url = fetch.BASE_URLS["gtvMBO"] + "data/samson/end3.mat"
    with pytest.raises(CorruptFileError, match="SHA-256") as err:
        download_dataset("samson", root=out)
    assert err.value.path == url and str(out / rel) in str(err.value)
    assert [p.name for p in (out / "samson").iterdir()] == ["samson_1.mat"]  # no partial file, no end3.mat
    (server[0] / "gtvMBO" / "data" / "samson" / "end3.mat").unlink()  # the server answers 404
    with pytest.raises(ConnectionError, match="end3.mat"):
        download_dataset("samson", root=out)
    assert [p.name for p in (out / "samson").iterdir()] == ["samson_1.mat"]
    with pytest.raises(ValueError, match="name"):
        download_dataset("cuprite")


def test_urban_ground_truths_download_to_user_folder_image_is_explained(server, tmp_path, monkeypatch):
    small = tmp_path / "small"
    gts = {}
    for R in (4, 5, 6):
        gt, img = _small_urban(small, R=R)
        gts[f"urban/{gt.name}"] = gt.read_bytes()
    sums = dict(data.checksums(), **{rel: hashlib.sha256(b).hexdigest() for rel, b in gts.items()})
    monkeypatch.setattr(data, "checksums", lambda: sums)
    for rel, payload in gts.items():
        _serve(server, rel, payload)
    with pytest.warns(UserWarning, match="Urban_R162.mat.*no verified public source"):
        folder = download_dataset("urban")  # no root, no $JSPARSE_HSI_ROOT: the user folder
    assert folder == fetch.user_folder() == tmp_path / "cache" / "jsparse" / "hyperspectral"
    assert sorted(p.name for p in (folder / "urban").iterdir()) == sorted(r.split("/")[1] for r in gts)
    with pytest.raises(FileNotFoundError, match="Urban_R162.mat.*no verified public source") as err:
        load_dataset("urban")
    assert str(folder / "urban" / "Urban_R162.mat") in str(err.value)
    shutil.copy(img, folder / "urban" / "Urban_R162.mat")  # the user adds their image
    d = load_dataset("urban", num_endmembers=5)
    assert d.Y.shape == (5, 6) and d.endmembers.shape == (5, 5) and d.shape == (2, 3)


def test_search_order_root_env_user_folder_bundled(tmp_path, monkeypatch):
    env, user = tmp_path / "env", fetch.user_folder()
    _small_urban(user, R=4)
    assert load_dataset("urban").Y.shape == (5, 6)  # user folder
    _small_urban(env, L=3, R=4)
    monkeypatch.setenv(fetch.ENV_VAR, str(env))
    assert load_dataset("urban").Y.shape == (3, 6)  # $JSPARSE_HSI_ROOT before the user folder
    assert load_dataset("jasper").Y.shape == (198, 10000)  # file by file: Jasper from the bundled data
    assert load_dataset("urban", root=user).Y.shape == (5, 6)  # root= first ...
    with pytest.raises(FileNotFoundError) as err:  # ... and alone: no fall-back to the bundled copy
        load_dataset("jasper", root=tmp_path / "empty")
    assert str(data.folder()) not in str(err.value) and str(tmp_path / "empty" / "jasper") in str(err.value)
    with pytest.raises(FileNotFoundError) as err:  # nowhere: every place and the download command
        load_dataset("urban", num_endmembers=6)
    msg = str(err.value)
    for place in (env / "urban", user / "urban", data.folder() / "urban"):
        assert str(place / "end6_groundTruth.mat") in msg
    assert "python -m jsparse.unmixing.data urban" in msg and str(env) in msg


def test_bundled_files_are_checked_once_per_process(tmp_path, monkeypatch):
    # The shipped copies match their recorded checksums.
    for rel in ("samson/samson_1.mat", "samson/end3.mat", "jasper/jasperRidge2_R198.mat", "jasper/end4.mat"):
        assert data.sha256_of(data.folder() / rel) == data.checksums()[rel]
    assert datasets.load_dataset("samson").Y.shape == (156, 9025)
    copy = tmp_path / "bundled"
    (copy / "samson").mkdir(parents=True)
    shutil.copy(data.folder() / "SHA256SUMS", copy / "SHA256SUMS")
    good = (data.folder() / "samson" / "end3.mat").read_bytes()
    (copy / "samson" / "end3.mat").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped
    monkeypatch.setattr(data, "folder", lambda: copy)
    monkeypatch.setattr(data, "_VERIFIED", set())
    with pytest.raises(CorruptFileError, match="SHA-256") as err:
        data.verify_bundled(copy / "samson" / "end3.mat")
    assert err.value.path == str(copy / "samson" / "end3.mat")
    # A good bundled file is hashed on its first load only.
    (copy / "samson" / "end3.mat").write_bytes(good)
    calls = []
    monkeypatch.setattr(data, "sha256_of", lambda p: calls.append(p) or hashlib.sha256(good).hexdigest())
    for _ in range(2):
        data.verify_bundled(copy / "samson" / "end3.mat")
    assert len(calls) == 1


def test_experiment_reads_bundled_scenes_and_never_swaps_in_other_endmembers(tmp_path, monkeypatch):
    from experiments.unmixing.scenes import default_data_root, load_real, synthetic_endmembers

    notes = []
    real = load_real(default_data_root(), notes)
    assert sorted(real) == ["jasper", "samson"]
    assert f"samson: read from {data.folder() / 'samson'}" in notes
    assert any(n.startswith("urban: skipped (end4_groundTruth.mat: file not found") for n in notes)
    M, names = synthetic_endmembers(real, notes)
    assert M is real["jasper"].endmembers and names[3] == "4-road"
    # A data folder without the scenes: they are skipped with notes, and the synthetic scenes still
    # use Jasper Ridge's endmembers (found without that folder), saying where from.
    notes = []
    assert load_real(tmp_path / "empty", notes) == {}
    assert [n.split(":")[0] for n in notes] == ["samson", "jasper", "urban"]
    M, _ = synthetic_endmembers({}, notes)
    assert M.shape == (198, 4) and str(data.folder() / "jasper" / "end4.mat") in notes[-1]
    # A broken install (bundled scenes gone) is an error, not a silent change of scenes.
    monkeypatch.setattr(data, "folder", lambda: tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="samson ships with jsparse"):
        load_real(None, [])
