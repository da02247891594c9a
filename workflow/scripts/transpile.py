from qpuflow.smk import transpile

transpile(snakemake)  # noqa: F821 - injected by Snakemake
