"""The Ray runner: a local Ray instance started here (2 CPUs), 2 scorer actors; scores.jsonl equal to the
local runner's byte for byte; a worker killed mid-run is restarted and the run completes."""

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conftest import DEMO, score_file  # noqa: E402
from selectit.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _data(tmp_path, n):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in json.loads(DEMO.read_text())[:n]))
    return path


def _both(tmp_path, data, config):
    score_file(data, tmp_path / "local", **config)
    ray_run = score_file(data, tmp_path / "ray", **config, runner="ray", workers=2)
    return ray_run, (tmp_path / "local" / "scores.jsonl").read_bytes(), (tmp_path / "ray" / "scores.jsonl").read_bytes()


def test_ray_equals_local_on_the_tiny_model(tmp_path, local_ray, tiny_model_dir):
    config = dict(models=(str(tiny_model_dir),), num_prompts=3, batch_size=4, chunk_size=8,
                  likelihood_weight=1.0)  # the response losses travel through the part files too
    run, local, distributed = _both(tmp_path, _data(tmp_path, 30), config)
    assert local == distributed and len(local.splitlines()) == 30
    assert b'"likelihood"' in distributed
    assert not (tmp_path / "ray" / "store.sqlite.parts").exists()  # every part merged into the store
    with sqlite3.connect(tmp_path / "ray" / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM probs").fetchone()[0] == 90
        assert db.execute("SELECT COUNT(*) FROM losses").fetchone()[0] == 90  # given, blank and end, each 30
    cfg = json.loads((tmp_path / "ray" / "config.json").read_text())
    assert cfg["models"][0]["tokens"] == run.models[0].tokens > 0
    assert cfg["models"][0]["template"] == "plain"  # 'auto' resolved on the workers: no chat template


def test_ray_user_errors_and_flags(tmp_path, local_ray):
    data = _data(tmp_path, 4)
    with pytest.raises(ConfigError, match="needs 3 CPUs"):
        score_file(data, tmp_path / "x", backend="fake", runner="ray", workers=3)
    with pytest.raises(ConfigError, match="--runner must be one of"):
        score_file(data, tmp_path / "x", backend="fake", runner="spark")
    with pytest.raises(ConfigError, match="apply to --runner ray only"):
        score_file(data, tmp_path / "x", backend="fake", workers=2)


def _descends_from_us(pid):
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return False


def _workers():
    """PIDs of the Ray scorer actors this test's Ray instance started (Ray names their processes
    ray::MapWorker(...); only descendants of this process, never another Ray on the machine)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::MapWorker")
                    and _descends_from_us(int(proc.name))):
                pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def _part_rows(parts):
    total = 0
    for part in parts.glob("*.sqlite"):
        try:
            with sqlite3.connect(part, timeout=1) as db:
                total += db.execute("SELECT COUNT(*) FROM probs").fetchone()[0]
        except sqlite3.Error:
            pass
    return total


def test_a_killed_worker_is_restarted_and_the_run_completes(tmp_path, local_ray, tiny_model_dir):
    config = dict(models=(str(tiny_model_dir),), num_prompts=5, batch_size=1, chunk_size=10)
    data = _data(tmp_path, 40)
    score_file(data, tmp_path / "local", **config)
    parts, errors = tmp_path / "ray" / "store.sqlite.parts", []

    def run():
        try:
            score_file(data, tmp_path / "ray", **config, runner="ray", workers=2)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    deadline, killed = time.time() + 240, None
    while thread.is_alive() and time.time() < deadline and killed is None:
        if _part_rows(parts) >= 5 and _workers():
            killed = _workers()[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(600)
    assert not errors, errors
    assert killed is not None, "the run ended before a worker could be killed"
    assert (tmp_path / "ray" / "scores.jsonl").read_bytes() == (tmp_path / "local" / "scores.jsonl").read_bytes()


@pytest.mark.embedded
def test_ray_equals_local_on_the_embedded_model(tmp_path, local_ray):
    """At the threads of a Ray CPU actor (num_cpus=1: one): on a CPU whose float32 products depend on
    the thread count (AVX-512 kernels: 4.39450978 on one thread, 4.39451043 on two), the bytes are equal
    only at equal threads; the runner's part, sharding and merging, is what is compared."""
    import torch

    config = dict(num_prompts=2, batch_size=2, chunk_size=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, local, distributed = _both(tmp_path, _data(tmp_path, 4), config)
    finally:
        torch.set_num_threads(threads)
    assert local == distributed and len(local.splitlines()) == 4


@pytest.mark.parametrize("method", ["selectit", "paper", "token", "random", "length", "perplexity", "ifd", "rifd"])
def test_every_method_runs_on_ray_as_locally(tmp_path, local_ray, method):
    """Every method measures through the same shard function on Ray: scores.jsonl byte for byte the
    local runner's (fake backend, chunks of 4). sentence, model and reference are views of the same
    measurements as selectit and paper (tests/test_conformance.py: rescore == score)."""
    _, local, distributed = _both(tmp_path, _data(tmp_path, 12), dict(backend="fake", method=method, chunk_size=4,
                                                                        num_prompts=2))
    assert local == distributed and len(local.splitlines()) == 12


def test_the_proxy_runs_on_ray_as_locally(tmp_path, local_ray):
    """--proxy: the sample's full measurements and every record's features through the same shard
    function on Ray; scores.jsonl (full and predicted scores, scored_by) byte for byte the local one's."""
    pytest.importorskip("sklearn")
    _, local, distributed = _both(tmp_path, _data(tmp_path, 40), dict(
        backend="fake", chunk_size=8, num_prompts=2, proxy=True, proxy_sample=20, proxy_features="hidden",
        proxy_min_spearman=-1.0))
    assert local == distributed and local.count(b'"scored_by": "proxy"') == 20


def test_record_once_runs_on_ray_as_locally(tmp_path, local_ray, tiny_model_dir):
    """--layout record-once: the shared record pass (ratings, the GIVEN loss and the embedding from one
    pass) on Ray workers gives scores.jsonl byte for byte the local runner's."""
    config = dict(models=(str(tiny_model_dir),), num_prompts=2, batch_size=4, chunk_size=8, layout="record-once",
                  likelihood_weight=1.0)
    _, local, distributed = _both(tmp_path, _data(tmp_path, 20), config)
    assert local == distributed and len(local.splitlines()) == 20 and b'"likelihood"' in local
