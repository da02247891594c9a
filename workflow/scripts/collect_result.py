from qpuflow.smk import collect_result

collect_result(snakemake)  # noqa: F821 - injected by Snakemake
