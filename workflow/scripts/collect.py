from qpuflow.smk import collect

collect(snakemake)  # noqa: F821 - injected by Snakemake
