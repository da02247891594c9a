import sys
from pathlib import Path

# Importable from a plain checkout too; `pip install -e .` makes this a no-op.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from qpuflow import wf  # noqa: E402

# Validates (schema through snakemake.utils.validate, defaults filled) and plans the runs.
STUDY = wf.Study.from_snakemake(config, workflow.overwrite_configfiles or ["config.yaml"])
R = STUDY.results_dir


wildcard_constraints:
    exp="[A-Za-z][A-Za-z0-9_-]*",
    run="[A-Za-z0-9_]+",
    backend="[a-z][a-z0-9_]*",


def get_spec(wildcards):
    return STUDY.spec(wildcards.exp, wildcards.run).to_json()


def get_isa(wildcards):
    return STUDY.isa_path(wildcards.exp, wildcards.run)


def get_isa_info(wildcards):
    return STUDY.isa_info_path(wildcards.exp, wildcards.run)


def get_all_markers():
    return STUDY.marker_paths()


def get_pending_isa_infos(wildcards):
    return [STUDY.isa_info_path(*key.split("/")) for key in STUDY.pending_runs()]


def get_pending_specs(wildcards):
    return [STUDY.runs[key].to_json() for key in STUDY.pending_runs()]


def get_collected_results(wildcards):
    return STUDY.collected_result_paths()



onsuccess:
    STUDY.export_submissions()


onerror:
    STUDY.export_submissions()
