"""Several runs in one provider job (provider.pubs_per_job): the same guarantees as one run
per job (exactly once, nothing lost on a kill, one download per job) plus the split: every
run's result file holds its own PUB's bits.

Jobs are counted at the provider (`qpuflow jobs`), as in test_workflow.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qpuflow.batches import RUNS_PER_SNAKEMAKE_JOB, plan_batches, plan_jobs
from qpuflow.budget import JOB_OVERHEAD_SECONDS, estimate_job_seconds, estimate_qpu_seconds
from qpuflow.plan import RunSpec, plan_runs
from tests.conftest import SMALL_CONFIG, provider_jobs, snakemake, write_config

# Noiseless repetition-code runs prepared in |0> and |1>: a run's data register is all zeros
# or all ones, so a PUB handed to the wrong run's result file cannot go unnoticed.
PACKED = {
    **json.loads(json.dumps(SMALL_CONFIG)),
    "experiments": {
        "rep": {"kind": "repetition_code", "distance": 3, "rounds": 1, "logical_states": ["0", "1"],
                "repetitions": 3, "shots": 64},
    },
}
PACKED["provider"] = {**PACKED["provider"], "pubs_per_job": 4, "local": {"queue_seconds": 0, "run_seconds": 0,
                                                                        "noise_scale": 0.0}}
RUNS = ["rep/L0_rep0", "rep/L0_rep1", "rep/L0_rep2", "rep/L1_rep0", "rep/L1_rep1", "rep/L1_rep2"]


def markers(study: Path) -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
            for p in sorted((study / "results" / "submitted").glob("*/*.json"))}


def assert_packed_once(study: Path) -> dict[str, dict]:
    """Six runs, two jobs (4 + 2 PUBs); every job has markers, every marker its job and PUB."""
    found = markers(study)
    assert sorted(found) == RUNS
    jobs = {j["job_id"]: j for j in provider_jobs(study)}
    assert sorted(jobs) == sorted({m["job_id"] for m in found.values()}), "a job without markers, or a duplicate"
    by_job: dict[str, list[dict]] = {}
    for marker in found.values():
        by_job.setdefault(marker["job_id"], []).append(marker)
    assert sorted(len(v) for v in by_job.values()) == [2, 4]
    for members in by_job.values():
        members.sort(key=lambda m: m["pub_index"])
        assert [m["pub_index"] for m in members] == list(range(len(members)))
        assert all(m["batch"]["runs"] == [x["run_key"] for x in members] for m in members)
    return found


@pytest.fixture
def packed(study: Path) -> Path:
    write_config(study, PACKED)
    return study


# ---------------------------------------------------------------------------- planning


def specs(config: dict) -> list[RunSpec]:
    from qpuflow.config import validate_config

    return plan_runs(validate_config(json.loads(json.dumps(config)), source="test"))


def test_jobs_keep_planned_order_and_never_mix_experiments_sessions_or_probes():
    config = json.loads(json.dumps(PACKED))
    config["experiments"]["dep"] = {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": 2, "shots": 64,
                                    "arms": ["calibration", "drift_aware"]}
    planned = specs(config)
    jobs = plan_jobs(planned, 4)
    assert [key for job in jobs for key in job] == [s.key for s in planned], "every run once, in planned order"
    by_key = {s.key: s for s in planned}
    for job in jobs:
        members = [by_key[k] for k in job]
        assert len(job) <= 4
        assert len({(s.experiment, s.session, s.is_probe) for s in members}) == 1
    assert [len(j) for j in jobs if j[0].startswith("rep/")] == [4, 2]
    assert ("dep/session000_probe",) in jobs and ("dep/session000_calibration", "dep/session000_drift_aware") in jobs


def test_snakemake_batches_gather_whole_jobs():
    config = json.loads(json.dumps(PACKED))
    config["experiments"]["rep"]["repetitions"] = 70  # 140 runs
    planned = specs(config)
    for pubs in (1, 3, 8):
        batches = plan_batches(planned, pubs)
        assert [j for b in batches for j in b.jobs] == plan_jobs(planned, pubs)
        assert all(len(b.keys) <= max(RUNS_PER_SNAKEMAKE_JOB, pubs) for b in batches)
        assert len({b.name for b in batches}) == len(batches)
    assert len(plan_batches(planned, 1)) == math.ceil(140 / RUNS_PER_SNAKEMAKE_JOB)
    # A session's arms, one per job, are still handled by one Snakemake job, in their order.
    config["experiments"]["dep"] = {"kind": "deployment", "distance": 3, "rounds": 1, "sessions": 2, "shots": 64,
                                    "arms": ["calibration", "drift_aware"]}
    arms = [s for s in specs(config) if s.experiment == "dep" and not s.is_probe and s.session == 1]
    (batch,) = plan_batches(arms, 1, runs_per_batch=1)
    assert batch.jobs == tuple((s.key,) for s in arms)


def test_a_jobs_composition_is_read_back_from_its_tags_and_a_reordering_is_caught():
    from qpuflow.packs import MAX_TAGS, MAX_TAG_CHARS, CompositionError, Pack, composition, read_tags

    planned = specs(PACKED)
    pack = Pack(tuple(planned[:4]))
    tags = pack.tags(["lab"])
    assert len(tags) <= MAX_TAGS and all(len(t) <= MAX_TAG_CHARS for t in tags)
    assert composition(reversed(tags), "j", planned) == list(pack.specs), "tag order at the service does not matter"
    single = Pack(tuple(planned[:1])).tags([])
    assert composition(single, "j", planned) == planned[:1]
    # The runs tag lists the PUBs in order; swapping two of them no longer matches the pack tag.
    runs_tag = next(t for t in tags if t.startswith("qpuflow-runs-"))
    ids = runs_tag.removeprefix("qpuflow-runs-").split(".")
    ids[0], ids[1] = ids[1], ids[0]
    swapped = [t if t != runs_tag else "qpuflow-runs-" + ".".join(ids) for t in tags]
    with pytest.raises(CompositionError, match="do not agree"):
        composition(swapped, "j", planned)
    assert read_tags(swapped).pack == pack.tag
    # A job naming a run this config no longer plans is not recognised, not guessed at.
    with pytest.raises(CompositionError, match="does not plan"):
        composition(tags, "j", planned[1:])


def test_tags_stay_within_the_service_limits_at_any_packing():
    from qpuflow.packs import MAX_TAGS, MAX_TAG_CHARS, Pack, composition, fixed_tag_count

    config = json.loads(json.dumps(PACKED))
    config["experiments"]["rep"]["repetitions"] = 16  # 32 runs
    planned = specs(config)
    for size in (1, 7, 8, 9, 16, 32):
        pack = Pack(tuple(planned[:size]))
        extra = [f"tag{i}-" + "x" * 70 for i in range(MAX_TAGS - fixed_tag_count(size))]
        tags = pack.tags(extra)
        assert len(tags) <= MAX_TAGS and all(len(t) <= MAX_TAG_CHARS for t in tags), (size, tags)
        assert composition(tags, "j", planned) == list(pack.specs)
    with pytest.raises(ValueError, match="at most 8"):
        Pack(tuple(planned[:8])).tags(["a", "b", "c", "d"])


def test_a_packed_job_pays_the_overhead_once():
    pubs = [(4096, 21.7e-6)] * 8
    alone = sum(estimate_qpu_seconds(shots=n, circuit_duration=d) for n, d in pubs)
    packed = estimate_job_seconds(pubs)
    assert packed == pytest.approx(alone - 7 * JOB_OVERHEAD_SECONDS, abs=0.05)  # each estimate rounds to 0.01 s


# ---------------------------------------------------------------------------- workflow


def test_packed_runs_are_submitted_once_and_each_result_holds_its_own_pub(packed: Path):
    out = snakemake(packed, "submit")
    assert "2 job(s) carrying 6 run(s)" in out.all
    assert_packed_once(packed)
    assert "Nothing to be done" in snakemake(packed, "submit").all
    batch_files = sorted((packed / "results" / "submitted" / "rep" / "batches").glob("*.json"))
    assert [p.name for p in batch_files] == ["L0_rep0-6.json"]
    assert len(json.loads(batch_files[0].read_text())["jobs"]) == 2

    collected = snakemake(packed, "collect")
    assert "Completed: 6/6" in collected.all
    from qpuflow.records import Result

    results = {key: Result.read(packed / "results" / "collected" / f"{key}.json") for key in RUNS}
    found = markers(packed)
    for key, result in results.items():
        assert result.job_id == found[key]["job_id"] and result.status == "completed"
        data = result.bit_arrays()["data"]
        expected = key.startswith("rep/L1")
        assert data.shape == (64, 3) and (data == expected).all(), f"{key} got another PUB's bits"
    # The job's usage is recorded with each of its runs, and is charged once.
    usage = {found[k]["job_id"]: results[k].usage_seconds for k in RUNS}
    assert all(results[k].usage_seconds == usage[found[k]["job_id"]] for k in RUNS)
    assert "Nothing to be done" in snakemake(packed, "submit").all
    assert len(provider_jobs(packed)) == 2


def test_kill_after_a_packed_job_was_accepted_adopts_every_run_of_it(packed: Path):
    proc = snakemake(packed, "submit", env={"QPUFLOW_FAULT": "after_provider_accept:kill"}, check=False)
    assert proc.returncode != 0
    orphans = provider_jobs(packed)
    assert len(orphans) == 1 and not markers(packed)
    snakemake(packed, "--unlock")
    snakemake(packed, "submit")
    found = assert_packed_once(packed)
    adopted = {m["run_key"] for m in found.values() if m["adopted"]}
    assert adopted == set(RUNS[:4]) and {found[k]["job_id"] for k in adopted} == {orphans[0]["job_id"]}


def test_a_lost_ledger_and_markers_never_resend_a_packed_job(packed: Path):
    snakemake(packed, "submit")
    before = assert_packed_once(packed)
    (packed / "results" / "ledger" / "submissions.jsonl").unlink()
    for path in (packed / "results" / "submitted").rglob("*.json"):
        path.unlink()
    snakemake(packed, "submit")
    after = assert_packed_once(packed)
    assert {k: m["job_id"] for k, m in after.items()} == {k: m["job_id"] for k, m in before.items()}
    assert {k: m["pub_index"] for k, m in after.items()} == {k: m["pub_index"] for k, m in before.items()}
    assert all(m["adopted"] for m in after.values())


def test_a_packed_job_longer_than_max_execution_time_is_refused(packed: Path):
    config = json.loads(json.dumps(PACKED))
    config["provider"]["max_execution_time"] = 3  # 4 x 64 shots fit, but not 2 s overhead + ...
    config["experiments"]["rep"]["shots"] = 4000   # ~1 s of shots per run
    write_config(packed, config)
    proc = snakemake(packed, "submit", check=False)
    assert proc.returncode != 0
    assert "max_execution_time" in proc.all and "pubs_per_job" in proc.all
    assert provider_jobs(packed) == [] and not markers(packed)


def test_a_pending_run_whose_parameters_changed_is_transpiled_again(tmp_path: Path):
    import dataclasses

    from qpuflow.config import validate_config
    from qpuflow.paths import Paths
    from qpuflow.stages import ensure_transpiled

    config = validate_config(json.loads(json.dumps(PACKED)), source="test")
    paths = Paths.from_config(config, base=tmp_path)
    spec = plan_runs(config)[0]
    first = ensure_transpiled(spec, config=config, paths=paths)
    assert ensure_transpiled(spec, config=config, paths=paths) == first, "kept when nothing changed"
    changed = dataclasses.replace(spec, transpiler_seed=spec.transpiler_seed + 1)
    again = ensure_transpiled(changed, config=config, paths=paths)
    assert again.run_id == changed.run_id() != first.run_id
    assert again.transpiler_seed == changed.transpiler_seed
