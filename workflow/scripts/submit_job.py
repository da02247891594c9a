from qpuflow.smk import submit

submit(snakemake)  # noqa: F821 - injected by Snakemake
