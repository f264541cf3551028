"""Images sharded over worker processes (``--workers``) and ``spikefab verify``: the merged
result is the one-process result, a dead worker is a clear error, and verify finds every kind
of difference between the RTL and the golden model."""

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest

from spikefab.firmware.cli import main
from spikefab.firmware.run import prepare, run_images
from spikefab.firmware.shard import ShardError, image_part, merge, run_sharded, shards
from spikefab.firmware.verify import compare
from spikefab.sim.golden_chip import GoldenChip


@pytest.mark.parametrize("count, workers", [(1, 1), (1, 4), (7, 2), (100, 3), (5, 8)])
def test_shards_cover_every_image_once_in_order(count, workers):
    parts = shards(count, workers)
    assert [i for part in parts for i in part] == list(range(count))
    assert all(len(part) for part in parts)
    assert len(parts) <= count


def _workload(count, first=0, model="mnist-fast"):
    return prepare(model=model, data=None, split="test", first=first, count=count, steps=None,
                   seed=3, profile=None, board=None)


def test_merged_shards_equal_one_golden_run():
    work = _workload(9)
    chip = GoldenChip(work.image.chip_profile().info())
    chip.load(work.image)
    whole = chip.run(work.spikes, per_image=True)
    parts = [chip.run(image_part(work.spikes, p), per_image=True) for p in shards(9, 2)]
    merged = merge(parts, target="golden", seconds=0.0)
    assert compare(whole, merged) == []
    assert merged.sops == whole.sops == int(whole.sops_per_image.sum())
    assert [Counter(e) for e in merged.outputs] == [Counter(e) for e in whole.outputs]


def test_compare_names_each_difference(base_seed):
    rng = np.random.default_rng(base_seed)
    work = _workload(4)
    chip = GoldenChip(work.image.chip_profile().info())
    chip.load(work.image)
    golden = chip.run(work.spikes, per_image=True)
    assert compare(golden, chip.run(work.spikes, per_image=True)) == []
    k = int(rng.integers(4))
    for field, change, name in [
            ("predictions", lambda r: r.predictions.__setitem__(k, (r.predictions[k] + 1) % 10),
             "prediction"),
            ("counts", lambda r: r.counts.__setitem__((k, 0), r.counts[k, 0] + 1),
             "output counts"),
            ("final_v", lambda r: r.final_v.__setitem__((k, 3), r.final_v[k, 3] - 1),
             "final membranes"),
            ("outputs", lambda r: r.outputs[k].append((0, 0, 1, 0)), "output events"),
            ("sops_per_image", lambda r: r.sops_per_image.__setitem__(k, 0), "synaptic ops")]:
        other = chip.run(work.spikes, per_image=True)
        change(other)
        found = compare(golden, other)
        assert [(f["position"], f["differs"]) for f in found] == [(k, [name])], \
            (base_seed, field, found)


def test_a_different_order_within_a_tick_is_no_difference():
    work = _workload(3)
    chip = GoldenChip(work.image.chip_profile().info())
    chip.load(work.image)
    golden = chip.run(work.spikes, per_image=True)
    other = chip.run(work.spikes, per_image=True)
    other.outputs = [list(reversed(events)) for events in other.outputs]
    assert compare(golden, other) == []


def test_rtl_sharded_over_workers_equals_one_worker():
    """The RTL simulation, 5 images on 1 and on 2 worker processes: the same predictions,
    counts, membranes, output events and synaptic ops per image, and each equal to golden."""
    work = _workload(5, first=20)
    one = run_images("sim", work, workers=1, progress=False)
    two = run_images("sim", work, workers=2, progress=False)
    assert compare(one, two) == []
    chip = GoldenChip(work.image.chip_profile().info())
    chip.load(work.image)
    assert compare(chip.run(work.spikes, per_image=True), two) == []
    assert one.cycles_per_image.shape == two.cycles_per_image.shape == (5,)
    # An image's cycles depend a little on the values the link sends back (SLIP escapes of
    # sequence numbers, tick stamps and counters), which depend on the images run before it
    # on the same chip (README, "Checking the RTL at scale"): equal within a few per mille,
    # not to the cycle.
    assert np.allclose(one.cycles_per_image, two.cycles_per_image, rtol=5e-3), \
        (one.cycles_per_image, two.cycles_per_image)


def test_a_worker_that_dies_is_a_clear_error():
    work = _workload(40)
    failure = {}

    def run():
        try:
            run_sharded("cocotb", work.image, work.spikes, workers=2)
        except ShardError as exc:
            failure["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 300
    while not multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)   # the worker has started its simulator
    children = multiprocessing.active_children()
    assert children, "no worker process started"
    os.kill(children[0].pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert "a worker process died" in str(failure.get("error")), failure


def test_workers_are_refused_for_golden_and_serial_targets(capsys):
    assert main(["run", "--target", "golden", "--count", "2", "--workers", "2"]) == 1
    assert "--workers shards RTL simulations only" in capsys.readouterr().err


def test_verify_json_reports_every_image(capsys):
    assert main(["verify", "--model", "mnist-fast", "--first", "7", "--count", "3",
                 "--workers", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and report["mismatches"] == [] and report["workers"] == 2
    assert report["seconds"] > 0 and report["images_per_second"] > 0
    assert report["cycles_per_image"]["min"] > 0


def test_verify_refuses_a_target_that_is_not_a_simulation(capsys):
    assert main(["verify", "--target", "golden", "--count", "1"]) == 1
    assert "verify checks an RTL simulation against the golden model" in \
        capsys.readouterr().err


# ---- Ray: the same shards as tasks on a cluster (a local one here) ----

def _ray_task_pids():
    """The processes running a shard as a Ray task (Ray titles them ``ray::_run``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::_run"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _golden(work):
    chip = GoldenChip(work.image.chip_profile().info())
    chip.load(work.image)
    return chip.run(work.spikes, per_image=True)


def test_ray_shards_equal_golden_and_survive_a_killed_worker():
    """Shards as tasks on a local Ray cluster: every image once, equal to golden, although
    the worker running a shard is killed mid-run (Ray runs that shard again)."""
    from spikefab.firmware.shard import run_on_ray
    work = _workload(16, first=40)
    outcome, killed = {}, []

    def run():
        try:
            outcome["result"] = run_on_ray("ray", "sim", work.image, work.spikes)
        except Exception as exc:   # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 300
    while not killed and thread.is_alive() and time.time() < deadline:
        pids = _ray_task_pids()
        if pids:
            time.sleep(1.0)       # inside its shard: the simulator started, images running
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    thread.join(timeout=600)
    assert killed, "no Ray task was seen running, so none was killed"
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert result.images == 16
    assert compare(_golden(work), result) == []


def test_a_shard_that_fails_on_ray_is_a_clear_error():
    from spikefab.firmware.shard import run_on_ray
    work = _workload(2)
    with pytest.raises(ShardError, match=r"images \d to \d failed on serial:/nonexistent/tty: "
                                         r"cannot open serial port"):
        run_on_ray("ray", "serial:/nonexistent/tty", work.image, work.spikes)


@pytest.mark.parametrize("text, message", [
    ("0", "at least 1"), ("-3", "at least 1"), ("many", "a number of worker processes"),
    ("ray://", "needs the cluster's address")])
def test_bad_workers_are_refused(text, message, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--target", "sim", "--workers", text])
    assert message in capsys.readouterr().err


def test_scale_figures_verify_a_data_folder_with_each_worker_setting(tmp_path):
    """``spikefab bench --data``'s table: verify over a folder of MNIST files (a few bundled
    images written as t10k files), with 1 and 2 local workers and a local Ray cluster."""
    from spikefab.firmware.mnist import bundled_slice, write_idx
    from spikefab.sim.benchmarks import scale_figures, scale_table
    data = bundled_slice()
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", data.images[:6].reshape(6, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", data.labels[:6])
    rows = scale_figures(str(tmp_path), models=("mnist-fast",))
    assert [(r["workers"], r["images"], r["mismatches"]) for r in rows] == \
        [(1, 6, 0), (2, 6, 0), ("ray", 6, 0)]
    assert all(r["seconds"] > 0 for r in rows)
    table = scale_table(rows)
    assert table.count("| mnist-fast (4) | 6 |") == 3, table


def test_bench_refuses_a_bad_data_folder_before_measuring(tmp_path, capsys):
    assert main(["bench", "--data", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "measuring" not in err
