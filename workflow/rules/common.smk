import sys
from pathlib import Path

# Importable from a plain checkout too; `pip install -e .` makes this a no-op.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from qpuflow import wf  # noqa: E402

# Reads config.yaml (or --configfile), validates it into the study's own copy (defaults
# filled; Snakemake's config is not changed) and plans the runs.
STUDY = wf.Study.from_snakemake(config, workflow.overwrite_configfiles)
R = STUDY.results_dir
# The poll checkpoint's output, named for this invocation: every `snakemake finished` polls.
POLL = STUDY.poll_path()


wildcard_constraints:
    exp="[A-Za-z][A-Za-z0-9_-]*",
    run="[A-Za-z0-9_]+",
    backend="[a-z][a-z0-9_]*",
    session="[0-9]+",
    batch="[A-Za-z0-9_]+-[0-9]+",


def step(name, input, output, params, wildcards, log):
    """A rule's body: one call into qpuflow.smk, run inside this process (profiles/default sets
    force-use-threads), so a job costs milliseconds, not a Python start and seconds of imports."""
    from types import SimpleNamespace

    from qpuflow.smk import run_step

    run_step(name, SimpleNamespace(input=input, output=output, params=params, wildcards=wildcards,
                                   log=log, config=STUDY.config))


def get_spec(wildcards):
    return STUDY.spec(wildcards.exp, wildcards.run).to_json()


def get_circuit_path(wildcards):
    return STUDY.circuit_path(wildcards.exp, wildcards.run)


def get_submit_target(wildcards):
    return STUDY.submit_target()


def get_run_pack(wildcards):
    return STUDY.run_pack(wildcards.exp, wildcards.run)


def get_run_selection(wildcards):
    # Only a run that is to be sent now asks for its session's selection (a refused one is
    # refused by the rule, with the reason, instead of failing in select_qubits' inputs).
    return [] if STUDY.run_pack(wildcards.exp, wildcards.run)["refusal"] else get_selection(wildcards)


def get_selection(wildcards):
    return STUDY.selection_path(wildcards.exp, wildcards.run)


def get_selection_inputs(wildcards):
    # ancient: a selection, once made, is what the arms were laid out on; never redo it.
    return {name: ancient(path) for name, path in STUDY.selection_inputs(wildcards.exp, int(wildcards.session)).items()}


def get_batch_specs(wildcards):
    return STUDY.batch_specs(wildcards.exp, wildcards.batch)


def get_batch_jobs(wildcards):
    return STUDY.batch_jobs(wildcards.exp, wildcards.batch)


def get_batch_selection(wildcards):
    return STUDY.batch_selection(wildcards.exp, wildcards.batch)


def get_transpiled_manifests(wildcards):
    return STUDY.transpiled_manifests()


def get_pending_specs(wildcards):
    return [STUDY.runs[key].to_json() for key in STUDY.pending_runs()]


def get_simulation_flags(wildcards):
    return STUDY.simulation_flags()


def get_submitted_results(wildcards):
    return STUDY.submitted_result_paths()


def get_finished_results(wildcards):
    return STUDY.finished_result_paths(checkpoints.poll_jobs.get().output.finished)


def get_collected_results(wildcards):
    return STUDY.collected_result_paths()



onstart:
    # Ctrl-C / SIGTERM: stop sending before the next provider call (rule bodies run in threads).
    from qpuflow.interrupts import install

    install()


onsuccess:
    STUDY.finish()


onerror:
    STUDY.export_submissions()
    STUDY.print_refusals(log)
