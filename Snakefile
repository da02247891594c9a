# qpuflow: exactly-once asynchronous QEC experiments on IBM Quantum hardware.
#   snakemake --cores 1 submit    build, transpile and submit every run that has no marker yet
#   snakemake --cores 1 collect   download finished results (never submits; exits 0 while jobs wait)
#   snakemake --cores 1 analyze   decode what is collected: results/analysis/*.csv and plots
#   snakemake analyze --report results/report.html   the self-contained HTML report
from snakemake.utils import min_version

min_version("9.0")


# The study's config.yaml is read by qpuflow itself (workflow/rules/common.smk), not with
# `configfile:`: its errors then name the file, the line and the field, and a key written
# twice is refused. `--configfile other.yaml` and `--config key=value` still work.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/circuits.smk"
include: "workflow/rules/transpile.smk"
include: "workflow/rules/submit.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/analysis.smk"


rule submit:
    """Every run's marker, except deployment sessions not due yet and arms waiting for a probe."""
    input:
        get_submit_target,
    default_target: True
